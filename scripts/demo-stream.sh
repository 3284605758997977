#!/usr/bin/env bash
# `make demo-stream`: a local Kafka-protocol broker (tansu) on 127.0.0.1, a
# generated district ledger loaded into it with `paywatch produce`,
# `paywatch run` following the topics, and the alerts arriving on the
# alerts topic. Everything stops when the script ends.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${CARGO_TARGET_DIR:-target}/release/paywatch"
WORK=$(mktemp -d /tmp/paywatch-demo-stream-XXXX)
source scripts/kafka-lib.sh

echo "== a broker on loopback"
start_broker
echo "   $BROKER (log: $WORK/tansu.log)"

echo "== a district ledger: 500 households, 2018-01 … 2021-12"
"$BIN" generate --out "$WORK/ledger" --households 500 --seed 7 2>&1 | sed 's/^/   /'

write_config "$WORK/paywatch.toml" "$WORK/state" paywatch-demo
echo "== loaded into the input topics (sorted by event time, keyed per the contract)"
for t in roster:dibao.roster.v1 deaths:civil.deaths.v1 payments:dibao.payments.v1; do
  "$BIN" produce --config "$WORK/paywatch.toml" --topic "${t#*:}" \
    --deadletter "$WORK/produce-${t%%:*}-dead.jsonl" "$WORK/ledger/${t%%:*}.jsonl" 2>&1 | sed 's/^/   /'
done
TOTAL=$(cat "$WORK"/ledger/{roster,deaths,payments}.jsonl | wc -l)

echo "== paywatch run (http://127.0.0.1:$HTTP_PORT/status, /metrics)"
PAYWATCH_LOG=warn,paywatch=info "$BIN" run --config "$WORK/paywatch.toml" 2>"$WORK/run.log" &
PIDS+=($!)
wait_port "$HTTP_PORT"
wait_idle $((TOTAL * 9 / 10))
status | python3 -m json.tool | sed 's/^/   /'

echo "== the alerts topic"
python3 "$TOOL" consume "$BROKER" dibao.alerts.v1 "$WORK/alerts-topic.jsonl" --idle 2 >/dev/null
python3 - "$WORK/alerts-topic.jsonl" <<'PY'
import collections, json, sys
alerts = [json.loads(json.loads(l)["value"]) for l in open(sys.argv[1])]
print(f"   {len(alerts)} alerts on dibao.alerts.v1, keyed by alert_id")
for rule, n in collections.Counter(a["rule"] for a in alerts).most_common():
    print(f"   {rule:<24}{n:>5}")
print("   e.g.:")
seen = set()
for a in alerts:
    if a["rule"] not in seen:
        seen.add(a["rule"])
        print(f"   [{a['severity']}] {a['township']} {a['reason']}")
PY
echo "== dead letters (bad records, with their topic, partition, offset and reason in headers)"
python3 "$TOOL" consume "$BROKER" dibao.deadletter.v1 "$WORK/dead-topic.jsonl" --idle 2 | sed 's/^/   messages: /'
echo "   files: $WORK (state, logs, topic dumps)"
