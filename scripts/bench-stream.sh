#!/usr/bin/env bash
# `make bench-stream`: the same 1,000,000-payment ledger through a real
# broker on loopback, (a) a consume-only loop with the service's consumer
# settings that only decodes, against (b) the full service (decode, order,
# apply, commit, publish); (c) the restore after a `kill -9` mid-replay
# (state directory kept: RocksDB reopened, partitions sought to the stored
# offsets) and after a lost state directory (replay from the first offset);
# (d) the service with the changelog on, and `paywatch restore` of its
# state on another directory, against replaying the inputs (b); (e) a
# standby taking over after a `kill -9`, with and without a warm copy;
# (f) the account tasks ([kafka.accounts]) with 1, 2 and 3 instances; then
# the latency from producing a payment to its alert on the alerts topic at
# a steady 5,000 payments/s.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${CARGO_TARGET_DIR:-target}/release/paywatch"
WORK=$(mktemp -d /var/tmp/paywatch-bench-stream-XXXX)
source scripts/kafka-lib.sh
HOUSEHOLDS="${BENCH_HOUSEHOLDS:-20000}"
PART="${1:-all}"   # all | throughput | restore | changelog | standby | accounts | latency

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
echo "state directory after the replay: $(du -sm "$WORK/b-state" | cut -f1) MiB"

# (c) restore: a fresh service killed (-9) once half the ledger is applied,
# then started again on the same state directory.
if [ "$PART" = all ] || [ "$PART" = restore ]; then
write_config "$WORK/c.toml" "$WORK/c-state" bench-restore
"$BIN" run --config "$WORK/c.toml" 2>"$WORK/c1.log" &
SVC=$!
PIDS+=($SVC)
wait_port "$HTTP_PORT"
python3 - "$HTTP_PORT" "$OPERATOR_TOKEN" $((TOTAL / 2)) <<'PY'
import json, sys, time, urllib.request
port, token, half = sys.argv[1], sys.argv[2], int(sys.argv[3])
while True:
    try:
        req = urllib.request.Request(f"http://127.0.0.1:{port}/status", headers={"Authorization": f"Bearer {token}"})
        if sum(json.load(urllib.request.urlopen(req, timeout=5))["counts"].values()) >= half:
            break
    except Exception:
        pass
    time.sleep(0.05)
PY
kill -9 "$SVC"; wait "$SVC" 2>/dev/null || true
START=$(date +%s.%N)
"$BIN" run --config "$WORK/c.toml" 2>"$WORK/c2.log" &
PIDS+=($!)
wait_port "$HTTP_PORT"
until [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$HTTP_PORT/readyz")" = 200 ]; do sleep 0.05; done
READY=$(date +%s.%N)
wait_idle $((TOTAL - 200))
END=$(date +%s.%N)
python3 - "$START" "$READY" "$END" "$(status)" <<'PY'
import json, sys
start, ready, end = map(float, sys.argv[1:4])
s = json.loads(sys.argv[4])
print(f"(c) restart after kill -9 at half the ledger: ready (store open, partitions assigned and sought) "
      f"in {ready-start:.1f} s; the rest ({s['applied']} records) applied and idle {end-start:.1f} s after the restart; "
      f"{s['alerts']} alerts since the restart; totals {sum(s['counts'].values())} records")
PY
fi

