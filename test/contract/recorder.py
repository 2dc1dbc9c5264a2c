#!/usr/bin/env python3
"""A recording pass-through in front of Prism, for sql/contract.sql.

    python3 test/contract/recorder.py --upstream http://127.0.0.1:PRISM_PORT \
        --spec test/contract/openapi-v2.v3.json --port 0 --port-file FILE \
        [--max-lifetime-s N]

Why: Prism puts its verdict on a request in the `sl-violations` response
header, and answers an invalid request with the spec's own 4xx, whose body is
empty for every Confluence operation.  confluence_fdw hands SQL the status
and the body, never the headers, so without this the test could show that a
request was refused but not why.  This process forwards every request to
Prism unchanged (method, path, query, headers, body) and Prism's answer back
unchanged (status, headers, body; only the framing is redone: hop-by-hop
headers dropped, Content-Length set), and records, per request: the method,
the path, the spec operation it matched (operationId and path template, taken
from the spec), the request's Content-Type, its body (parsed JSON when it is
JSON), the status Prism gave and Prism's violations (the parsed
sl-violations header).  The Authorization header is recorded as its scheme
only ("Basic"), never its value.

Control API (plain HTTP, no auth):
    GET  /_contract/health      "ok"
    GET  /_contract/requests    the records since the last reset, JSON Lines
    GET  /_contract/report      a plain-text summary of them, per spec operation
    POST /_contract/reset       forget the records; answers {"reset": true}

Python standard library only.
"""
import argparse
import http.client
import http.server
import json
import os
import re
import sys
import threading
import time
import urllib.parse

HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
              "te", "trailer", "transfer-encoding", "upgrade", "content-length"}
BODY_CAP = 64 * 1024
METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")
SPEC_PREFIX = "/wiki/api/v2"   # where the spec's server puts its paths


def load_operations(spec_path):
    """[(method, regex, template, operationId)], literal paths first."""
    with open(spec_path, "rb") as f:
        spec = json.load(f)
    ops = []
    for template, item in spec["paths"].items():
        full = template if template.startswith(SPEC_PREFIX + "/") else SPEC_PREFIX + template
        parts = re.split(r"(\{[^}/]+\})", full)
        rx = "".join("[^/]+" if p.startswith("{") else re.escape(p) for p in parts)
        for m, op in item.items():
            if m in METHODS:
                ops.append((m.upper(), re.compile("^" + rx + "$"), full,
                            op.get("operationId", ""), full.count("{")))
    # Prism, like OpenAPI, prefers a literal segment over a template one.
    ops.sort(key=lambda o: o[4])
    return [o[:4] for o in ops]


class State:
    def __init__(self, upstream, operations):
        u = urllib.parse.urlsplit(upstream)
        if u.scheme != "http" or not u.hostname or not u.port:
            raise SystemExit(f"recorder: --upstream must be http://HOST:PORT, not {upstream!r}")
        self.host, self.port = u.hostname, u.port
        self.operations = operations
        self.lock = threading.Lock()
        self.records = []

    def match(self, method, path):
        for m, rx, template, op_id in self.operations:
            if m == method and rx.match(path):
                return template, op_id
        return None, None


def parse_body(ctype, body):
    if not body:
        return None
    text = body[:BODY_CAP].decode("utf-8", errors="replace")
    if ctype and "json" in ctype.lower():
        try:
            return json.loads(text)
        except ValueError:
            pass
    return text


