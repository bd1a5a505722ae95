#!/usr/bin/env bash
# The otpgate benchmark in one command:
#
#   bash bench/run.sh
#
# Builds release, starts `otpgate serve` on a free loopback port with a temporary SQLite
# database in development mode, runs bench/loadgen.rs against it (healthz, send, verify),
# stops the server and prints the results. See docs/PERFORMANCE.md.
#
# Environment:
#   BENCH_SECS          seconds per phase (default 10)
#   BENCH_CONCURRENCY   concurrent clients (default 32)
#   BENCH_SKIP_BUILD=1  use the existing target/release binaries
#   BENCH_DATABASE_URL  the store to run on (default: a temporary SQLite file); a postgres://
#                       URL needs BENCH_MASTER_KEY too (bench/stores.sh runs both stores)
#   BENCH_MASTER_KEY    OTPGATE_MASTER_KEY for the server
#   BENCH_LABEL         a name for this run in the JSON file's name (default: loadgen)
#   BENCH_SERVER        the otpgate binary to measure (default target/release/otpgate), to
#                       compare two builds in alternating runs
#
# The JSON results are also kept in target/bench/ (last.json and a dated copy).
set -euo pipefail

SECS="${BENCH_SECS:-10}"
CONCURRENCY="${BENCH_CONCURRENCY:-32}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

case "$SECS" in '' | *[!0-9]*) echo "BENCH_SECS must be a whole number" >&2; exit 2 ;; esac
case "$CONCURRENCY" in '' | *[!0-9]*) echo "BENCH_CONCURRENCY must be a whole number" >&2; exit 2 ;; esac

if [ "${BENCH_SKIP_BUILD:-0}" != 1 ]; then
  echo "bench: building release (this takes a while the first time)..." >&2
  cargo build --release --bin otpgate --example loadgen
fi
SERVER="${BENCH_SERVER:-$ROOT/target/release/otpgate}"
LOADGEN="$ROOT/target/release/examples/loadgen"
for b in "$SERVER" "$LOADGEN"; do
  [ -x "$b" ] || { echo "bench: $b is missing; build it first" >&2; exit 1; }
done

WORK="$(mktemp -d "${TMPDIR:-/tmp}/otpgate-bench.XXXXXX")"
SERVER_PID=""
cleanup() {
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 50); do
      kill -0 "$SERVER_PID" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A loopback port nothing listens on: ask the kernel if python3 is around, else probe.
free_port() {
  if command -v python3 >/dev/null 2>&1; then
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
    return
  fi
  local p
  for _ in $(seq 100); do
    p=$((20000 + RANDOM % 30000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      echo "$p"
      return
    fi
  done
  echo "bench: found no free port" >&2
  return 1
}

# Start the server with a clean OTPGATE_ environment. The console provider prints every
# message on stdout, so stdout and stderr go to files, not the terminal.
start_server() {
  PORT="$(free_port)"
  (
    for v in $(compgen -e | grep '^OTPGATE_' || true); do unset "$v"; done
    export OTPGATE_MODE=development
    export OTPGATE_LISTEN="127.0.0.1:$PORT"
    export OTPGATE_DATABASE_URL="${BENCH_DATABASE_URL:-sqlite://$WORK/bench.db}"
    if [ -n "${BENCH_MASTER_KEY:-}" ]; then export OTPGATE_MASTER_KEY="$BENCH_MASTER_KEY"; fi
    export OTPGATE_LOG=warn
    exec "$SERVER" serve
  ) >"$WORK/server.out" 2>"$WORK/server.err" </dev/null &
  SERVER_PID=$!
  for _ in $(seq 300); do
    if grep -q "API secret:" "$WORK/server.out" 2>/dev/null; then
      return 0
    fi
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
      wait "$SERVER_PID" 2>/dev/null || true
      SERVER_PID=""
      return 1
    fi
    sleep 0.1
  done
  return 1
}

started=0
for attempt in 1 2 3; do
  if start_server; then
    started=1
    break
  fi
  echo "bench: the server did not start (attempt $attempt):" >&2
  tail -n 20 "$WORK/server.err" >&2 || true
  if [ -n "$SERVER_PID" ]; then
    kill -KILL "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
  fi
  rm -f "$WORK"/bench.db*
done
[ "$started" = 1 ] || { echo "bench: giving up" >&2; exit 1; }

KEY="$(awk '/Api-Key:/ {print $2; exit}' "$WORK/server.out")"
SECRET="$(awk '/API secret:/ {print $3; exit}' "$WORK/server.out")"
if [ -z "$KEY" ] || [ -z "$SECRET" ]; then
  echo "bench: could not read the development tenant from the server's output" >&2
  exit 1
fi
echo "bench: otpgate (pid $SERVER_PID) on 127.0.0.1:$PORT; ${SECS} s per phase, $CONCURRENCY clients" >&2

mkdir -p "$ROOT/target/bench"
STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
LABEL="${BENCH_LABEL:-loadgen}"
JSON="$ROOT/target/bench/$LABEL-$STAMP.json"
# The human table goes to stderr, the JSON to the file.
"$LOADGEN" --base "http://127.0.0.1:$PORT" --key "$KEY" --secret "$SECRET" \
  --concurrency "$CONCURRENCY" --duration-secs "$SECS" --json >"$JSON"
cp "$JSON" "$ROOT/target/bench/$([ "$LABEL" = loadgen ] && echo last || echo "$LABEL-last").json"

kill -TERM "$SERVER_PID" 2>/dev/null || true
for _ in $(seq 100); do
  kill -0 "$SERVER_PID" 2>/dev/null || break
  sleep 0.1
done
if kill -0 "$SERVER_PID" 2>/dev/null; then
  echo "bench: the server ignored SIGTERM for 10 s; killing it" >&2
fi

if [ -s "$WORK/server.err" ]; then
  echo "bench: the server logged $(wc -l <"$WORK/server.err") warning/error lines; the last ones:" >&2
  tail -n 5 "$WORK/server.err" >&2
fi
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo), $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)"
echo "results: $JSON"
