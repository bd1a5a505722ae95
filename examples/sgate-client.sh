#!/usr/bin/env bash
# A working SGate payout-API OTP client in bash, openssl and curl: it signs each request the
# way the vendor documents (MD5withRSA over the MD5 hex of the signed JSON) and checks the
# signature of the answer with the system public key.
#
#   export SGATE_URL=http://127.0.0.1:8080          # otpgate's base URL (no /openApi/v1)
#   export SGATE_API_KEY=...                         # from `otpgate merchant create`
#   export SGATE_PRIVATE_KEY=merchant-private.pem    # the merchant's RSA private key
#   export SGATE_SYSTEM_KEY=system-public.pem        # `otpgate merchant system-key` (optional)
#
#   examples/sgate-client.sh sendOtp  '{"mobile":"+966512345678","appname":"TestApp"}'
#   examples/sgate-client.sh otpDetail 'mobile=512345678&sessionid=10290d703f8254593ff93533f00af153'
#   examples/sgate-client.sh checkOtp '{"mobile":"512345678","code":"123456","sessionid":"10290d703f8254593ff93533f00af153"}'
#
# Prints the response body on stdout; on stderr, the response signature's check. Exits 0 when
# the call answered code 200 and the signature (if SGATE_SYSTEM_KEY is set) verified.
set -euo pipefail

call=${1:?usage: sgate-client.sh sendOtp|otpDetail|checkOtp JSON-BODY|QUERY}
arg=${2:-}
: "${SGATE_URL:?set SGATE_URL}" "${SGATE_API_KEY:?set SGATE_API_KEY}" "${SGATE_PRIVATE_KEY:?set SGATE_PRIVATE_KEY}"
base=${SGATE_URL%/}

case $call in
  otpDetail) method=GET;  url="/openApi/v1/otp/otpDetail?$arg"; body="" ;;
  sendOtp|checkOtp) method=POST; url="/openApi/v1/otp/$call"; body=$arg ;;
  *) echo "unknown call $call" >&2; exit 2 ;;
esac

# JSON string escaping for the signed object, as the server's JSON writer does it: backslash,
# quote, \b \f \n \r \t, and \u00XX for the other control characters; non-ASCII characters
# and '/' stay as they are, as the vendor requires.
json_string() {
  local s=$1 c ch
  s=${s//\\/\\\\}; s=${s//\"/\\\"}
  s=${s//$'\b'/\\b}; s=${s//$'\f'/\\f}
  s=${s//$'\n'/\\n}; s=${s//$'\r'/\\r}; s=${s//$'\t'/\\t}
  for c in 1 2 3 4 5 6 7 11 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31; do
    printf -v ch "\\$(printf '%03o' "$c")"
    if [[ $s == *"$ch"* ]]; then s=${s//"$ch"/$(printf '\\u%04x' "$c")}; fi
  done
  printf '"%s"' "$s"
}

signing_string() { # api_key timestamp nonce url method body
  printf '{"api_key":%s,"timestamp":%s,"nonce_str":%s,"url":%s,"method":%s,"body":%s}' \
    "$(json_string "$1")" "$2" "$(json_string "$3")" "$(json_string "$4")" "$(json_string "$5")" "$(json_string "$6")"
}

md5_hex() { printf '%s' "$1" | openssl dgst -md5 -r | cut -c1-32; }

ts=$(date +%s)
nonce=$(openssl rand -hex 12)
digest=$(md5_hex "$(signing_string "$SGATE_API_KEY" "$ts" "$nonce" "$url" "$method" "$body")")
signature=$(printf '%s' "$digest" | openssl dgst -md5 -sign "$SGATE_PRIVATE_KEY" | openssl base64 -A)

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# -g: a query's [ ] { } are sent as they are, not expanded by curl.
curl_args=(-sS -g -o "$tmp/body" -D "$tmp/headers" -X "$method" "$base$url"
  -H "User-Agent: sgate-client.sh/1" -H "V-Api-Key: $SGATE_API_KEY" -H "V-Api-Version: 1"
  -H "V-Timestamp: $ts" -H "V-Nonce-Str: $nonce" -H "V-Signature: $signature")
if [ "$method" = POST ]; then
  curl_args+=(-H "Content-Type: application/json" --data-binary "$body")
fi
curl "${curl_args[@]}"
# The body exactly as received (command substitution would drop trailing newlines).
response=$(cat "$tmp/body"; printf x)
response=${response%x}
printf '%s\n' "$response"

# The value of a response header ("" when absent), without the line's CR and outer spaces.
header() {
  grep -i "^$1:" "$tmp/headers" | head -1 | sed -e 's/^[^:]*:[[:space:]]*//' -e 's/[[:space:]]*$//' || true
}
ok=0
if [ -n "${SGATE_SYSTEM_KEY:-}" ]; then
  rsig=$(header V-Signature)
  if ! grep -qi '^V-Signature:' "$tmp/headers"; then
    echo "response signature: missing (no V-Signature header; is $base an SGate server?)" >&2
    ok=1
  elif [ -z "$rsig" ]; then
    echo "response signature: empty (the request was not authenticated)" >&2
    ok=1
  else
    rdigest=$(md5_hex "$(signing_string "$(header V-Api-Key)" "$(header V-Timestamp)" "$(header V-Nonce-Str)" "$url" "$method" "$response")")
    printf '%s' "$rsig" | openssl base64 -d -A > "$tmp/sig"
    if printf '%s' "$rdigest" | openssl dgst -md5 -verify "$SGATE_SYSTEM_KEY" -signature "$tmp/sig" >/dev/null; then
      echo "response signature: verified" >&2
    else
      echo "response signature: INVALID" >&2
      ok=1
    fi
  fi
fi
case $response in
  '{"code":200,'*) exit $ok ;;
  *) exit 1 ;;
esac
