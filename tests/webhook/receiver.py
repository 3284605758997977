#!/usr/bin/env python3
"""A webhook receiver for paywatch's tests, on 127.0.0.1.

  receiver.py PORT OUT SECRETS FAIL_FIRST

SECRETS is comma-separated; every request must carry a v1= signature for
each (checked here independently of paywatch, with Python's hmac). The
first FAIL_FIRST requests get 503; requests to /refuse get 410; requests
to /hang are never answered (the connection is held open, as a receiver
that hangs until paywatch's timeout); the rest 200. Every request is
appended to OUT as one JSON line (a /hang one when it arrives).
"""
import hashlib
import hmac
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT, OUT, SECRETS, FAIL_FIRST = int(sys.argv[1]), sys.argv[2], sys.argv[3].split(","), int(sys.argv[4])
lock = threading.Lock()
seen = {"n": 0}


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        ts = self.headers.get("X-Paywatch-Timestamp", "")
        sigs = set(self.headers.get("X-Paywatch-Signature", "").split(","))
        want = {"v1=" + hmac.new(s.encode(), ts.encode() + b"." + body, hashlib.sha256).hexdigest() for s in SECRETS}
        with lock:
            seen["n"] += 1
            n = seen["n"]
        if n <= FAIL_FIRST:
            status = 503
        elif self.path == "/refuse":
            status = 410
        else:
            status = 200
        try:
            parsed = json.loads(body)
        except Exception:
            parsed = {}
        alert_id = parsed.get("alert_id")
        case_id = parsed.get("case_id") or (parsed.get("case") or {}).get("case_id")
        rec = {
            "path": self.path,
            "status": status,
            "key": self.headers.get("Idempotency-Key"),
            "alert_id": alert_id,
            "content_type": self.headers.get("Content-Type"),
            "sig_ok": want <= sigs,
            "event": self.headers.get("X-Paywatch-Event"),
            "case_id": case_id,
            "body_event": parsed.get("event"),
        }
        if self.path == "/hang":
            rec["status"] = 0
        with lock, open(OUT, "a") as f:
            f.write(json.dumps(rec) + "\n")
        if self.path == "/hang":
            time.sleep(3600)
            return
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()


ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