# (d) the changelog: the full service again with it on (its cost against
# (b)), stopped once idle and published; then `paywatch restore` of that
# state into a new directory, timed (against (b): replaying the inputs).
if [ "$PART" = all ] || [ "$PART" = changelog ]; then
python3 "$TOOL" create-topics "$BROKER" paywatch.bench-changelog.changelog:1
write_config "$WORK/d.toml" "$WORK/d-state" bench-changelog
# A snapshot every CHANGELOG_SNAPSHOT_MB of commits (256 here against the
# default 4096, so that this ledger's replay makes some): the restore reads
# the newest and the commits after it.
printf '[kafka.changelog]\nenabled = true\nsnapshot_every_mb = %s\n' "${CHANGELOG_SNAPSHOT_MB:-256}" >>"$WORK/d.toml"
START=$(date +%s.%N)
/usr/bin/time -f "%M" -o "$WORK/d.rss" "$BIN" run --config "$WORK/d.toml" 2>"$WORK/d.log" &
SVC=$!
PIDS+=($SVC)
wait_port "$HTTP_PORT"
wait_idle $((TOTAL - 200))
END=$(date +%s.%N)
until status | python3 -c 'import json,sys; s=json.load(sys.stdin); sys.exit(0 if s["changelog"]["behind"] == 0 else 1)'; do sleep 0.1; done
PUBLISHED=$(date +%s.%N)
D_STATUS=$(status)
METRICS=$(curl -s "http://127.0.0.1:$HTTP_PORT/metrics" | grep '^paywatch_changelog_bytes_total' | tr '\n' ' ')
pkill -TERM -P "$SVC" || true; wait "$SVC" || true
write_config "$WORK/r.toml" "$WORK/r-state" bench-changelog
R_START=$(date +%s.%N)
R=$(/usr/bin/time -f "%M" -o "$WORK/r.rss" "$BIN" restore --config "$WORK/r.toml" 2>"$WORK/r.log")
R_END=$(date +%s.%N)
python3 - "$START" "$END" "$PUBLISHED" "$D_STATUS" "$R_START" "$R_END" "$R" "$(cat "$WORK/d.rss")" "$(cat "$WORK/r.rss")" "$METRICS" <<'PY'
import json, sys
start, end, published = map(float, sys.argv[1:4])
s = json.loads(sys.argv[4])
r_start, r_end = map(float, sys.argv[5:7])
r = json.loads(sys.argv[7])
applied = sum(s["counts"].values())
print(f"(d) service with the changelog: {applied} records in {end-start:.1f} s = {applied/(end-start):,.0f} records/s "
      f"(changelog acknowledged {published-end:.1f} s after idle); {s['changelog']['commits']} commits, "
      f"{s['changelog']['snapshots']} snapshot(s); {sys.argv[10].strip()}; peak RSS {int(sys.argv[8])//1024} MiB")
print(f"(d) paywatch restore: {r['commits']} commits and a snapshot of {r['snapshot_entries']} entries, "
      f"{r['bytes']/2**20:.0f} MiB of changes, in {r_end-r_start:.1f} s (process start to state renamed into place; "
      f"{r['bytes']/2**20/(r_end-r_start):.0f} MiB/s); peak RSS {int(sys.argv[9])//1024} MiB")
PY
echo "restored state directory: $(du -sm "$WORK/r-state" | cut -f1) MiB; the service's own: $(du -sm "$WORK/d-state" | cut -f1) MiB, of which the write-ahead log kept for the publisher $(du -cm "$WORK"/d-state/*.log "$WORK"/d-state/archive 2>/dev/null | tail -1 | cut -f1) MiB"
fi

