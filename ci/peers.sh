#!/usr/bin/env bash
# The peer suites: otpgate against real peers on loopback (tests/api/peers.rs).
#
#   bash ci/peers.sh                 install, start the peers, run the peer tests, stop the peers
#   bash ci/peers.sh CMD [ARG...]    the same, running CMD with the peers' environment instead
#                                    (e.g. `bash ci/peers.sh bash` for a shell with them up)
#
# Peers (every one started here, on free loopback ports, and stopped on exit):
#   - an independent SMPP SMSC on npm smpp@0.5.1 (ci/fake_smsc.js), one port for otpgate's own
#     SMPP provider and one for Kannel;
#   - Kannel set A: bearerbox with an `smsc = fake` group, Kannel's fakesmsc, smsbox;
#   - Kannel set B: bearerbox with two `smsc = smpp` groups (transceiver) on the npm SMSC, one
#     with a good password (smsc-id `smpp`) and one with the password `bad` (smsc-id
#     `smpp-bad`, which never binds), smsbox.
# Installs kannel + kannel-extras (and curl, python3, nodejs/npm if absent; apt, needs root or
# sudo) and smpp@0.5.1 (npm, into ci/.peers/node) when missing. Logs and configs go to a temp
# dir, printed on failure; set PEERS_KEEP_LOGS=1 to keep it. See docs/peers-ci.md.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
started=$(date +%s)

say() { printf '[peers] %s\n' "$*"; }

# ------------------------------------------------------------------------------------------
# Install

KANNEL_BIN=/usr/sbin
FAKESMSC=/usr/lib/kannel/test/fakesmsc
need=()
if [ ! -x "$KANNEL_BIN/bearerbox" ] || [ ! -x "$KANNEL_BIN/smsbox" ] || [ ! -x "$FAKESMSC" ]; then
  need+=(kannel kannel-extras)
