#!/usr/bin/env python3
"""An independent Kafka client for paywatch's tests and benches
(confluent-kafka, which bundles its own librdkafka).

  create-topics  BROKERS NAME:PARTITIONS ...
  delete-topics  BROKERS NAME ...
  produce-ledger BROKERS DIR [--topics payments,roster,deaths,decisions,vulnerable]
                 sorts each file by event time, keys as the contract says,
                 lines that are not JSON objects go where they were read
  produce-raw    BROKERS TOPIC FILE   one message per line, as is (key = "bad")
  produce-elsewhere BROKERS TOPIC KEY_FIELD PARTITIONS FILE
                 one message per line keyed by its KEY_FIELD, on the partition
                 after the one Kafka's default partitioner (murmur2) gives it
  consume        BROKERS TOPIC OUT [--expect N] [--idle S] [--timeout S]
                 every message from the beginning as JSON lines
  join-group     BROKERS GROUP SECONDS TOPIC ...
                 a second member of the group, for rebalance tests
  steady         BROKERS DIR RATE OUT   the three files as a live feed, in
                 event-time order at RATE payments/s; measures the time from
                 producing a record to reading its alert (p50, p99)
"""
import base64
import datetime
import json
import os
import sys
import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

TOPICS = {
    "payments": ("dibao.payments.v1", "paid_at", "beneficiary_id"),
    "roster": ("dibao.roster.v1", "updated_at", "beneficiary_id"),
    "deaths": ("civil.deaths.v1", "reported_at", "person_id"),
    "decisions": ("dibao.decisions.v1", "decided_at", "case_id"),
    "vulnerable": ("civil.vulnerable.v1", "updated_at", "person_id"),
}


def create_topics(brokers, specs):
    admin = AdminClient({"bootstrap.servers": brokers})
    new = []
    for spec in specs:
        name, parts = spec.rsplit(":", 1)
        new.append(NewTopic(name, num_partitions=int(parts), replication_factor=1))
    for name, fut in admin.create_topics(new, operation_timeout=30).items():
        fut.result()


def delete_topics(brokers, names):
    admin = AdminClient({"bootstrap.servers": brokers})
    for name, fut in admin.delete_topics(names, operation_timeout=30).items():
        fut.result()


def event_time(line, field):
    try:
        obj = json.loads(line)
        return datetime.datetime.fromisoformat(obj[field]).timestamp(), obj
    except Exception:
        return None, None


def ledger_lines(path, field):
    """(time, key, bytes): sorted by event time; lines without a readable
    time (broken on purpose) keep their place after the line before them."""
    out = []
    last = float("-inf")
    with open(path, "rb") as f:
        for i, raw in enumerate(f):
            raw = raw.rstrip(b"\r\n")
            if not raw:
                continue
            t, obj = event_time(raw.decode("utf-8", "replace"), field)
            key = None
            if t is None:
                t = last
            else:
                last = t
            out.append((t, i, raw))
    out.sort(key=lambda x: (x[0], x[1]))
    return out


def make_producer(brokers):
    # murmur2_random: the Java clients' default partitioner, which a
    # partitioned paywatch expects (docs/contract.md reading 37).
    return Producer({"bootstrap.servers": brokers, "enable.idempotence": True, "acks": "all", "linger.ms": 5,
                     "partitioner": "murmur2_random"})


def murmur2(data):
    """Kafka's Utils.murmur2, as a signed 32-bit int."""
    m, mask = 0x5BD1E995, 0xFFFFFFFF
    h = (0x9747B28C ^ len(data)) & mask
    whole = len(data) // 4 * 4
    for i in range(0, whole, 4):
        k = int.from_bytes(data[i:i + 4], "little")
        k = (k * m) & mask
        k ^= k >> 24
        k = (k * m) & mask
        h = ((h * m) & mask) ^ k
    rest = data[whole:]
    if len(rest) >= 3:
        h ^= rest[2] << 16
    if len(rest) >= 2:
        h ^= rest[1] << 8
    if rest:
        h ^= rest[0]
        h = (h * m) & mask
    h ^= h >> 13
    h = (h * m) & mask
    h ^= h >> 15
    return h - (1 << 32) if h >= 1 << 31 else h


