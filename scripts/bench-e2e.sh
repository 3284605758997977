#!/usr/bin/env bash
# End-to-end bench: generate ledgers of ~1M and ~4M payment events, audit
# each on a fresh embedded RocksDB, and print payment events per second and
# peak RSS (GNU time). Ledgers are kept under $BENCH_DIR between runs.
#
# Sizes are households:first-month:last-month. The default compares one
# district over 4 years (~1M payments) with the same district over 16 years
# (~4M: the ledger grows with time) and with 4x the households over 4 years
# (~4M: the working set grows too).
#
# Each ledger is audited BENCH_RUNS times (default 3): the run with the
# median time is printed, with the highest peak RSS of all runs and every
# run's rate after it (run-to-run noise on a shared 2-core machine is about
# +-10 %).
#
# BENCH_LANES=N runs the engine with `[engine] lanes = N` (#16), and
# BENCH_REPARTITION=1 with `[engine] repartition_records = true`: the
# facts between keys travel as repartition records, and what each topic
# would carry is printed.
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"
bin="$target/release/paywatch"
dir="${BENCH_DIR:-/var/tmp/paywatch-bench}"
sizes="${BENCH_SIZES:-20000:2018-01:2021-12 20000:2009-11:2025-10 90000:2018-01:2021-12}"
mkdir -p "$dir"
config=()
if [ -n "${BENCH_LANES:-}" ] || [ -n "${BENCH_REPARTITION:-}" ]; then
  {
    echo '[engine]'
    [ -z "${BENCH_LANES:-}" ] || echo "lanes = $BENCH_LANES"
    [ -z "${BENCH_REPARTITION:-}" ] || echo "repartition_records = true"
  } > "$dir/engine.toml"
  config=(--config "$dir/engine.toml")
  echo "engine: lanes ${BENCH_LANES:-1}, repartition records ${BENCH_REPARTITION:-off}"
fi
printf '%-30s %-14s %-10s %-18s %-12s\n' households:months payment_events seconds payment_events/s peak_rss_MiB
for size in $sizes; do
  IFS=: read -r n from to <<< "$size"
  ledger="$dir/h$n-$from-$to"
  # A ledger of an older generator lacks the newer inputs: made again.
  if [ ! -f "$ledger/truth.json" ] || [ ! -f "$ledger/vulnerable.jsonl" ]; then
    "$bin" generate --out "$ledger" --households "$n" --from "$from" --to "$to" --seed 7 2>/dev/null
  fi
  results=()
  for _ in $(seq "${BENCH_RUNS:-3}"); do
    rm -rf "$ledger/state" "$ledger/alerts.jsonl"
    sync
    /usr/bin/time -v "$bin" audit --roster "$ledger/roster.jsonl" --deaths "$ledger/deaths.jsonl" \
      --payments "$ledger/payments.jsonl" --decisions "$ledger/decisions.jsonl" \
      --vulnerable "$ledger/vulnerable.jsonl" \
      --out "$ledger/alerts.jsonl" --state "$ledger/state" "${config[@]}" \
      2> "$ledger/audit.stderr" >/dev/null
    line=$(grep 'payment events/s' "$ledger/audit.stderr")
    events=$(echo "$line" | sed -E 's/.*\(([0-9]+) payment events\).*/\1/')
    secs=$(echo "$line" | sed -E 's/.* in ([0-9.]+)s .*/\1/')
    rate=$(echo "$line" | sed -E 's/.*= ([0-9]+) payment events\/s.*/\1/')
    rss=$(awk '/Maximum resident set size/ {printf "%d", $6/1024}' "$ledger/audit.stderr")
    results+=("$secs $events $rate $rss")
  done
  median=$(printf '%s\n' "${results[@]}" | sort -n | awk '{a[NR]=$0} END {print a[int((NR+1)/2)]}')
  read -r secs events rate _ <<< "$median"
  rss=$(printf '%s\n' "${results[@]}" | awk '$4 > m {m = $4} END {print m}')
  all=$(printf '%s\n' "${results[@]}" | awk '{printf "%s%s", sep, $3; sep=" "}')
  printf '%-30s %-14s %-10s %-18s %-12s runs: %s\n' "$size" "$events" "$secs" "$rate" "$rss" "$all"
  if [ -n "${BENCH_REPARTITION:-}" ]; then
    # The median run's figures are the same in every run: the ledger fixes them.
    grep 'repartition records' "$ledger/audit.stderr" | sed -E 's/\x1b\[[0-9;]*m//g; s/.*(topic=.*)/  \1/' || true
  fi
  python3 - "$ledger" <<'PY' || true
import json, sys
d = sys.argv[1]
truth = {e["key"] for e in json.load(open(d + "/truth.json"))["expected"]}
print(f"{'':31}planted alerts {len(truth)}; alerts written {sum(1 for _ in open(d + '/alerts.jsonl'))}")
PY
done
