#!/usr/bin/env bash
# Fuzzes the running server against its own /openapi.json with schemathesis.
#
# Checks excluded, because the Buka contract answers every outcome with HTTP 200 and a status
# code in the body (spec/README.md, Buka decision 1; the vendor SDK treats any other HTTP status
# as a transport failure):
#   negative_data_rejection  (expects 4xx for invalid input; we answer 200 + "-22")
#   ignored_auth             (expects 401/403 without credentials; we answer 200 + "-1")
#   missing_required_header  (same, for a missing Api-Key/Timestamp/Sign)
# Everything else runs: no 5xx, documented status codes only, responses match their schemas.
set -euo pipefail
cd "$(dirname "$0")/.."

MAX_TIME="${SCHEMATHESIS_MAX_TIME:-120}"
VENV="${SCHEMATHESIS_VENV:-.venv-tools}"
if [ ! -x "$VENV/bin/schemathesis" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check 'schemathesis>=4,<5'
fi

cargo build --quiet --bin otpgate
work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
OTPGATE_LISTEN="127.0.0.1:$port" \
OTPGATE_DATABASE_URL="sqlite://$work/fuzz.db" \
OTPGATE_MODE=development \
OTPGATE_TIMESTAMP_TOLERANCE_SECS=86400 \
OTPGATE_LOG=warn \
  "${CARGO_TARGET_DIR:-target}/debug/otpgate" serve >"$work/out.log" 2>"$work/err.log" &
pid=$!
trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; rm -rf "$work"' EXIT

for _ in $(seq 1 100); do
  grep -q "API secret" "$work/out.log" 2>/dev/null && break
  kill -0 $pid 2>/dev/null || { cat "$work/err.log"; echo "server exited"; exit 1; }
  sleep 0.1
done
key=$(awk '/Api-Key:/ {print $2}' "$work/out.log")
secret=$(awk '/API secret:/ {print $3}' "$work/out.log")
[ -n "$key" ] && [ -n "$secret" ] || { cat "$work/out.log" "$work/err.log"; echo "no development tenant printed"; exit 1; }
ts=$(date +%s)
sign=$(printf '%s' "$key$secret$ts" | md5sum | cut -d' ' -f1)

rc=0
"$VENV/bin/schemathesis" run "http://127.0.0.1:$port/openapi.json" \
  --checks all \
  --exclude-checks negative_data_rejection,ignored_auth,missing_required_header \
  --header "Api-Key: $key" --header "Timestamp: $ts" --header "Sign: $sign" \
  --max-time "$MAX_TIME" \
  --seed "${SCHEMATHESIS_SEED:-$ts}" || rc=$?
if ! kill -0 $pid 2>/dev/null; then
  echo "the server died during fuzzing; its last log lines:"
  tail -50 "$work/err.log"
  exit 1
fi
if [ "$rc" -ne 0 ]; then
  echo "schemathesis failed (exit $rc); the server is alive; its last log lines:"
  tail -50 "$work/err.log"
fi
exit "$rc"
