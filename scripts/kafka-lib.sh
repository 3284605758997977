# Shared by demo-stream.sh and bench-stream.sh: a tansu broker and
# `paywatch run` on loopback, both stopped when the script exits.
# Expects BIN (the paywatch binary) and WORK (a scratch folder).

TANSU="${PAYWATCH_TANSU:-/var/tmp/paywatch-tools/tansu/bin/tansu}"
TOOL="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/tests/kafka/kafka_tool.py"
PIDS=()

cleanup() {
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_port() {
  for _ in $(seq 1 300); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "nothing listens on 127.0.0.1:$1" >&2
  return 1
}

start_broker() {
  [ -x "$TANSU" ] || { echo "no broker at $TANSU: run scripts/deps.sh" >&2; exit 1; }
  BROKER_PORT=$(free_port)
  BROKER="127.0.0.1:$BROKER_PORT"
  "$TANSU" broker --listener-url "tcp://$BROKER" --advertised-listener-url "tcp://$BROKER" \
    --storage-engine memory://tansu/ >"$WORK/tansu.log" 2>&1 &
  PIDS+=($!)
  wait_port "$BROKER_PORT"
  python3 "$TOOL" create-topics "$BROKER" dibao.payments.v1:3 dibao.roster.v1:3 civil.deaths.v1:3 \
    dibao.decisions.v1:1 civil.vulnerable.v1:3 dibao.alerts.v1:1 dibao.deadletter.v1:1
}

# write_config FILE STATE_DIR GROUP -> sets HTTP_PORT
write_config() {
  HTTP_PORT=$(free_port)
  cat >"$1" <<TOML
[kafka]
brokers = "$BROKER"
group_id = "$3"
[state]
dir = "$2"
[http]
listen = "127.0.0.1:$HTTP_PORT"
[[api.tokens]]
name = "ops"
token_sha256 = "$(printf %s "$OPERATOR_TOKEN" | sha256sum | cut -d' ' -f1)"
role = "operator"
TOML
  # Extra [kafka.consumer] settings, e.g. KAFKA_CONSUMER='"group.instance.id" = "a"'.
  if [ -n "${KAFKA_CONSUMER:-}" ]; then printf '[kafka.consumer]\n%s\n' "$KAFKA_CONSUMER" >>"$1"; fi
  # The engine's lanes (#16), e.g. ENGINE_LANES=2.
  if [ -n "${ENGINE_LANES:-}" ]; then printf '[engine]\nlanes = %s\n' "$ENGINE_LANES" >>"$1"; fi
}

# /status needs a district or operator token; the scripts' configs carry
# this operator token.
OPERATOR_TOKEN="paywatch-scripts-operator-token"
status() { curl -s -H "Authorization: Bearer $OPERATOR_TOKEN" "http://127.0.0.1:$HTTP_PORT/status"; }

# wait_idle MIN_RECORDS: until /status says idle with at least that many
# records applied (committed totals).
wait_idle() {
  python3 - "$HTTP_PORT" "$1" "$OPERATOR_TOKEN" <<'PY'
import json, sys, time, urllib.request
port, want, token = sys.argv[1], int(sys.argv[2]), sys.argv[3]
while True:
    try:
        req = urllib.request.Request(f"http://127.0.0.1:{port}/status", headers={"Authorization": f"Bearer {token}"})
        s = json.load(urllib.request.urlopen(req, timeout=5))
        if s["idle"] and sum(s["counts"].values()) >= want:
            break
    except Exception:
        pass
    time.sleep(0.05)
PY
}