assert murmur2(b"21") == -973932308 and murmur2(b"foobar") == -790332482


def produce_elsewhere(brokers, topic, key_field, partitions, path):
    p = make_producer(brokers)
    n = 0
    with open(path, "rb") as f:
        for raw in f:
            raw = raw.rstrip(b"\n")
            key = str(json.loads(raw)[key_field]).encode()
            home = (murmur2(key) & 0x7FFFFFFF) % partitions
            p.produce(topic, value=raw, key=key, partition=(home + 1) % partitions)
            n += 1
    if p.flush(30):
        sys.exit("produce-elsewhere: not all delivered")
    print(n)


def produce_ledger(brokers, folder, kinds):
    p = make_producer(brokers)
    failures = []

    def done(err, _msg):
        if err is not None:
            failures.append(err)

    total = 0
    for kind in kinds:
        topic, field, key_field = TOPICS[kind]
        path = os.path.join(folder, kind + ".jsonl")
        for _, _, raw in ledger_lines(path, field):
            key = None
            try:
                key = str(json.loads(raw).get(key_field, "")).encode()
            except Exception:
                key = b"unreadable"
            while True:
                try:
                    p.produce(topic, value=raw, key=key, on_delivery=done)
                    break
                except BufferError:
                    p.poll(0.1)
            p.poll(0)
            total += 1
    left = p.flush(60)
    if failures or left:
        sys.exit(f"produce failed: {len(failures)} errors, {left} undelivered: {failures[:3]}")
    print(total)


def produce_raw(brokers, topic, path):
    p = make_producer(brokers)
    n = 0
    with open(path, "rb") as f:
        for raw in f:
            p.produce(topic, value=raw.rstrip(b"\n"), key=b"bad")
            n += 1
    if p.flush(30):
        sys.exit("produce-raw: not all delivered")
    print(n)


def message_json(m):
    value = m.value() or b""
    try:
        text = value.decode("utf-8")
        v = {"value": text}
    except UnicodeDecodeError:
        v = {"value_b64": base64.b64encode(value).decode()}
    v.update({
        "key": (m.key() or b"").decode("utf-8", "replace"),
        "partition": m.partition(),
        "offset": m.offset(),
        "timestamp_ms": m.timestamp()[1],
        "headers": {k: (val or b"").decode("utf-8", "replace") for k, val in (m.headers() or [])},
    })
    return v


def consume(brokers, topic, out, expect=None, idle=5.0, timeout=120.0):
    c = Consumer({
        "bootstrap.servers": brokers,
        "group.id": "paywatch-test-reader-%d" % os.getpid(),
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
    })
    c.subscribe([topic])
    keys = set()
    start = last = time.time()
    n = 0
    with open(out, "w") as f:
        while True:
            m = c.poll(0.2)
            now = time.time()
            if m is None or m.error():
                if expect is None and n > 0 and now - last > idle:
                    break
                if expect is None and n == 0 and now - start > idle * 3:
                    break
                if now - start > timeout:
                    break
                continue
            last = now
            n += 1
            keys.add(m.key())
            f.write(json.dumps(message_json(m), ensure_ascii=False) + "\n")
            if expect is not None and len(keys) >= expect:
                # Read on briefly: duplicates after the expected set count too.
                end = time.time() + idle
                while time.time() < end:
                    m = c.poll(0.2)
                    if m is not None and not m.error():
                        n += 1
                        f.write(json.dumps(message_json(m), ensure_ascii=False) + "\n")
                break
    c.close()
    print(n)


def join_group(brokers, group, seconds, topics):
    c = Consumer({
        "bootstrap.servers": brokers,
        "group.id": group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
    })
    assigned = []
    c.subscribe(topics, on_assign=lambda _c, parts: assigned.extend(parts))
    end = time.time() + seconds
    read = 0
    while time.time() < end:
        m = c.poll(0.2)
        if m is not None and not m.error():
            read += 1
    c.close()
    print(json.dumps({"assigned": len(assigned), "read": read}))