fi
command -v curl >/dev/null || need+=(curl)
command -v python3 >/dev/null || need+=(python3)
command -v npm >/dev/null || need+=(nodejs npm)
if [ ${#need[@]} -gt 0 ]; then
  say "installing ${need[*]} (apt)"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  if ! $SUDO apt-get install -y -q "${need[@]}" >/dev/null; then
    $SUDO apt-get update -q >/dev/null
    $SUDO apt-get install -y -q "${need[@]}" >/dev/null
  fi
fi

NODE_DIR="$ROOT/ci/.peers/node"
if ! grep -qs '"version": "0.5.1"' "$NODE_DIR/node_modules/smpp/package.json"; then
  say "installing smpp@0.5.1 (npm) into ci/.peers/node"
  mkdir -p "$NODE_DIR"
  npm install --prefix "$NODE_DIR" --no-audit --no-fund --loglevel=error smpp@0.5.1 >/dev/null
fi

# ------------------------------------------------------------------------------------------
# Start

work=$(mktemp -d "${TMPDIR:-/tmp}/otpgate-peers.XXXXXX")
pids=()

stop_all() {
  local rc=$?
  # Reverse start order: smsboxes before bearerboxes before the SMSCs they talk to.
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    kill "${pids[i]}" 2>/dev/null || true
  done
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    for _ in $(seq 1 50); do
      kill -0 "${pids[i]}" 2>/dev/null || break
      sleep 0.1
    done
    kill -9 "${pids[i]}" 2>/dev/null || true
    wait "${pids[i]}" 2>/dev/null || true
  done
  if [ "$rc" -ne 0 ]; then
    for f in "$work"/*.log; do
      [ -s "$f" ] || continue
      printf '\n----- %s (last 40 lines) -----\n' "$(basename "$f")"
      tail -n 40 "$f"
    done
  fi
  if [ "${PEERS_KEEP_LOGS:-}" = 1 ] || [ "$rc" -ne 0 ]; then
    say "logs and configs kept in $work"
  else
    rm -rf "$work"
  fi
  say "peers stopped after $(($(date +%s) - started)) s (exit $rc)"
  exit "$rc"
}
trap stop_all EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# start NAME CMD...: runs CMD in the background with its output in $work/NAME.log.
start() {
  local name=$1
  shift
  "$@" </dev/null >"$work/$name.log" 2>&1 &
  pids+=("$!")
  say "started $name (pid $!)"
}

# wait_for WHAT CHECK...: polls CHECK (a command) for up to 30 s.
wait_for() {
  local what=$1
  shift
  for _ in $(seq 1 300); do
    if "$@" >/dev/null 2>&1; then
      say "$what is up"
      return 0
    fi
    sleep 0.1
  done
  say "timed out waiting for $what"
  return 1
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
grep_log() { grep -q "$2" "$work/$1.log"; }
http_ok() { curl -fsS -o /dev/null --max-time 2 "$1"; }

# Free loopback ports, all distinct.
read -r SMSC_OTP SMSC_KANNEL A_ADMIN A_BOX A_FAKE A_SEND B_ADMIN B_BOX B_SEND < <(python3 - <<'EOF'
import socket
socks = []
for _ in range(9):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
)

KANNEL_USER=otp
KANNEL_PASS=otppw
STATUS_PASS=peersstatus

# kannel_conf FILE ADMIN BOX SEND SMSC-GROUPS: a bearerbox + smsbox configuration.
kannel_conf() {
  cat >"$1" <<EOF
group = core
admin-port = $2
admin-interface = 127.0.0.1
admin-password = peersadmin
status-password = $STATUS_PASS
admin-allow-ip = "127.0.0.1"
smsbox-port = $3
smsbox-interface = 127.0.0.1
box-allow-ip = "127.0.0.1"
dlr-storage = internal

$5

group = smsbox
bearerbox-host = 127.0.0.1
bearerbox-port = $3
sendsms-port = $4
sendsms-interface = 127.0.0.1
global-sender = OTPGATE

group = sendsms-user
username = $KANNEL_USER
password = $KANNEL_PASS
max-messages = 10
concatenation = true

group = sms-service
keyword = default
catch-all = true
text = "no service"
EOF
}

kannel_conf "$work/kannel-fake.conf" "$A_ADMIN" "$A_BOX" "$A_SEND" "group = smsc
smsc = fake
smsc-id = fake
port = $A_FAKE
connect-allow-ip = \"127.0.0.1\""

kannel_conf "$work/kannel-smpp.conf" "$B_ADMIN" "$B_BOX" "$B_SEND" "group = smsc
smsc = smpp
smsc-id = smpp
denied-smsc-id = smpp-bad
host = 127.0.0.1
port = $SMSC_KANNEL
receive-port = 0
transceiver-mode = true
smsc-username = kannel
smsc-password = kannelpw
system-type = \"\"
enquire-link-interval = 30
reconnect-delay = 2

group = smsc
smsc = smpp
smsc-id = smpp-bad
allowed-smsc-id = smpp-bad
host = 127.0.0.1
port = $SMSC_KANNEL
receive-port = 0
transceiver-mode = true
smsc-username = kannelbad
smsc-password = bad
system-type = \"\"
reconnect-delay = 5"

: >"$work/smsc-record.jsonl"
start smsc env SMSC_RECORD="$work/smsc-record.jsonl" NODE_PATH="$NODE_DIR/node_modules" \
  node "$ROOT/ci/fake_smsc.js" "$SMSC_OTP" "$SMSC_KANNEL"
wait_for "npm fake SMSC" bash -c "$(declare -f port_open); port_open $SMSC_OTP && port_open $SMSC_KANNEL"

# Set A: bearerbox, then the fake SMSC (it connects to the bearerbox), then the smsbox.
start kannel-fake-bearerbox "$KANNEL_BIN/bearerbox" -v 1 "$work/kannel-fake.conf"
wait_for "Kannel A bearerbox (fake smsc port)" port_open "$A_FAKE"
start kannel-fakesmsc "$FAKESMSC" -H 127.0.0.1 -r "$A_FAKE" -i 0.1 -m 0 "123 234 text nop"
wait_for "Kannel A bearerbox (smsbox port)" port_open "$A_BOX"
start kannel-fake-smsbox "$KANNEL_BIN/smsbox" -v 1 "$work/kannel-fake.conf"

# Set B: bearerbox (binds to the npm SMSC), then the smsbox.
start kannel-smpp-bearerbox "$KANNEL_BIN/bearerbox" -v 1 "$work/kannel-smpp.conf"
wait_for "Kannel B bearerbox (smsbox port)" port_open "$B_BOX"
start kannel-smpp-smsbox "$KANNEL_BIN/smsbox" -v 1 "$work/kannel-smpp.conf"

status_a="http://127.0.0.1:$A_ADMIN/status.txt?password=$STATUS_PASS"
status_b="http://127.0.0.1:$B_ADMIN/status.txt?password=$STATUS_PASS"
# smsc_state STATUS-URL SMSC-ID STATE: the smsc's line in status.txt shows STATE.
smsc_state() { curl -fsS --max-time 2 "$1" | grep -E "^ *$2\[" | grep -q "($3"; }
wait_for "Kannel A smsbox (sendsms)" port_open "$A_SEND"
wait_for "Kannel A fake smsc online" smsc_state "$status_a" fake online
wait_for "Kannel B smsbox (sendsms)" port_open "$B_SEND"
wait_for "Kannel B smpp smsc bound" smsc_state "$status_b" smpp online
# Kannel 1.4.5 gives up on an smsc whose bind is refused for its password (status `dead`).
wait_for "Kannel B smpp-bad smsc refused" smsc_state "$status_b" smpp-bad dead
for b in A B; do
  s=$status_a
  [ $b = B ] && s=$status_b
  wait_for "Kannel $b smsbox connected" bash -c "curl -fsS --max-time 2 '$s' | grep -q '^Box connections:' && curl -fsS --max-time 2 '$s' | grep -q 'smsbox:'"
done

export OTPGATE_PEER_KANNEL_FAKE="http://127.0.0.1:$A_SEND/cgi-bin/sendsms"
export OTPGATE_PEER_KANNEL_SMPP="http://127.0.0.1:$B_SEND/cgi-bin/sendsms"
export OTPGATE_PEER_KANNEL_USER=$KANNEL_USER
export OTPGATE_PEER_KANNEL_PASSWORD=$KANNEL_PASS
export OTPGATE_PEER_KANNEL_FAKESMSC_LOG="$work/kannel-fakesmsc.log"
export OTPGATE_PEER_SMSC="127.0.0.1:$SMSC_OTP"
export OTPGATE_PEER_SMSC_RECORD="$work/smsc-record.jsonl"
say "peers up in $(($(date +%s) - started)) s:"
env | grep '^OTPGATE_PEER_' | sort | sed 's/^/[peers]   /'

if [ $# -gt 0 ]; then
  "$@"
else
  cargo test --test api peers -- --test-threads=1
fi
