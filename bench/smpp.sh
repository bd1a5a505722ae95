#!/usr/bin/env bash
# End-to-end delivery benchmark: otpgate against Kannel, to the same SMPP SMSC on loopback.
#
#   bash bench/smpp.sh
#
# 1. Starts the bench SMSC (bench/smsc.rs: accepts every bind, answers every submit_sm, sends a
#    DELIVRD receipt for every submit that asks for one).
# 2. otpgate: `serve` with one SMPP route to that SMSC (workers on, SQLite in a temp dir).
#    BENCH_MESSAGES sends through the Buka HTTP API (loadgen --only-send, BENCH_CONCURRENCY
#    clients). Timed from the first request until the SMSC has received every submit_sm AND
#    otpgate has recorded every delivery receipt (otpgate_receipts_total): the whole OTP path
#    (signed request, code generation and sealing, session, attempt and job rows, submit,
#    submit_sm_resp, receipt back into the attempt).
# 3. Kannel 1.4.5 (bearerbox + smsbox) with an SMPP smsc group to the same SMSC, the same
#    window (max-pending-submits), the same number of plain messages through sendsms (no DLR
#    requested), the same number of concurrent HTTP clients. Timed from the first request until
#    the SMSC has received every submit_sm.
# 4. Prints both rates and the ratio (target: otpgate >= 5x Kannel).
#
# Environment: BENCH_MESSAGES (default 20000), BENCH_CONCURRENCY (32), BENCH_WINDOW (64),
# BENCH_SKIP_BUILD=1. Needs Kannel (`apt-get install kannel`; installed here when run as root).
# Results are kept in target/bench/smpp-last.json.
set -euo pipefail

N="${BENCH_MESSAGES:-20000}"
C="${BENCH_CONCURRENCY:-32}"
WINDOW="${BENCH_WINDOW:-64}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