def steady(brokers, folder, rate, out, alerts_topic="dibao.alerts.v1", settle=10.0):
    """A live feed: the three files merged in event-time order and produced
    at `rate` payments per second (roster and death records interleaved as
    they fall), while reading the alerts topic. The latency of an alert is
    the time from producing the newest record its evidence names to reading
    the alert."""
    merged = []
    for kind in ("roster", "deaths", "payments"):
        topic, field, key_field = TOPICS[kind]
        for t, i, raw in ledger_lines(os.path.join(folder, kind + ".jsonl"), field):
            merged.append((t, kind, i, topic, key_field, raw))
    merged.sort(key=lambda x: (x[0], x[1] != "roster", x[1] != "deaths", x[2]))
    p = make_producer(brokers)
    c = Consumer({
        "bootstrap.servers": brokers,
        "group.id": "paywatch-latency-%d" % os.getpid(),
        "enable.auto.commit": False,
        "auto.offset.reset": "latest",
        "fetch.wait.max.ms": 5,
    })
    c.subscribe([alerts_topic])
    t0 = time.time()
    while not c.assignment() and time.time() - t0 < 30:
        c.poll(0.1)
    sent = {}
    lat = []

    def read_alerts(budget):
        end = time.time() + budget
        while True:
            left = end - time.time()
            m = c.poll(max(0.0, min(0.001, left)))
            if m is not None and not m.error():
                now = time.time()
                try:
                    ev = json.loads(m.value())["evidence"]["event_ids"]
                except Exception:
                    ev = []
                ts = [sent[e] for e in ev if e in sent]
                if ts:
                    lat.append(now - max(ts))
                continue
            if left <= 0:
                return

    payments = 0
    start = time.time()
    for _, kind, _, topic, key_field, raw in merged:
        if kind == "payments":
            due = start + payments / rate
            now = time.time()
            if due > now:
                read_alerts(due - now)
            payments += 1
        try:
            obj = json.loads(raw)
            key = str(obj.get(key_field, "")).encode()
            eid = obj.get("event_id") if kind == "payments" else None
        except Exception:
            key, eid = b"unreadable", None
        while True:
            try:
                p.produce(topic, value=raw, key=key)
                break
            except BufferError:
                p.poll(0.01)
        if eid is not None:
            sent[eid] = time.time()
        p.poll(0)
    p.flush(60)
    produced_for = time.time() - start
    read_alerts(settle)
    c.close()
    lat.sort()

    def pct(q):
        return round(lat[min(len(lat) - 1, int(q * len(lat)))] * 1000, 1) if lat else None

    res = {"payments": payments, "seconds": round(produced_for, 1), "rate": round(payments / produced_for),
           "alerts_timed": len(lat), "p50_ms": pct(0.5), "p99_ms": pct(0.99), "max_ms": pct(1.0)}
    with open(out, "w") as f:
        json.dump(res, f)
    print(json.dumps(res))


def main(argv):
    if len(argv) < 2:
        sys.exit(__doc__)
    cmd, args = argv[1], argv[2:]
    opts = {}
    pos = []
    i = 0
    while i < len(args):
        if args[i].startswith("--"):
            opts[args[i][2:]] = args[i + 1]
            i += 2
        else:
            pos.append(args[i])
            i += 1
    if cmd == "create-topics":
        create_topics(pos[0], pos[1:])
    elif cmd == "delete-topics":
        delete_topics(pos[0], pos[1:])
    elif cmd == "produce-ledger":
        produce_ledger(pos[0], pos[1], opts.get("topics", "roster,deaths,payments,decisions,vulnerable").split(","))
    elif cmd == "produce-raw":
        produce_raw(pos[0], pos[1], pos[2])
    elif cmd == "produce-elsewhere":
        produce_elsewhere(pos[0], pos[1], pos[2], int(pos[3]), pos[4])
    elif cmd == "consume":
        expect = int(opts["expect"]) if "expect" in opts else None
        consume(pos[0], pos[1], pos[2], expect, float(opts.get("idle", 5)), float(opts.get("timeout", 120)))
    elif cmd == "join-group":
        join_group(pos[0], pos[1], float(pos[2]), pos[3:])
    elif cmd == "steady":
        steady(pos[0], pos[1], float(pos[2]), pos[3])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
