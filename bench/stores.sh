#!/usr/bin/env bash
# Send and verify on SQLite and on PostgreSQL in the same run (docs/PERFORMANCE.md):
#
#   bash bench/stores.sh
#
# Runs bench/run.sh twice on one release build: first on a temporary SQLite file, then on a
# fresh schema of the PostgreSQL server at BENCH_POSTGRES (default
# postgres://postgres@127.0.0.1:5432/test; the schema is dropped afterwards), and prints the
# two side by side. BENCH_SECS and BENCH_CONCURRENCY apply to both.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PG="${BENCH_POSTGRES:-postgres://postgres@127.0.0.1:5432/test}"
command -v psql >/dev/null || { echo "bench: psql is needed to make the PostgreSQL schema" >&2; exit 1; }
SCHEMA="bench_$(date +%s)_$$"
psql "$PG" -qc "CREATE SCHEMA $SCHEMA" >/dev/null
trap 'psql "$PG" -qc "DROP SCHEMA IF EXISTS $SCHEMA CASCADE" >/dev/null 2>&1 || true' EXIT
sep='?'; case "$PG" in *\?*) sep='&' ;; esac

if [ "${BENCH_SKIP_BUILD:-0}" != 1 ]; then
  cargo build --release --bin otpgate --example loadgen
fi
echo "== SQLite ==" >&2
BENCH_SKIP_BUILD=1 BENCH_LABEL=stores-sqlite bash bench/run.sh
echo "== PostgreSQL ($PG, schema $SCHEMA) ==" >&2
BENCH_SKIP_BUILD=1 BENCH_LABEL=stores-postgres \
  BENCH_DATABASE_URL="$PG${sep}options=-c%20search_path%3D$SCHEMA" \
  BENCH_MASTER_KEY="$(head -c 32 /dev/urandom | base64)" bash bench/run.sh

python3 - "$ROOT/target/bench/stores-sqlite-last.json" "$ROOT/target/bench/stores-postgres-last.json" <<'PY'
import json, sys
runs = [json.load(open(p)) for p in sys.argv[1:]]
def phase(run, name):
    return next((p for p in run["phases"] if p["phase"] == name), None)
print(f"{'phase':<8} {'SQLite req/s':>13} {'p99 ms':>8} {'PostgreSQL req/s':>17} {'p99 ms':>8} {'PG/SQLite':>10}")
for name in ("healthz", "send", "verify"):
    a, b = phase(runs[0], name), phase(runs[1], name)
    if not a or not b:
        continue
    ratio = b["throughputRps"] / a["throughputRps"] if a["throughputRps"] else 0
    print(f"{name:<8} {a['throughputRps']:>13.0f} {a['p99Ms']:>8.1f} {b['throughputRps']:>17.0f} {b['p99Ms']:>8.1f} {ratio:>10.2f}")
PY