# (e) standby instances after a `kill -9` of the active one: a standby
# with a warm copy (`follow`, the default) against one without, which
# restores the whole state once elected. Both killed once idle, so both
# take over the whole ledger's state.
if [ "$PART" = all ] || [ "$PART" = standby ]; then
python3 "$TOOL" create-topics "$BROKER" paywatch.bench-standby.changelog:1
HA='[kafka.consumer]\n"session.timeout.ms" = "6000"\n[kafka.changelog]\nenabled = true\nsnapshot_every_mb = 256\n[kafka.standby]\nenabled = true\nrejoin_after = "8s"\n'
write_config "$WORK/ea.toml" "$WORK/ea-state" bench-standby; printf "$HA" >>"$WORK/ea.toml"; EA_PORT=$HTTP_PORT
write_config "$WORK/eb.toml" "$WORK/eb-state" bench-standby; printf "$HA" >>"$WORK/eb.toml"; EB_PORT=$HTTP_PORT
write_config "$WORK/ec.toml" "$WORK/ec-state" bench-standby; printf "${HA}follow = false\n" >>"$WORK/ec.toml"; EC_PORT=$HTTP_PORT
st() { curl -s -H "Authorization: Bearer $OPERATOR_TOKEN" "http://127.0.0.1:$1/status"; }
until_status() { # PORT PYTHON-EXPRESSION-ON-s
  until st "$1" | python3 -c "import json,sys; s=json.load(sys.stdin); sys.exit(0 if ($2) else 1)" 2>/dev/null; do sleep 0.05; done
}
"$BIN" run --config "$WORK/ea.toml" 2>"$WORK/ea.log" & EA=$!; PIDS+=($EA)
wait_port "$EA_PORT"; until_status "$EA_PORT" 's["role"] == "active" and s["lanes"] > 0'
"$BIN" run --config "$WORK/eb.toml" 2>"$WORK/eb.log" & EB=$!; PIDS+=($EB)
wait_port "$EB_PORT"
HTTP_PORT=$EA_PORT wait_idle $((TOTAL - 200))
until_status "$EA_PORT" 's["changelog"]["behind"] == 0'
until_status "$EB_PORT" 's["following"] and s["following"]["consistent"] and s["following"]["offset"] >= s["following"]["end"]'
B_RSS=$(awk '/VmRSS/ {print int($2/1024)}' "/proc/$EB/status")
B_DISK=$(du -sm "$WORK/eb-state" | cut -f1)
kill -9 "$EA"; wait "$EA" 2>/dev/null || true
K1=$(date +%s.%N)
until_status "$EB_PORT" 's["role"] == "active" and s["lanes"] > 0'
T1=$(date +%s.%N)
HTTP_PORT=$EB_PORT wait_idle $((TOTAL - 200))
"$BIN" run --config "$WORK/ec.toml" 2>"$WORK/ec.log" & EC=$!; PIDS+=($EC)
wait_port "$EC_PORT"
until_status "$EB_PORT" 's["changelog"]["behind"] == 0 and s["changelog"]["snapshots"] >= 1'
kill -9 "$EB"; wait "$EB" 2>/dev/null || true
K2=$(date +%s.%N)
until_status "$EC_PORT" 's["role"] == "active" and s["lanes"] > 0'
T2=$(date +%s.%N)
python3 - "$K1" "$T1" "$K2" "$T2" "$WORK/eb.log" "$WORK/ec.log" "$B_RSS" "$B_DISK" <<'PY'
import re, sys
k1, t1, k2, t2 = map(float, sys.argv[1:5])
def field(path, name):
    text = re.sub(r"\x1b\[[0-9;]*m", "", open(path).read())
    m = re.findall(name + r"=(\d+)", text)
    return int(m[-1]) / 1000 if m else float("nan")
print(f"(e) warm standby (follow): active {t1-k1:.1f} s after the active one's kill -9, of which {field(sys.argv[5], 'caught_up_ms'):.2f} s "
      f"reading its copy to the changelog's end (the rest: the election, sessions of 6 s and rejoins every 8 s); "
      f"standing by it held {sys.argv[7]} MiB RSS and a {sys.argv[8]} MiB copy")
print(f"(e) standby without a copy (follow = false): active {t2-k2:.1f} s after the kill -9, of which "
      f"{field(sys.argv[6], 'restore_ms'):.1f} s restoring the whole state from the changelog")
PY
fi