if ! command -v bearerbox >/dev/null && [ ! -x /usr/sbin/bearerbox ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "bench: installing Kannel..." >&2
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kannel >/dev/null
  else
    echo "bench: Kannel is missing (apt-get install kannel)" >&2
    exit 1
  fi
fi
if [ "${BENCH_SKIP_BUILD:-0}" != 1 ]; then
  echo "bench: building release..." >&2
  cargo build --release --bin otpgate --example loadgen --example smsc
fi
BIN="$ROOT/target/release"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/otpgate-smpp-bench.XXXXXX")"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  sleep 0.5
  for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  if [ "${BENCH_KEEP:-0}" = 1 ]; then echo "bench: kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}
wait_port() {
  for _ in $(seq 200); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "bench: nothing listens on port $1 ($2); its logs:" >&2
  tail -n 20 "$WORK"/*.out "$WORK"/*.log 2>/dev/null | grep -v PANIC >&2 || true
  return 1
}
now() { date +%s.%N; }
submits() { awk '{print $1}' "$WORK/smsc.stats" 2>/dev/null || echo 0; }
# Waits until `$1` (a command printing a number) reaches `$2`; at most 300 s.
wait_for() {
  local deadline=$(( $(date +%s) + 300 ))
  while :; do
    local v; v="$($1)"
    [ "${v%.*}" -ge "$2" ] 2>/dev/null && return 0
    if [ "$(date +%s)" -gt "$deadline" ]; then
      echo "bench: $1 stuck at $v, wanted $2" >&2
      return 1
    fi
    sleep 0.02
  done
}

SMSC_PORT="$(free_port)"
"$BIN/examples/smsc" --listen "127.0.0.1:$SMSC_PORT" --stats "$WORK/smsc.stats" 2>"$WORK/smsc.err" &
PIDS+=($!)
wait_port "$SMSC_PORT" "bench SMSC"

# --- otpgate -----------------------------------------------------------------------------
PORT="$(free_port)"
cat >"$WORK/otpgate.toml" <<TOML
listen = "127.0.0.1:$PORT"
database_url = "sqlite://$WORK/bench.db"

[console]
enabled = false

[[routes]]
name = "bench-smsc"
provider = "smpp"
[routes.smpp]
host = "127.0.0.1"
port = $SMSC_PORT
system_id = "otpgate"
password = "bench"
window = $WINDOW
TOML
(
  for v in $(compgen -e | grep '^OTPGATE_' || true); do unset "$v"; done
  export OTPGATE_LOG=warn
  exec "$BIN/otpgate" --config "$WORK/otpgate.toml" serve
) >"$WORK/server.out" 2>"$WORK/server.err" </dev/null &
SERVER_PID=$!
PIDS+=("$SERVER_PID")
for _ in $(seq 300); do
  grep -q "API secret:" "$WORK/server.out" 2>/dev/null && break
  kill -0 "$SERVER_PID" 2>/dev/null || { cat "$WORK/server.err" >&2; exit 1; }
  sleep 0.1
done
KEY="$(awk '/Api-Key:/ {print $2; exit}' "$WORK/server.out")"
SECRET="$(awk '/API secret:/ {print $3; exit}' "$WORK/server.out")"
receipts() {
  curl -s "http://127.0.0.1:$PORT/metrics" |
    awk '/^otpgate_receipts_total\{/ {s += $2} END {printf "%d\n", s}'
}
# Wait for the bind.
for _ in $(seq 100); do
  curl -s "http://127.0.0.1:$PORT/metrics" | grep -q 'otpgate_route_up{route="bench-smsc"} 1' && break
  sleep 0.1
done

echo "bench: otpgate: $N sends, $C clients, SMPP window $WINDOW" >&2
base_submits="$(submits)"
t0="$(now)"
"$BIN/examples/loadgen" --base "http://127.0.0.1:$PORT" --key "$KEY" --secret "$SECRET" \
  --concurrency "$C" --requests "$N" --only-send --json >"$WORK/otpgate.json"
t_api="$(now)"
wait_for submits $((base_submits + N))
t_smsc="$(now)"
wait_for receipts "$N"
t1="$(now)"
OTP_ERRORS="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["errors"])' "$WORK/otpgate.json")"
kill -TERM "$SERVER_PID" 2>/dev/null || true

# --- Kannel ------------------------------------------------------------------------------
KADMIN="$(free_port)"; KBOX="$(free_port)"; KSEND="$(free_port)"
cat >"$WORK/kannel.conf" <<CONF
group = core
admin-port = $KADMIN
admin-password = bench
status-password = bench
admin-allow-ip = "127.0.0.1"
smsbox-port = $KBOX
box-allow-ip = "127.0.0.1"
dlr-storage = internal
log-level = 4
log-file = "$WORK/bearerbox.log"

group = smsc
smsc = smpp
smsc-id = bench
host = 127.0.0.1
port = $SMSC_PORT
transceiver-mode = true
receive-port = 0
smsc-username = kannel
smsc-password = bench
system-type = ""
max-pending-submits = $WINDOW
enquire-link-interval = 30

group = smsbox
bearerbox-host = 127.0.0.1
bearerbox-port = $KBOX
sendsms-port = $KSEND
log-level = 4
log-file = "$WORK/smsbox.log"

group = sendsms-user
username = bench
password = bench

group = sms-service
keyword = default
text = "ok"
CONF
/usr/sbin/bearerbox -v 4 "$WORK/kannel.conf" >"$WORK/bearerbox.out" 2>&1 &
PIDS+=($!)
wait_port "$KBOX" "bearerbox"
/usr/sbin/smsbox -v 4 "$WORK/kannel.conf" >"$WORK/smsbox.out" 2>&1 &
PIDS+=($!)
wait_port "$KSEND" "smsbox"
for _ in $(seq 100); do
  curl -s "http://127.0.0.1:$KADMIN/status.txt?password=bench" | grep -q 'bench.*online' && break
  sleep 0.1
done

echo "bench: Kannel: $N sendsms, $C clients, max-pending-submits $WINDOW" >&2
base_submits="$(submits)"
t2="$(now)"
"$BIN/examples/loadgen" --get "http://127.0.0.1:$KSEND/cgi-bin/sendsms?username=bench&password=bench&from=BENCH&to={to}&text=Your+code+is+4821" \
  --concurrency "$C" --requests "$N" --json >"$WORK/kannel.json"
t_kapi="$(now)"
wait_for submits $((base_submits + N))
t3="$(now)"
K_ERRORS="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["errors"])' "$WORK/kannel.json")"

mkdir -p "$ROOT/target/bench"
python3 - "$N" "$C" "$WINDOW" "$t0" "$t_api" "$t_smsc" "$t1" "$t2" "$t_kapi" "$t3" "$OTP_ERRORS" "$K_ERRORS" \
  >"$ROOT/target/bench/smpp-last.json" <<'PY'
import json, sys
n, c, w = map(int, sys.argv[1:4])
t0, tapi, tsmsc, t1, t2, tkapi, t3 = map(float, sys.argv[4:11])
oe, ke = int(sys.argv[11]), int(sys.argv[12])
otp = n / (t1 - t0)
kan = n / (t3 - t2)
print(json.dumps({
    "messages": n, "concurrency": c, "window": w,
    "otpgate": {"seconds": round(t1 - t0, 3), "apiSeconds": round(tapi - t0, 3),
                "allSubmittedSeconds": round(tsmsc - t0, 3), "perSecond": round(otp, 1),
                "httpErrors": oe},
    "kannel": {"seconds": round(t3 - t2, 3), "apiSeconds": round(tkapi - t2, 3),
               "perSecond": round(kan, 1), "httpErrors": ke},
    "ratio": round(otp / kan, 2), "target": 5.0, "met": otp / kan >= 5.0,
}, indent=2))
PY
cat "$ROOT/target/bench/smpp-last.json"
echo "machine: $(nproc) cores, $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)"
