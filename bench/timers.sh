#!/usr/bin/env bash
# The flow-timer benchmark in one command:
#
#   bash bench/timers.sh
#
# Builds release, then bench/timers.rs runs the scenario against a temporary SQLite database:
# N sends with a one-node task flow (N pending flow timers), the server's memory before and
# after, a SIGTERM before the first timer is due, a restart once every timer is due, and the
# burst: how long until every timer fired, the due-to-start lag histogram, the server's peak
# memory. See docs/PERFORMANCE.md ("Flow timers").
#
# Environment:
#   TIMERS_SESSIONS      sessions, i.e. pending timers (default 100000)
#   TIMERS_CONCURRENCY   concurrent sending clients (default 32)
#   TIMERS_WAITING_SECS  the flow node's waitingTime, 30-120 (default 120); every send must be
#                        accepted within it (less 15 s), or the rest are left out and reported
#   TIMERS_WORKERS       OTPGATE_DELIVERY__WORKERS for the server (default: the server's, 64)
#   TIMERS_SAMPLE_MS     how often /metrics and /proc are read during the burst (default 1000)
#   BENCH_SKIP_BUILD=1   use the existing target/release binaries
#
# The JSON results are kept in target/bench/ (timers-last.json and a dated copy).
set -euo pipefail

SESSIONS="${TIMERS_SESSIONS:-100000}"
CONCURRENCY="${TIMERS_CONCURRENCY:-32}"
WAITING="${TIMERS_WAITING_SECS:-120}"
WORKERS="${TIMERS_WORKERS:-}"
SAMPLE_MS="${TIMERS_SAMPLE_MS:-1000}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

for pair in "TIMERS_SESSIONS=$SESSIONS" "TIMERS_CONCURRENCY=$CONCURRENCY" \
  "TIMERS_WAITING_SECS=$WAITING" "TIMERS_SAMPLE_MS=$SAMPLE_MS" "TIMERS_WORKERS=${WORKERS:-0}"; do
  case "${pair#*=}" in '' | *[!0-9]*) echo "${pair%%=*} must be a whole number" >&2; exit 2 ;; esac
done

if [ "${BENCH_SKIP_BUILD:-0}" != 1 ]; then
  echo "timers: building release (this takes a while the first time)..." >&2
  cargo build --release --bin otpgate --example timers
fi
SERVER="$ROOT/target/release/otpgate"
TIMERS="$ROOT/target/release/examples/timers"
for b in "$SERVER" "$TIMERS"; do
  [ -x "$b" ] || { echo "timers: $b is missing; build it first" >&2; exit 1; }
done

# The benchmark starts and stops its servers itself (only those, by their pid); Ctrl-C reaches
# them too, as they share this terminal's process group.
WORK="$(mktemp -d "${TMPDIR:-/tmp}/otpgate-timers.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

ARGS=(--server "$SERVER" --workdir "$WORK" --sessions "$SESSIONS" --concurrency "$CONCURRENCY"
  --waiting-secs "$WAITING" --sample-ms "$SAMPLE_MS" --json)
if [ -n "$WORKERS" ]; then
  ARGS+=(--workers "$WORKERS")
fi

mkdir -p "$ROOT/target/bench"
STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
JSON="$ROOT/target/bench/timers-$STAMP.json"
# The progress and the table go to stderr, the JSON to the file.
if ! "$TIMERS" "${ARGS[@]}" >"$JSON"; then
  rm -f "$JSON"
  for f in "$WORK"/server-*.err; do
    [ -s "$f" ] || continue
    echo "timers: the last lines of $(basename "$f"):" >&2
    tail -n 10 "$f" >&2
  done
  exit 1
fi
cp "$JSON" "$ROOT/target/bench/timers-last.json"
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo), $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)"
echo "results: $JSON"
