#!/usr/bin/env bash
# `make bench-stream`: the same 1,000,000-payment ledger through a real
# broker on loopback, (a) a consume-only loop with the service's consumer
# settings that only decodes, against (b) the full service (decode, order,
# apply, commit, publish); then the latency from producing a payment to its
# alert on the alerts topic at a steady 5,000 payments/s.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${CARGO_TARGET_DIR:-target}/release/paywatch"
WORK=$(mktemp -d /var/tmp/paywatch-bench-stream-XXXX)
source scripts/kafka-lib.sh
HOUSEHOLDS="${BENCH_HOUSEHOLDS:-20000}"
PART="${1:-all}"   # all | throughput | latency

if [ "$PART" != latency ]; then
start_broker
"$BIN" generate --out "$WORK/ledger" --households "$HOUSEHOLDS" --seed 5 2>&1 | tail -1
write_config "$WORK/produce.toml" "$WORK/unused" produce
for t in roster:dibao.roster.v1 deaths:civil.deaths.v1 payments:dibao.payments.v1; do
  "$BIN" produce --config "$WORK/produce.toml" --topic "${t#*:}" \
    --deadletter "$WORK/dead-${t%%:*}.jsonl" "$WORK/ledger/${t%%:*}.jsonl" 2>&1
done
TOTAL=$(cat "$WORK"/ledger/{roster,deaths,payments}.jsonl | wc -l)
PAYMENTS=$(wc -l <"$WORK/ledger/payments.jsonl")
echo "ledger: $TOTAL records ($PAYMENTS payment lines)"

# (a) consume-only
write_config "$WORK/a.toml" "$WORK/a-state" bench-consume-only
A=$("$BIN" consume-only --config "$WORK/a.toml" --expect "$TOTAL")
echo "(a) consume-only: $A"

# (b) the full service, from start to everything applied, committed and published
write_config "$WORK/b.toml" "$WORK/b-state" bench-service
START=$(date +%s.%N)
/usr/bin/time -f "%M" -o "$WORK/b.rss" "$BIN" run --config "$WORK/b.toml" 2>"$WORK/b.log" &
SVC=$!
PIDS+=($SVC)
wait_port "$HTTP_PORT"
wait_idle $((TOTAL - 200))
END=$(date +%s.%N)
B_STATUS=$(status)
pkill -TERM -P "$SVC" || true; wait "$SVC" || true
python3 - "$A" "$START" "$END" "$B_STATUS" "$(cat "$WORK/b.rss")" <<'PY'
import json, sys
a = json.loads(sys.argv[1])
start, end = float(sys.argv[2]), float(sys.argv[3])
s = json.loads(sys.argv[4])
applied = sum(s["counts"].values())
b_rate = applied / (end - start)
print(f"(b) full service: {applied} records applied, committed and published in {end-start:.1f} s "
      f"(process start to idle, group join included) = {b_rate:,.0f} records/s; "
      f"{s['alerts']} alerts; peak RSS {int(sys.argv[5])//1024} MiB")
print(f"(a) consume-only: {a['records']} records in {a['seconds']:.1f} s (first to last message) = {a['rate']:,.0f} records/s")
print(f"ratio (b)/(a) = {b_rate / a['rate']:.2f}")
PY

fi

# Latency at a steady 5,000 payments/s on a fresh broker and service: the
# three files merged in event-time order, produced as a live feed would be.
[ "$PART" = throughput ] && exit 0
cleanup; PIDS=()
start_broker
LAT_HH="${BENCH_LATENCY_HOUSEHOLDS:-2000}"
"$BIN" generate --out "$WORK/lat" --households "$LAT_HH" --seed 6 2>&1 | tail -1
write_config "$WORK/c.toml" "$WORK/c-state" bench-latency
"$BIN" run --config "$WORK/c.toml" 2>"$WORK/c.log" &
PIDS+=($!)
wait_port "$HTTP_PORT"
echo "latency at 5,000 payments/s (produce to alert read, ms):"
python3 "$TOOL" steady "$BROKER" "$WORK/lat" 5000 "$WORK/latency.json"