# (f) account tasks: the person side (2 lanes, 3 by-account partitions)
# alone, then with one and two instances of account tasks only beside it.
# Each time: the person side's records/s from its start to idle, and when
# the account tasks' alerts were all committed (the instances' sum equal
# to the first run's, steady for 5 s there), with how the tasks were split.
if [ "$PART" = all ] || [ "$PART" = accounts ]; then
ACC='[engine]\nlanes = 2\n[kafka.accounts]\npartitions = 3\n'
acc_sum() { # PORT... -> the account tasks' alerts and where they run
  for port in "$@"; do curl -s -H "Authorization: Bearer $OPERATOR_TOKEN" "http://127.0.0.1:$port/status"; echo; done | python3 -c '
import json, sys
ss = [json.loads(l) for l in sys.stdin if l.strip()]
print(sum(s["account_tasks"]["alerts"] for s in ss), "|".join(",".join(sorted(s["account_tasks"]["holding"])) for s in ss))'
}
REF=""
for N in 1 2 3; do
  write_config "$WORK/f$N.toml" "$WORK/f$N-state" "bench-accounts-$N"; printf "$ACC" >>"$WORK/f$N.toml"; PP=$HTTP_PORT
  PORTS=("$PP"); EXTRA=()
  START=$(date +%s.%N)
  /usr/bin/time -f "%M" -o "$WORK/f$N.rss" "$BIN" run --config "$WORK/f$N.toml" 2>"$WORK/f$N.log" & P=$!; PIDS+=($P)
  for i in $(seq 2 "$N"); do
    write_config "$WORK/f$N-$i.toml" "$WORK/f$N-$i-state" "bench-accounts-$N"; printf "${ACC}person_side = false\n" >>"$WORK/f$N-$i.toml"
    "$BIN" run --config "$WORK/f$N-$i.toml" 2>"$WORK/f$N-$i.log" & EXTRA+=($!); PIDS+=($!); PORTS+=("$HTTP_PORT")
  done
  for port in "${PORTS[@]}"; do wait_port "$port"; done
  HTTP_PORT=$PP wait_idle $((TOTAL - 200))
  IDLE=$(date +%s.%N)
  if [ -z "$REF" ]; then
    LAST=""; SINCE=$(date +%s.%N)
    while :; do
      NOW=$(acc_sum "${PORTS[@]}" | cut -d' ' -f1)
      if [ "$NOW" != "$LAST" ]; then LAST=$NOW; SINCE=$(date +%s.%N); fi
      python3 -c "import sys,time; sys.exit(0 if time.time() - $SINCE >= 5 else 1)" && break
      sleep 0.2
    done
    REF=$LAST; DONE=$SINCE
  else
    until [ "$(acc_sum "${PORTS[@]}" | cut -d' ' -f1)" = "$REF" ]; do sleep 0.1; done
    DONE=$(date +%s.%N)
  fi
  SPLIT=$(acc_sum "${PORTS[@]}" | cut -d' ' -f2-)
  APPLIED=$(HTTP_PORT=$PP status | python3 -c 'import json,sys; print(sum(json.load(sys.stdin)["counts"].values()))')
  for e in "${EXTRA[@]}"; do kill -TERM "$e" 2>/dev/null || true; wait "$e" 2>/dev/null || true; done
  pkill -TERM -P "$P" 2>/dev/null || kill -TERM "$P" 2>/dev/null || true; wait "$P" 2>/dev/null || true
  python3 - "$N" "$START" "$IDLE" "$DONE" "$APPLIED" "$REF" "$SPLIT" "$(cat "$WORK/f$N.rss")" <<'PY'
import sys
n = sys.argv[1]; start, idle, done = map(float, sys.argv[2:5]); applied = int(sys.argv[5])
print(f"(f) account tasks, {n} instance(s): person side {applied} records to idle in {idle-start:.1f} s = {applied/(idle-start):,.0f} records/s; "
      f"the accounts' {sys.argv[6]} alerts all committed {max(done, idle)-start:.1f} s after its start; tasks {sys.argv[7]}; "
      f"person side's peak RSS {int(sys.argv[8])//1024} MiB")
PY
done
fi

fi

# Latency at a steady 5,000 payments/s on a fresh broker and service: the
# three files merged in event-time order, produced as a live feed would be.
[ "$PART" = all ] || [ "$PART" = latency ] || exit 0
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
