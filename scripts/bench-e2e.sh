#!/usr/bin/env bash
# End-to-end bench: generate ledgers of ~1M and ~4M payment events, audit
# each on a fresh embedded RocksDB, and print payment events per second and
# peak RSS (GNU time). Ledgers are kept under $BENCH_DIR between runs.
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"
bin="$target/release/paywatch"
dir="${BENCH_DIR:-/var/tmp/paywatch-bench}"
sizes="${BENCH_HOUSEHOLDS:-20000 80000}"
mkdir -p "$dir"
printf '%-12s %-14s %-12s %-16s %-12s\n' households payment_events seconds payment_events/s peak_rss_MiB
for n in $sizes; do
  ledger="$dir/h$n"
  if [ ! -f "$ledger/truth.json" ]; then
    "$bin" generate --out "$ledger" --households "$n" --seed 7 2>/dev/null
  fi
  rm -rf "$ledger/state" "$ledger/alerts.jsonl"
  /usr/bin/time -v "$bin" audit --roster "$ledger/roster.jsonl" --deaths "$ledger/deaths.jsonl" \
    --payments "$ledger/payments.jsonl" --out "$ledger/alerts.jsonl" --state "$ledger/state" \
    2> "$ledger/audit.stderr" >/dev/null
  line=$(grep 'payment events/s' "$ledger/audit.stderr")
  events=$(echo "$line" | sed -E 's/.*\(([0-9]+) payment events\).*/\1/')
  secs=$(echo "$line" | sed -E 's/.* in ([0-9.]+)s .*/\1/')
  rate=$(echo "$line" | sed -E 's/.*= ([0-9]+) payment events\/s.*/\1/')
  rss=$(awk '/Maximum resident set size/ {printf "%d", $6/1024}' "$ledger/audit.stderr")
  printf '%-12s %-14s %-12s %-16s %-12s\n' "$n" "$events" "$secs" "$rate" "$rss"
  python3 - "$ledger" <<'PY' || true
import json, sys
d = sys.argv[1]
truth = {e["key"] for e in json.load(open(d + "/truth.json"))["expected"]}
print(f"             planted alerts {len(truth)}; alerts written {sum(1 for _ in open(d + '/alerts.jsonl'))}")
PY
done