def report(records):
    """Plain text: per spec operation, how many requests, which statuses, and
    every distinct violation Prism reported."""
    ops = {}
    for r in records:
        key = (r["operation"] or "(no operation)", r["method"], r["template"] or r["path"])
        o = ops.setdefault(key, {"n": 0, "statuses": {}, "violations": []})
        o["n"] += 1
        o["statuses"][r["status"]] = o["statuses"].get(r["status"], 0) + 1
        for v in r["violations"]:
            m = v.get("message") if isinstance(v, dict) else str(v)
            if m not in o["violations"]:
                o["violations"].append(m)
    lines = [f"Contract test: {len(records)} request(s) to Prism, {len(ops)} operation(s)", ""]
    for (op_id, method, template), o in sorted(ops.items()):
        st = ", ".join(f"{s} x{c}" for s, c in sorted(o["statuses"].items()))
        lines.append(f"{op_id:24} {method:6} {template:40} {o['n']:3} request(s): {st}")
        lines.extend(f"{'':24} refused: {m}" for m in o["violations"])
    return "\n".join(lines) + "\n"


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "cfdw-contract-recorder"

    def log_message(self, fmt, *args):  # the summary line below is the log
        pass

    def read_body(self):
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n > 0 else b""

    def reply(self, status, body, ctype="text/plain; charset=utf-8", headers=()):
        self.send_response_only(status)
        for k, v in headers:
            self.send_header(k, v)
        if status >= 200 and status not in (204, 304):
            if ctype and not any(k.lower() == "content-type" for k, _ in headers):
                self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and status not in (204, 304) and self.command != "HEAD":
            self.wfile.write(body)
        self.wfile.flush()

    def control(self, body):
        st = self.server.state
        if self.path == "/_contract/health" and self.command == "GET":
            return self.reply(200, b"ok\n")
        if self.path == "/_contract/requests" and self.command == "GET":
            with st.lock:
                lines = "".join(json.dumps(r, sort_keys=True) + "\n" for r in st.records)
            return self.reply(200, lines.encode(), "application/x-ndjson")
        if self.path == "/_contract/report" and self.command == "GET":
            with st.lock:
                text = report(st.records)
            return self.reply(200, text.encode())
        if self.path == "/_contract/reset" and self.command == "POST":
            with st.lock:
                st.records.clear()
            return self.reply(200, b'{"reset": true}\n', "application/json")
        return self.reply(404, b"unknown control request\n")

    def forward(self):
        st = self.server.state
        body = self.read_body()
        if self.path.startswith("/_contract/"):
            return self.control(body)
        headers = [(k, v) for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP]
        if body or self.command in ("POST", "PUT", "PATCH"):
            headers.append(("Content-Length", str(len(body))))
        conn = http.client.HTTPConnection(st.host, st.port, timeout=60)
        try:
            conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            for k, v in headers:
                conn.putheader(k, v)
            conn.endheaders(body if body else None)
            resp = conn.getresponse()
            rbody = resp.read()
            rheaders = [(k, v) for k, v in resp.getheaders() if k.lower() not in HOP_BY_HOP]
            status = resp.status
        except (OSError, http.client.HTTPException) as e:
            print(f"recorder: upstream failed for {self.command} {self.path}: {e!r}", flush=True)
            return self.reply(502, f"recorder: Prism did not answer: {e!r}\n".encode())
        finally:
            conn.close()
        path = urllib.parse.urlsplit(self.path).path
        template, op_id = st.match(self.command, path)
        raw_violations = resp.getheader("sl-violations")
        try:
            violations = json.loads(raw_violations) if raw_violations else []
        except ValueError:
            violations = [{"unparsed": raw_violations}]
        auth = self.headers.get("Authorization")
        with st.lock:
            rec = {
                "n": len(st.records) + 1,
                "method": self.command,
                "path": self.path,
                "template": template,
                "operation": op_id,
                "auth_scheme": auth.split(" ", 1)[0] if auth else None,
                "content_type": self.headers.get("Content-Type"),
                "body": parse_body(self.headers.get("Content-Type"), body),
                "status": status,
                "violations": violations,
            }
            st.records.append(rec)
        # One line per request; no header values, no body (not secret, but long).
        print(f"recorder: {self.command} {path} -> {status} ({op_id or 'no operation'}); "
              f"{len(violations)} violation(s)" +
              "".join(f"\n    {v.get('code')}: {v.get('message')}" for v in violations
                      if isinstance(v, dict)), flush=True)
        if self.command == "GET" and status == 200:
            rbody, rheaders = fit_list_answer(self.path, rbody, rheaders)
        self.reply(status, rbody, None, rheaders)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = forward


# Query parameters of the list endpoints and the item field each filters by.
FILTERS = {"id": "id", "ids": "id", "title": "title", "space-id": "spaceId",
           "status": "status", "keys": "key"}


def fit_list_answer(target, rbody, rheaders):
    """Prism's answer to a list GET, made consistent with the request the way
    Confluence's would be, so that a scan can read it: each item takes the
    values the query filters by (Prism's example says "id": "string", which a
    client's own check of WHERE id = '123' rightly drops), a body read as
    storage says so, an id that is no number becomes one (as Confluence's
    are), and Prism's made-up next link ("string", not a link) is left out.  The request was validated before, unchanged; only the values
    of the example answer change, never its shape."""
    try:
        doc = json.loads(rbody)
    except ValueError:
        return rbody, rheaders
    if not isinstance(doc, dict) or not isinstance(doc.get("results"), list):
        return rbody, rheaders
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(target).query)
    for index, item in enumerate(doc["results"]):
        if not isinstance(item, dict):
            continue
        # Confluence's ids are numeric strings, and its item paths take
        # only those: a client that acts on a listed item (an upsert's PUT)
        # needs one
        if "id" in item and not str(item["id"]).isdigit():
            item["id"] = str(7000001 + index)
        for param, field in FILTERS.items():
            if param in query and field in item:
                item[field] = query[param][0]
        storage = item.get("body", {}).get("storage") if isinstance(item.get("body"), dict) else None
        if isinstance(storage, dict):
            storage["representation"] = "storage"
    links = doc.get("_links")
    if isinstance(links, dict) and not str(links.get("next", "/")).startswith("/"):
        del links["next"]
    rheaders = [(k, v) for k, v in rheaders
                if not (k.lower() == "link" and not v.lstrip().startswith("</"))]
    return json.dumps(doc).encode(), rheaders


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    p = argparse.ArgumentParser(description="recording pass-through in front of Prism")
    p.add_argument("--upstream", required=True, help="Prism's URL, http://127.0.0.1:PORT")
    p.add_argument("--spec", required=True, help="the spec, for operation names")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--port-file", help="write the port here once listening")
    p.add_argument("--max-lifetime-s", type=float, default=5400, help="exit by itself after this")
    args = p.parse_args()

    srv = Server((args.host, args.port), Handler)
    srv.state = State(args.upstream, load_operations(args.spec))
    port = srv.server_address[1]
    if args.port_file:
        tmp = args.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(f"{port}\n")
        os.replace(tmp, args.port_file)
    print(f"recorder: listening on http://{args.host}:{port}, forwarding to {args.upstream}",
          flush=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    deadline = time.monotonic() + args.max_lifetime_s
    try:
        while time.monotonic() < deadline:
            time.sleep(0.5)
        print("recorder: --max-lifetime-s reached, exiting", flush=True)
    except KeyboardInterrupt:
        pass
    srv.shutdown()


if __name__ == "__main__":
    import signal
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    main()
