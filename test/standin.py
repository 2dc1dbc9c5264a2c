#!/usr/bin/env python3
"""Confluence Cloud REST API v2 stand-in for the confluence_fdw regression tests.

It answers the endpoints the FDW uses the way Confluence Cloud does (string ids,
200 for pages and blog posts, 201 + Location for comments, 400 for a duplicate
title, 409 for a stale version, 401 for bad credentials, the {"errors": [...]}
body), records every request, counts TCP connections, and fails on demand.

Confluence endpoints (under /wiki/api/v2; ids are strings of digits, and
every object gets its id from one counter, so ids grow with creation):
    POST   /pages /blogposts                  create (200); /footer-comments
           /inline-comments                   create (201 + Location)
    GET    /pages /blogposts                  list: id, space-id (comma list or
                                              repeated), title (exact), status
                                              (default current,archived for pages,
                                              current for blog posts), body-format
    GET    /spaces                            list: ids, keys, type, status; the
                                              space 98306 "SP" is always there
    GET    /footer-comments /inline-comments  list: body-format, status (default
           /pages/{id}/footer-comments        current); those of one page or blog
           /pages/{id}/inline-comments        post are 404 when it does not exist
           /blogposts/{id}/footer-comments
           /blogposts/{id}/inline-comments
    GET    /pages/{id}/labels                 the labels of one page or blog post
           /blogposts/{id}/labels             (seeded only): prefix, sort, cursor,
                                              limit; 404 when it does not exist
    GET    /pages/{id} /blogposts/{id} /footer-comments/{id} /inline-comments/{id}
           /spaces/{id}                       one object (any status; ?status= to
                                              filter), 404 when missing
    PUT    /pages/{id} /blogposts/{id}        version.number must be current + 1
                                              (else 409); a trashed one is restored
                                              by status "current" (only the status
                                              changes)
    PUT    /footer-comments/{id} /inline-comments/{id}
    DELETE /pages/{id} /blogposts/{id}        204: a current one goes to the trash
                                              (its title is free again); a trashed
                                              one is 404, or removed with
                                              ?purge=true; a draft is 404, or
                                              removed with ?draft=true
    DELETE /footer-comments/{id} /inline-comments/{id}   204, removed for good
Every list takes limit (1..250, default 25; else 400), cursor (opaque; a bad
one is 400) and sort (id or -id; other values give id order), answers in id
order {"results": [...], "_links": {"next": ..., "base": ...}}, and, only when
more items follow, has _links.next (the request's path and query with
cursor=<next> in place of any cursor) and the header
    Link: <that next>; rel="next", <base>; rel="base"
A cursor continues after the last id returned, whatever was created or
deleted in between.  Bodies, as in Confluence: without body-format an answer
has "body": {}; with it, {"<format>": {"representation": "<format>", "value":
...}} (lists take storage and atlas_doc_format, one object also view and the
other single-object formats).  The value is the one stored, not converted.
Create and update answers carry the body as sent.  /wiki/echo/... describes
any request back (see State.echo).

Atlassian's API gateway and the user endpoints:
    GET    /_edge/tenant_info                 {"cloudId": CLOUD_ID}, no credentials
                                              needed (the site's own endpoint)
    *      /ex/confluence/{cloudId}/wiki/...  every /wiki endpoint, as through
                                              api.atlassian.com: answers are the
                                              same (next links and _links.base are
                                              the site's, without the prefix, as
                                              Confluence writes them); another
                                              cloudId is 404
    GET    /wiki/rest/api/user/current        who the credentials belong to
                                              (accountId, displayName, email)
A token given scopes (POST /_standin/scopes) is a scoped API token: it gets
401 on the site's own paths, and through the gateway each operation needs the
scope Atlassian's v2 spec (test/contract/openapi-v2.v3.json, "security")
names; without it: 401, X-Failure-Category: FAILURE_CLIENT_SCOPE_CHECK,
{"code": 401, "message": "Unauthorized; scope does not match"}.

    python3 test/standin.py --port 0 --port-file DIR/standin.port \
        [--extra-port-file DIR/standin2.port] [--credentials creds.json] \
        [--tls-cert C --tls-key K [--tls-port-file DIR/standin_tls.port]]
        [--seed N] [--max-lifetime-s N] [--verbose]

OAuth 2.0 client credentials (Atlassian service accounts), on every listener:
    POST   /oauth/token                       the token endpoint (Atlassian Cloud's
    POST   /rest/oauth2/latest/token          path, and Data Center's); either takes
                                              a JSON or a form-encoded body:
                                              grant_type=client_credentials,
                                              client_id, client_secret[, scope] ->
                                              200 {"access_token", "token_type":
                                              "Bearer", "expires_in"[, "scope"]};
                                              401 invalid_client for a client or
                                              secret not accepted now; 400
                                              unsupported_grant_type, invalid_request
The accepted client is CFDW_CLIENT_ID with the secrets CFDW_CLIENT_SECRET
(secret 1, accepted at start) and CFDW_CLIENT_SECRET2 (secret 2).  Issued
tokens ("cfdwat-" and 32 hex digits) are accepted as "Authorization: Bearer"
by the Confluence endpoints until they expire or are revoked, then 401.
The log shows an issued token as auth "oauth:N" (N counts tokens issued),
an expired or revoked one as "expired:oauth:N", and a token request's
client_secret as "secret:N" or "invalid": never a secret or a token.
    GET  /_standin/oauth                      {"lifetime_s", "accept", "issued", "valid"}
    POST /_standin/oauth                      {"lifetime_s": n} tokens issued from now
                                              on live n seconds (default 3600);
                                              {"accept": [2]} which secrets are
                                              accepted; {"revoke": true} every token
                                              issued so far is refused from now on
reset leaves the OAuth state alone.

With --tls-cert and --tls-key alone the main listener speaks TLS.  With
--tls-port-file too, the main listener stays plain HTTP and a third
listener ("tls", same state) speaks TLS on a free port written there.

Control API (plain HTTP, no auth) on every listener:
    GET  /_standin/health                     "ok"
    GET  /_standin/requests[?since=N][&server=second|tls|all][&stats=1]   JSON Lines
                                              (stats=1: a last line {"stats": {...}})
    GET  /_standin/stats                      one JSON object ("pages" and
                                              "blogposts" count trashed ones too)
    GET  /_standin/faults                     the queued faults, as JSON
    POST /_standin/reset                      forget requests, objects, spaces
                                              (but SP), faults, the quota
    POST /_standin/reset?keep=objects         forget requests, faults and the quota
    POST /_standin/fault                      queue one fault object or a list; the
                                              reply has the stats from just before
                                              ("rate": p applies it to each matching
                                              request with probability p; with
                                              "times": -1 it never runs out; "skip": n
                                              lets the first n matching requests
                                              through before it applies; "match"
                                              is a prefix of the path, the query
                                              is not matched; "method" is exact;
                                              kind "merge" answers as usual with
                                              the object "fields" put into the
                                              answer, e.g. a "\\u0000" in a title)
    POST /_standin/credentials                replace the accepted credentials
    POST /_standin/quota                      a points quota (see parse_quota), or
                                              null / {"limit": 0} for none
    GET  /_standin/quota                      the quota and its counters, as JSON
    POST /_standin/scopes                     {"<label>": ["read:page:confluence", ...]}:
                                              the tokens with these labels (as the
                                              request log shows them, e.g.
                                              "basic:<user>:2") become scoped tokens
                                              with these scopes; {} for none.  A
                                              reset (without keep) forgets them
    POST /_standin/seed                       create objects straight in the store:
        {"collection": "pages"|"blogposts", "count": N, "spaceId": "98306",
         "title_prefix": "Seed ", "body": "<p>x</p>" (storage; null: none),
         "status": "current"|"draft"|"trashed"}      titles prefix + 1..N
        {"collection": "footer-comments"|"inline-comments", "count": N,
         "pageId"|"blogPostId": "...", "body": ...}
            -> {"created": N, "first_id": "...", "last_id": "..."} (ids in a row)
        {"collection": "spaces", "spaces": [{"id": "...", "key": "...", "name",
         "type", "status", "homepageId", ...}, ...]}  (same id: replaced)
            -> {"created": n, "ids": [...]}
        {"collection": "labels", "pageId"|"blogPostId": "...", "names": ["a", ...],
         "prefix": "global"}  labels added to that page or blog post
            -> {"created": n, "ids": [...]}

Python standard library only.  Secrets never reach stdout, stderr or the log.
"""

import argparse
import base64
import binascii
import bisect
import email.utils
import http.server
import json
import os
import random
import re
import secrets
import signal
import socket
import socketserver
import ssl
import sys
import threading
import time
import urllib.parse
import uuid
from datetime import datetime, timezone
from http import HTTPStatus

API = "/wiki/api/v2"
ECHO = "/wiki/echo"
FIRST_ID = 1000001
RECORD_BODY_CAP = 1024 * 1024          # body_text in the log keeps at most this
CREATE_BODY_LIMIT = 5 * 1024 * 1024    # Confluence: 413 for creates over 5 MB
AUTHOR = "557058:standin"
DEFAULT_PARENT = "65537"
MISSING_ID = "404404"                  # container id that always answers 404
REPRESENTATIONS = ("storage", "atlas_doc_format", "wiki")
FOOTER_CONTAINERS = ("pageId", "blogPostId", "parentCommentId", "attachmentId", "customContentId")
INLINE_CONTAINERS = ("pageId", "blogPostId", "parentCommentId")
DEFAULT_SPACE = {"id": "98306", "key": "SP", "name": "Stand-in space", "type": "global",
                 "status": "current", "homepageId": DEFAULT_PARENT}
LIST_LIMIT_DEFAULT, LIST_LIMIT_MAX = 25, 250
LIST_BODY_FORMATS = ("storage", "atlas_doc_format")
SINGLE_BODY_FORMATS = ("storage", "atlas_doc_format", "view", "export_view", "anonymous_export_view",
                       "styled_view", "editor")
# Default statuses of the list endpoints (Confluence's, per the spec).
LIST_STATUS_DEFAULT = {"pages": {"current", "archived"}, "blogposts": {"current"},
                       "footer-comments": {"current"}, "inline-comments": {"current"}}
SPACE_TYPES = ("global", "collaboration", "knowledge_base", "personal", "system", "onboarding",
               "xflow_sample_space")
SEED_MAX = 1000000
JSON = "application/json"
# The stand-in site's cloudId, and the paths of Atlassian's API gateway.
CLOUD_ID = "5d1a0c3e-8b7f-4e2a-9c6d-0f1e2d3c4b5a"
GATEWAY_RE = re.compile(r"^/ex/confluence/([^/]+)(/.*)?$")
TENANT_INFO = "/_edge/tenant_info"
USER_CURRENT = "/wiki/rest/api/user/current"
SPEC_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "contract", "openapi-v2.v3.json")

# Per collection: the body keys Confluence accepts on create and on update.
CONTENT = {
    "pages": {"noun": "page", "article": "A page",
              "create": {"spaceId", "status", "title", "parentId", "body", "subtype"},
              "update": {"id", "status", "title", "body", "version", "spaceId", "parentId", "ownerId"}},
    "blogposts": {"noun": "blog post", "article": "A blog post",
                  "create": {"spaceId", "status", "title", "body", "createdAt"},
                  "update": {"id", "status", "title", "body", "version", "spaceId"}},
}
COMMENTS = ("footer-comments", "inline-comments")

FAULT_KINDS = {"status", "delay", "drop_before_body", "drop_after_body", "drop_after_process",
               "malformed_json", "empty_body", "non_json", "oversize", "redirect", "slow_body", "merge"}
FAULT_KEYS = {"kind", "match", "method", "times", "server", "status", "headers", "body",
              "content_type", "delay_ms", "bytes", "location", "interval_ms", "process", "rate",
              "skip", "fields"}
LISTENERS = ("main", "second", "tls")


def dumps(obj):
    return json.dumps(obj, separators=(",", ":"))


def now_iso():
    t = datetime.now(timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (t.microsecond // 1000)


def errors_body(status, code, title, detail=None):
    return dumps({"errors": [{"status": status, "code": code, "title": title,
                              "detail": detail}]}).encode()


# Python 3.13 renamed these statuses after RFC 9110 (413 CONTENT_TOO_LARGE,
# ...); the stand-in answers with the names of older Pythons on every one,
# so that a test's expected output does not depend on the Python that runs
# it (Debian 12 has 3.11, forky 3.13).
STATUS_NAMES = {
    413: ("REQUEST_ENTITY_TOO_LARGE", "Request Entity Too Large"),
    416: ("REQUESTED_RANGE_NOT_SATISFIABLE", "Requested Range Not Satisfiable"),
    422: ("UNPROCESSABLE_ENTITY", "Unprocessable Entity"),
}


def status_name(status):
    """(code, phrase) of an HTTP status, or None for one Python does not know."""
    if status in STATUS_NAMES:
        return STATUS_NAMES[status]
    try:
        st = HTTPStatus(status)
    except ValueError:
        return None
    return st.name, st.phrase


def generic_error(status):
    """Errors body for a status given by a fault, named like Confluence's codes."""
    name = status_name(status)
    if name is None:
        return errors_body(status, "ERROR", "Error")
    return errors_body(status, *name)


def reject_constant(name):
    # Python's json accepts NaN/Infinity; Confluence (and the JSONL log) must not.
    raise ValueError("invalid JSON constant " + name)


def media_type(ctype):
    return ctype.split(";", 1)[0].strip().lower()


class ApiError(Exception):
    def __init__(self, status, code, title, detail=None):
        super().__init__(title)
        self.status, self.code, self.title, self.detail = status, code, title, detail


def bad(title):
    return ApiError(400, "INVALID_REQUEST_PARAMETER", title)


def not_found():
    return ApiError(404, "NOT_FOUND", "Not Found")


# ----------------------------------------------------------------------------
# Credentials

class Credentials:
    """Accepted tokens.  Labels name a token by its position, never by value."""

    def __init__(self, basic=None, bearer=None):
        self.basic = basic or {}     # user -> [token or None, ...]
        self.bearer = bearer or []   # [token or None, ...]

    @classmethod
    def from_json(cls, obj):
        if not isinstance(obj, dict) or set(obj) - {"basic", "bearer"}:
            raise ValueError('credentials must be {"basic": {user: [tokens]}, "bearer": [tokens]}')

        def tokens(v, what):
            v = [v] if isinstance(v, str) else v
            if not isinstance(v, list) or not all(isinstance(t, str) and t for t in v):
                raise ValueError(what + " must be a token or a list of non-empty tokens")
            return list(v)

        basic = obj.get("basic") or {}
        if not isinstance(basic, dict):
            raise ValueError('"basic" must map user names to token lists')
        return cls({u: tokens(t, "basic tokens of a user") for u, t in basic.items()},
                   tokens(obj.get("bearer") or [], '"bearer"'))

    @classmethod
    def from_env(cls):
        # Placeholders keep the numbering stable: basic:<user>:2 is always
        # CFDW_TOKEN2, even when CFDW_TOKEN is unset.
        user = os.environ.get("CFDW_USER")
        toks = [os.environ.get("CFDW_TOKEN") or None, os.environ.get("CFDW_TOKEN2") or None]
        basic = {user: toks} if user and any(toks) else {}
        bearer = [os.environ["CFDW_BEARER"]] if os.environ.get("CFDW_BEARER") else []
        return cls(basic, bearer)

    def empty(self):
        return not any(t for ts in self.basic.values() for t in ts) and not any(self.bearer)

    def label(self, header):
        if header is None:
            return "none"
        scheme, _, cred = header.strip().partition(" ")
        scheme, cred = scheme.lower(), cred.strip()
        if scheme == "basic":
            try:
                user, sep, token = base64.b64decode(cred, validate=True).decode("utf-8").partition(":")
            except (binascii.Error, UnicodeDecodeError):
                return "invalid"
            toks = self.basic.get(user) if sep else None
            if toks and token in toks:
                return "basic:%s:%d" % (user, toks.index(token) + 1)
        elif scheme == "bearer" and cred and cred in self.bearer:
            return "bearer:%d" % (self.bearer.index(cred) + 1)
        return "invalid"


class OAuth:
    """The token endpoint of the client-credentials grant, and the tokens it
    issued.  Labels name secrets and tokens by number, never by value."""

    PATHS = ("/oauth/token", "/rest/oauth2/latest/token")

    def __init__(self, client_id=None, secrets_=None):
        self.client_id = client_id
        self.secrets = secrets_ or []   # [secret or None, ...]: secret 1, 2
        self.accept = [1]
        self.lifetime_s = 3600
        self.issued = {}                # token -> {"n", "expires", "revoked"}
        self.count = 0

    @classmethod
    def from_env(cls):
        return cls(os.environ.get("CFDW_CLIENT_ID") or None,
                   [os.environ.get("CFDW_CLIENT_SECRET") or None,
                    os.environ.get("CFDW_CLIENT_SECRET2") or None])

    def secret_label(self, client_id, secret):
        if client_id != self.client_id or not isinstance(secret, str) or secret not in self.secrets:
            return "invalid"
        return "secret:%d" % (self.secrets.index(secret) + 1)

    @staticmethod
    def params(ctype, raw, parsed):
        """The grant's parameters from a JSON or form body, or None."""
        if media_type(ctype) == "application/x-www-form-urlencoded":
            qs = urllib.parse.parse_qs(raw.decode("utf-8", "replace"), keep_blank_values=True)
            return {k: v[0] for k, v in qs.items()}
        return parsed if isinstance(parsed, dict) else None

    def redacted(self, ctype, raw, parsed):
        """(body, parsed) for the request log: the secret as its label."""
        p = self.params(ctype, raw, parsed)
        if p is None:
            return b"", NOT_JSON
        p = dict(p)
        if "client_secret" in p:
            p["client_secret"] = self.secret_label(p.get("client_id"), p["client_secret"])
        if media_type(ctype) == "application/x-www-form-urlencoded":
            return urllib.parse.urlencode(p).encode(), NOT_JSON
        return dumps(p).encode(), p

    def grant(self, method, p, lock):
        """(status, headers, body) of a token request."""
        def error(status, code, description):
            return status, [("Content-Type", JSON)], dumps(
                {"error": code, "error_description": description}).encode()
        if method != "POST":
            return error(405, "invalid_request", "Use POST")
        if p is None:
            return error(400, "invalid_request", "Send a JSON or form-encoded body")
        if p.get("grant_type") != "client_credentials":
            return error(400, "unsupported_grant_type", "Only client_credentials is supported")
        if not p.get("client_id") or not p.get("client_secret"):
            return error(400, "invalid_request", "client_id and client_secret are required")
        label = self.secret_label(p["client_id"], p["client_secret"])
        with lock:
            if label == "invalid" or int(label.split(":")[1]) not in self.accept:
                return error(401, "invalid_client", "Client authentication failed")
            self.count += 1
            token = "cfdwat-" + secrets.token_hex(16)
            self.issued[token] = {"n": self.count, "revoked": False,
                                  "expires": time.monotonic() + self.lifetime_s}
            out = {"access_token": token, "token_type": "Bearer", "expires_in": self.lifetime_s}
        if p.get("scope"):
            out["scope"] = p["scope"]
        return 200, [("Content-Type", JSON), ("Cache-Control", "no-store")], dumps(out).encode()

    def label(self, header):
        """oauth:N for a good issued token, expired:oauth:N for a spent one."""
        if header is None:
            return None
        scheme, _, cred = header.strip().partition(" ")
        t = self.issued.get(cred.strip()) if scheme.lower() == "bearer" else None
        if t is None:
            return None
        good = not t["revoked"] and time.monotonic() < t["expires"]
        return ("oauth:%d" if good else "expired:oauth:%d") % t["n"]

    def control(self, obj, lock):
        with lock:
            if obj is not None:
                if not isinstance(obj, dict) or set(obj) - {"lifetime_s", "accept", "revoke"}:
                    raise ValueError('oauth takes {"lifetime_s": n, "accept": [1, 2], "revoke": true}')
                if "lifetime_s" in obj:
                    if not isinstance(obj["lifetime_s"], int) or obj["lifetime_s"] < 1:
                        raise ValueError("lifetime_s must be a whole number of seconds, 1 or more")
                    self.lifetime_s = obj["lifetime_s"]
                if "accept" in obj:
                    if not isinstance(obj["accept"], list) or not set(obj["accept"]) <= {1, 2}:
                        raise ValueError("accept must be a list of 1 and 2")
                    self.accept = list(obj["accept"])
                if obj.get("revoke"):
                    for t in self.issued.values():
                        t["revoked"] = True
            now = time.monotonic()
            valid = sum(1 for t in self.issued.values() if not t["revoked"] and now < t["expires"])
            return {"ok": True, "lifetime_s": self.lifetime_s, "accept": self.accept,
                    "issued": self.count, "valid": valid}


def parse_fault(obj):
    """Validates one fault strictly, so that a typo in a test fails loudly."""
    if not isinstance(obj, dict):
        raise ValueError("a fault must be a JSON object")
    unknown = set(obj) - FAULT_KEYS
    if unknown:
        raise ValueError("unknown fault keys: " + ", ".join(sorted(unknown)))
    f = dict(obj)
    if f.get("kind") not in FAULT_KINDS:
        raise ValueError("kind must be one of " + ", ".join(sorted(FAULT_KINDS)))
    f.setdefault("match", "/wiki")
    f["method"] = f["method"].upper() if isinstance(f.get("method"), str) else None
    f.setdefault("times", 1)
    f.setdefault("server", "main")
    f.setdefault("rate", 1)
    f.setdefault("skip", 0)

    def is_int(v):
        return isinstance(v, int) and not isinstance(v, bool)

    def is_num(v):
        return isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0

    checks = [
        (isinstance(f["match"], str), "match must be a string (a path prefix)"),
        (is_int(f["times"]) and (f["times"] >= 1 or f["times"] == -1), "times must be >= 1, or -1 for always"),
        (f["server"] in LISTENERS + ("any",), 'server must be "main", "second", "tls" or "any"'),
        (isinstance(f["rate"], (int, float)) and not isinstance(f["rate"], bool) and 0 < f["rate"] <= 1,
         "rate must be a probability, 0 < rate <= 1"),
        (is_int(f["skip"]) and f["skip"] >= 0, "skip must be an integer >= 0"),
        ("status" not in f or (is_int(f["status"]) and 100 <= f["status"] <= 599), "status must be an HTTP status"),
        (f["kind"] != "status" or "status" in f, 'kind "status" needs "status"'),
        (isinstance(f.get("headers", {}), dict), "headers must be an object"),
        (isinstance(f.get("body", ""), str), "body must be a string"),
        (isinstance(f.get("content_type", ""), str), "content_type must be a string"),
        (f["kind"] != "delay" or is_num(f.get("delay_ms")), 'kind "delay" needs delay_ms >= 0'),
        (is_num(f.get("interval_ms", 0)), "interval_ms must be >= 0"),
        (is_int(f.get("bytes", 32)) and f.get("bytes", 32) >= 32, "bytes must be an integer >= 32"),
        (f["kind"] != "redirect" or isinstance(f.get("location"), str), 'kind "redirect" needs "location"'),
        (isinstance(f.get("process", False), bool), "process must be true or false"),
        (f["kind"] != "merge" or isinstance(f.get("fields"), dict), 'kind "merge" needs "fields", an object'),
    ]
    for ok, msg in checks:
        if not ok:
            raise ValueError(msg)
    # Header values end up verbatim in the response head: no line breaks.
    f["headers"] = [(str(k), str(v)) for k, v in f.get("headers", {}).items()]
    for k, v in f["headers"] + [("location", f.get("location", ""))]:
        if any(c in k + v for c in "\r\n"):
            raise ValueError("header names and values must not contain line breaks")
    return f


QUOTA_KEYS = {"limit", "window_s", "near", "headers", "reason", "policy", "match"}


def parse_quota(obj):
    """A points quota, as Confluence Cloud enforces one per site: every request
    under "match" (default /wiki) costs a point, "limit" points per window of
    "window_s" seconds (windows start on a whole second when the quota is set).
    With "headers" (default true) every answer says so: X-RateLimit-Limit,
    -Remaining (after this request), -Reset (ISO 8601, whole seconds),
    -NearLimit (true from "near", default 0.2, of the limit left),
    RateLimit-Reason ("reason", when near the limit and on a 429),
    Beta-RateLimit-Policy ("policy";q=limit;w=window_s) and Beta-RateLimit
    ("policy";r=remaining;t=seconds to the reset).  An exhausted window
    answers 429 with Retry-After (seconds to the reset, headers or not) and
    costs nothing.  None (or a limit of 0) turns the quota off."""
    if obj is None or (isinstance(obj, dict) and obj.get("limit") == 0):
        return None
    if not isinstance(obj, dict):
        raise ValueError("a quota must be a JSON object or null")
    unknown = set(obj) - QUOTA_KEYS
    if unknown:
        raise ValueError("unknown quota keys: " + ", ".join(sorted(unknown)))
    q = {"window_s": 60, "near": 0.2, "headers": True, "reason": "confluence-quota-tenant-based",
         "policy": "tenant-app-quota", "match": "/wiki"}
    q.update(obj)

    def is_int(v):
        return isinstance(v, int) and not isinstance(v, bool)

    checks = [
        (is_int(q.get("limit")) and q["limit"] >= 1, "limit must be an integer >= 1"),
        (is_int(q["window_s"]) and 1 <= q["window_s"] <= 86400, "window_s must be 1 .. 86400"),
        (isinstance(q["near"], (int, float)) and not isinstance(q["near"], bool) and 0 <= q["near"] <= 1,
         "near must be a fraction, 0 .. 1"),
        (isinstance(q["headers"], bool), "headers must be true or false"),
        (isinstance(q["reason"], str) and isinstance(q["policy"], str) and isinstance(q["match"], str),
         "reason, policy and match must be strings"),
        (not any(c in q["reason"] + q["policy"] for c in '\r\n"'), "reason and policy must be one line"),
    ]
    for ok, msg in checks:
        if not ok:
            raise ValueError(msg)
    q.update(start=float(int(time.time())), window=-1, used=0, answered=0, refused=0)
    return q


def quota_take(q, path, now):
    """Charge one request to the quota: (allowed, headers for the answer).
    Caller holds the lock."""
    if not path.startswith(q["match"]):
        return True, []
    window = int((now - q["start"]) // q["window_s"])
    if window != q["window"]:
        q["window"], q["used"] = window, 0
    reset = q["start"] + (window + 1) * q["window_s"]
    allowed = q["used"] < q["limit"]
    if allowed:
        q["used"] += 1
        q["answered"] += 1
    else:
        q["refused"] += 1
    remaining = q["limit"] - q["used"]
    near = remaining <= q["near"] * q["limit"]
    left_s = max(1, int(-(-(reset - now) // 1)))
    hdrs = []
    if q["headers"]:
        hdrs = [("X-RateLimit-Limit", str(q["limit"])),
                ("X-RateLimit-Remaining", str(remaining)),
                ("X-RateLimit-Reset", datetime.fromtimestamp(reset, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")),
                ("X-RateLimit-NearLimit", "true" if near else "false"),
                ("Beta-RateLimit-Policy", '"%s";q=%d;w=%d' % (q["policy"], q["limit"], q["window_s"])),
                ("Beta-RateLimit", '"%s";r=%d;t=%d' % (q["policy"], remaining, left_s))]
        if near or not allowed:
            hdrs.append(("RateLimit-Reason", q["reason"]))
    if not allowed:
        hdrs.append(("Retry-After", str(left_s)))
    return allowed, hdrs


# ----------------------------------------------------------------------------
# Shared state: request logs, counters, faults, stored objects

class Counters:
    """Per listener.  The gauges (tcp_open, open_connections) survive reset."""

    def __init__(self):
        self.tcp_open = 0
        self.open_connections = 0
        self.clear()

    def clear(self):
        self.log = []
        self.seq = 0
        self.connections = 0
        self.front_conns = {}  # nginx's connection names -> our numbers
        self.tcp_accepted = 0
        self.tls_failures = 0
        self.faulted = 0       # requests answered (or dropped) by a fault


class State:
    def __init__(self, creds, seed=None):
        self.lock = threading.Lock()
        self.rng = random.Random(seed)   # for faults with a "rate"
        self.creds = creds
        self.oauth = OAuth.from_env()
        self.next_id = FIRST_ID
        self.epoch = 0   # bumped by reset, so open connections get new ids
        self.counters = {name: Counters() for name in LISTENERS}
        self.faults = []
        self.quota = None    # parse_quota's, or None
        self.store = {"pages": {}, "blogposts": {}, "footer-comments": {}, "inline-comments": {}}
        self.titles = {}  # (collection, spaceId, title) -> id, current objects only
        # Indexes for the list endpoints, kept in step with the store by
        # insert/replace/remove, so that a page of a list costs a bisect and
        # the items on it, not a sort of the store:
        self.order = {c: [] for c in self.store}        # int ids, ascending
        self.by_title = {c: {} for c in CONTENT}        # title -> {int ids}, any status
        self.by_container = {c: {} for c in COMMENTS}   # (key, id) -> [int ids], ascending
        self.spaces = {}                                # id -> space
        self.space_order = []                           # int ids, ascending
        self.labels = {}             # (collection, id) -> [label], ascending ids
        self.scopes = {}             # token label -> set of scopes: scoped tokens
        self.add_space(make_space(DEFAULT_SPACE))

    def reset(self, keep_objects=False):
        with self.lock:
            for c in self.counters.values():
                c.clear()
            self.epoch += 1
            self.faults.clear()
            self.quota = None
            if keep_objects:
                return
            for index in (self.store, self.order, self.by_title, self.by_container):
                for d in index.values():
                    d.clear()
            self.titles.clear()
            self.scopes.clear()
            self.spaces.clear()
            self.space_order.clear()
            self.labels.clear()
            self.add_space(make_space(DEFAULT_SPACE))

    def stats(self):
        """The counters, as GET /_standin/stats shows them.  Caller holds the lock."""
        c, c2, c3 = self.counters["main"], self.counters["second"], self.counters["tls"]
        return {"requests": c.seq, "connections": c.connections,
                "open_connections": c.open_connections,
                "pages": len(self.store["pages"]), "blogposts": len(self.store["blogposts"]),
                "comments": len(self.store["footer-comments"]) + len(self.store["inline-comments"]),
                "spaces": len(self.spaces),
                "faults_pending": len(self.faults), "tcp_accepted": c.tcp_accepted,
                "tcp_open": c.tcp_open, "tls_failures": c.tls_failures,
                "second_requests": c2.seq, "next_id": str(self.next_id),
                "faulted": c.faulted, "tls_requests": c3.seq,
                "tls_connections": c3.connections,
                "tls_handshake_failures": c3.tls_failures}

    def new_id(self):
        # Caller holds the lock.  Ids are never reused, not even after reset.
        self.next_id += 1
        return str(self.next_id - 1)

    # --- the store and its indexes (caller holds the lock) ---------------------

    def insert(self, coll, obj):
        oid = obj["id"]
        n = int(oid)
        self.store[coll][oid] = obj
        lst = self.order[coll]
        if not lst or lst[-1] < n:
            lst.append(n)      # the usual case: ids grow
        else:
            bisect.insort(lst, n)
        if coll in CONTENT:
            self.by_title[coll].setdefault(obj["title"], set()).add(n)
            if obj["status"] == "current":
                self.titles[(coll, obj["spaceId"], obj["title"])] = oid
        else:
            lst = self.by_container[coll].setdefault(container_of(obj), [])
            if not lst or lst[-1] < n:
                lst.append(n)
            else:
                bisect.insort(lst, n)

    def replace(self, coll, old, new):
        """Puts new in old's place (same id).  Objects are replaced, never
        mutated: a reader serialising the old one stays consistent."""
        self.store[coll][new["id"]] = new
        if coll in CONTENT:
            n = int(new["id"])
            if old["title"] != new["title"]:
                self.untitle(coll, old["title"], n)
                self.by_title[coll].setdefault(new["title"], set()).add(n)
            self.drop_title(coll, old)
            if new["status"] == "current":
                self.titles[(coll, new["spaceId"], new["title"])] = new["id"]

    def remove(self, coll, obj):
        n = int(obj["id"])
        del self.store[coll][obj["id"]]
        remove_sorted(self.order[coll], n)
        if coll in CONTENT:
            self.untitle(coll, obj["title"], n)
            self.drop_title(coll, obj)
        else:
            key = container_of(obj)
            lst = self.by_container[coll].get(key)
            if lst is not None:
                remove_sorted(lst, n)
                if not lst:
                    del self.by_container[coll][key]

    def untitle(self, coll, title, n):
        ids = self.by_title[coll].get(title)
        if ids is not None:
            ids.discard(n)
            if not ids:
                del self.by_title[coll][title]

    def add_space(self, space):
        n = int(space["id"])
        if space["id"] not in self.spaces:
            bisect.insort(self.space_order, n)
        self.spaces[space["id"]] = space

    def take_fault(self, server, method, path):
        if not self.faults:
            return None
        with self.lock:
            for i, f in enumerate(self.faults):
                if (f["server"] in (server, "any") and (f["method"] in (None, method))
                        and path.startswith(f["match"])):
                    if f["skip"] > 0:
                        f["skip"] -= 1
                        continue   # let through; a later fault may still apply
                    if f["rate"] < 1 and self.rng.random() >= f["rate"]:
                        continue   # not this time; a later fault may still apply
                    self.counters[server].faulted += 1
                    if f["times"] > 0:
                        f["times"] -= 1
                        if f["times"] == 0:
                            del self.faults[i]
                    return f
        return None

    # --- the Confluence part ------------------------------------------------

    def api(self, method, path, query, ctype, raw, parsed, base):
        """Returns (status, extra headers, body bytes) or raises ApiError."""
        if path == ECHO or path.startswith(ECHO + "/"):
            return self.echo(method, path, query, ctype, raw, parsed)
        parts = path[len(API) + 1:].split("/") if path.startswith(API + "/") else []
        if len(parts) == 1:
            coll = parts[0]
            if method == "POST" and (coll in CONTENT or coll in COMMENTS):
                if coll in CONTENT and len(raw) > CREATE_BODY_LIMIT:
                    raise ApiError(413, "REQUEST_ENTITY_TOO_LARGE", "Request entity too large")
                data = self.json_body(ctype, raw, parsed)
                if coll in CONTENT:
                    return 200, [], self.content_out(self.create_content(coll, data, query), base)
                obj = self.create_comment(coll, data)
                loc = "%s/api/v2/%s/%s" % (base, coll, obj["id"])
                return 201, [("Location", loc)], self.content_out(obj, base)
            if method == "GET" and coll == "spaces":
                return self.list_spaces(path, query, base)
            if method == "GET" and coll in CONTENT:
                return self.list_content(coll, path, query, base)
            if method == "GET" and coll in COMMENTS:
                return self.list_comments(coll, path, query, base)
        elif len(parts) == 2 and parts[0] == "spaces" and parts[1] and method == "GET":
            want_path_id(parts[1])
            with self.lock:
                space = self.spaces.get(parts[1])
            if space is None:
                raise not_found()
            return 200, [], self.content_out(space, base)
        elif len(parts) == 2 and (parts[0] in CONTENT or parts[0] in COMMENTS) and parts[1]:
            coll, oid = parts
            want_path_id(oid)
            qs = urllib.parse.parse_qs(query)
            if method == "GET":
                # As Confluence: the body only with ?body-format=, under that
                # name (no SQL test reads the body of a single GET).
                fmt = body_format(qs, SINGLE_BODY_FORMATS)
                statuses = set(multi(qs, "status"))
                with self.lock:
                    obj = self.store[coll].get(oid)
                if obj is None or (statuses and obj["status"] not in statuses):
                    raise not_found()
                return 200, [], self.content_out(dict(obj, body=body_view(obj.get("body"), fmt)), base)
            if method == "DELETE":
                with self.lock:
                    obj = self.store[coll].get(oid)
                    if obj is None:
                        raise not_found()
                    if coll in CONTENT:
                        self.delete_content(coll, obj, qs)
                    else:
                        self.remove(coll, obj)   # comments: removed for good
                return 204, [], b""
            if method == "PUT":
                data = self.json_body(ctype, raw, parsed)
                if coll in CONTENT:
                    obj = self.update_content(coll, oid, data)
                else:
                    obj = self.update_comment(coll, oid, data)
                return 200, [], self.content_out(obj, base)
        elif len(parts) == 3 and parts[0] in CONTENT and parts[1] and parts[2] in COMMENTS and method == "GET":
            want_path_id(parts[1])
            key = "pageId" if parts[0] == "pages" else "blogPostId"
            return self.list_comments(parts[2], path, query, base, (parts[0], key, parts[1]))
        elif len(parts) == 3 and parts[0] in CONTENT and parts[1] and parts[2] == "labels" and method == "GET":
            want_path_id(parts[1])
            return self.list_labels(parts[0], parts[1], path, query, base)
        raise not_found()

    def delete_content(self, coll, obj, qs):
        """DELETE /pages/{id} or /blogposts/{id}, as Confluence: a current page
        goes to the trash; ?purge=true removes a trashed one for good (without
        it a trashed page is 404); ?draft=true removes a draft for good
        (without it a draft is 404).  Caller holds the lock."""
        purge, draft = flag(qs, "purge"), flag(qs, "draft")
        status = obj["status"]
        if status == "trashed":
            if not purge:
                raise not_found()
            self.remove(coll, obj)
        elif status == "draft":
            if not draft:
                raise not_found()
            self.remove(coll, obj)
        elif draft:
            raise not_found()   # no draft of this page in the stand-in
        else:
            # purge=true on a page that is not in the trash: Confluence does
            # not say; here it only goes to the trash, like without purge.
            self.replace(coll, obj, dict(obj, status="trashed"))

    # --- lists ------------------------------------------------------------------

    def list_content(self, coll, path, query, base):
        """GET /pages or /blogposts: id, space-id, title (exact), status,
        body-format, sort (id or -id), cursor, limit."""
        qs = urllib.parse.parse_qs(query)
        limit, after, desc = list_paging(qs, path)
        fmt = body_format(qs, LIST_BODY_FORMATS)
        ids = want_ids(qs, "id", 250)
        spaces = set(want_ids(qs, "space-id", 100))
        title = qs.get("title", [None])[-1]
        statuses = set(multi(qs, "status")) or LIST_STATUS_DEFAULT[coll]

        def ok(o):
            return (o["status"] in statuses and (not spaces or o["spaceId"] in spaces)
                    and (title is None or o["title"] == title))
        with self.lock:
            if ids:
                cands = sorted({int(i) for i in ids})
            elif title is not None:
                cands = sorted(self.by_title[coll].get(title, ()))
            else:
                cands = self.order[coll]
            objs, more = walk(self.store[coll], cands, after, desc, limit, ok)
        return list_answer(path, query, base, [dict(o, body=body_view(o.get("body"), fmt)) for o in objs],
                           more, desc)

    def list_comments(self, coll, path, query, base, container=None):
        """GET /footer-comments, /inline-comments, and those of one page or
        blog post (container: (collection, key, id); 404 when it does not
        exist): body-format, status, sort, cursor, limit."""
        qs = urllib.parse.parse_qs(query)
        limit, after, desc = list_paging(qs, path)
        fmt = body_format(qs, LIST_BODY_FORMATS)
        statuses = set(multi(qs, "status")) or LIST_STATUS_DEFAULT[coll]
        with self.lock:
            if container:
                ccoll, key, cid = container
                if cid not in self.store[ccoll]:
                    raise not_found()
                cands = self.by_container[coll].get((key, cid), [])
            else:
                cands = self.order[coll]
            objs, more = walk(self.store[coll], cands, after, desc, limit,
                              lambda o: o["status"] in statuses)
        return list_answer(path, query, base, [dict(o, body=body_view(o.get("body"), fmt)) for o in objs],
                           more, desc)

    def list_labels(self, coll, cid, path, query, base):
        """GET /pages/{id}/labels or /blogposts/{id}/labels: prefix, sort,
        cursor, limit; 404 when the page or blog post does not exist."""
        qs = urllib.parse.parse_qs(query)
        limit, after, desc = list_paging(qs, path)
        prefixes = set(multi(qs, "prefix"))
        with self.lock:
            if cid not in self.store[coll]:
                raise not_found()
            labels = self.labels.get((coll, cid), [])
            objs, more = walk({l["id"]: l for l in labels}, [int(l["id"]) for l in labels], after, desc,
                              limit, lambda l: not prefixes or l["prefix"] in prefixes)
        return list_answer(path, query, base, objs, more, desc)

    def list_spaces(self, path, query, base):
        """GET /spaces: ids, keys, type, status, sort (id or -id), cursor, limit."""
        qs = urllib.parse.parse_qs(query)
        limit, after, desc = list_paging(qs, path)
        ids = want_ids(qs, "ids", 250)
        keys = set(multi(qs, "keys"))
        if len(keys) > 250:
            raise bad("At most 250 values may be given for 'keys'")
        types, statuses = set(multi(qs, "type")), set(multi(qs, "status"))

        def ok(s):
            return ((not keys or s["key"] in keys) and (not types or s["type"] in types)
                    and (not statuses or s["status"] in statuses))
        with self.lock:
            cands = sorted({int(i) for i in ids}) if ids else self.space_order
            objs, more = walk(self.spaces, cands, after, desc, limit, ok)
        return list_answer(path, query, base, objs, more, desc)

    def echo(self, method, path, query, ctype, raw, parsed):
        """/wiki/echo/...: any method and body is accepted and described back,
        for tests of hand-made tables whose bodies Confluence would refuse.
        ?status=N answers N instead (204 with no body)."""
        qs = urllib.parse.parse_qs(query)
        status = int(qs.get("status", ["200"])[0])
        if status == 204:
            return 204, [], b""
        out = {"id": self.new_id(), "method": method, "path": path, "query": query,
               "content_type": ctype, "received": parsed if isinstance(parsed, (dict, list)) else None}
        return status, [], dumps(out).encode()

    @staticmethod
    def json_body(ctype, raw, parsed):
        if media_type(ctype) != JSON:
            raise ApiError(415, "UNSUPPORTED_MEDIA_TYPE", "Unsupported Media Type",
                           "Content-Type must be application/json")
        if not raw:
            raise bad("Request body is missing")
        if parsed is NOT_JSON:
            raise bad("Unable to parse the request body as JSON")
        if not isinstance(parsed, dict):
            raise bad("The request body must be a JSON object")
        return parsed

    @staticmethod
    def content_out(obj, base):
        # _links.base depends on the listener (http or https, which port).
        out = dict(obj)
        out["_links"] = dict(obj["_links"], base=base)
        return dumps(out).encode()

    def drop_title(self, coll, obj):
        key = (coll, obj["spaceId"], obj["title"])
        if self.titles.get(key) == obj["id"]:
            del self.titles[key]

    def title_taken(self, coll, space, title, oid=None):
        """400 when another current object has this title in the space.  Caller holds the lock."""
        other = self.titles.get((coll, space, title))
        if other not in (None, oid):
            article = CONTENT[coll]["article"]
            raise ApiError(400, "BAD_REQUEST", "%s with this title already exists: %s already exists "
                           "with the same TITLE in this space" % (article, article))

    def create_content(self, coll, data, query):
        spec = CONTENT[coll]
        check_keys(data, spec["create"])
        space = want_id(data, "spaceId", required=True)
        status = want_status(data.get("status", "current"))
        title = want_title(data.get("title"), status, spec["noun"])
        body = want_body(data.get("body"), required=False)
        parent = want_id(data, "parentId") if coll == "pages" else None
        if data.get("subtype") not in (None, "live"):
            raise bad("Invalid value for 'subtype': only \"live\" is supported")
        if data.get("createdAt") is not None and not isinstance(data["createdAt"], str):
            raise bad("'createdAt' must be a string")
        qs = urllib.parse.parse_qs(query)
        root_level = qs.get("root-level", ["false"])[-1].lower() == "true"
        if root_level and parent:
            raise bad("'parentId' must not be given for a root-level page")
        created = data.get("createdAt") or now_iso()
        with self.lock:
            if status == "current":
                self.title_taken(coll, space, title)
            obj = build_content(coll, self.new_id(), space, status, title, body or {}, created,
                                None if root_level else (parent or DEFAULT_PARENT),
                                len(self.store[coll]), version_obj(1, ""))
            self.insert(coll, obj)
        return obj

    def update_content(self, coll, oid, data):
        spec = CONTENT[coll]
        check_keys(data, spec["update"])
        if data.get("id") != oid:
            raise bad("'id' is required and must be the id in the path (as a string)")
        if data.get("status") is None:
            raise bad("'status' is required")
        status = want_status(data["status"])
        title = want_title(data.get("title"), "current", spec["noun"])
        body = want_body(data.get("body"), required=True)
        number = want_version(data)
        parent = want_id(data, "parentId")
        with self.lock:
            obj = self.store[coll].get(oid)
            if obj is None:
                raise not_found()
            if data.get("spaceId") not in (None, obj["spaceId"]):
                raise bad("Moving a %s to another space is not supported" % spec["noun"])
            version = version_obj(number, data["version"].get("message", ""))
            if obj["status"] == "trashed":
                # Restoring from the trash: only the status changes.
                if status != "current":
                    raise bad("A trashed %s can only be restored, with status current" % spec["noun"])
                check_version(obj, number, spec["noun"])
                self.title_taken(coll, obj["spaceId"], obj["title"], oid)
                new = dict(obj, status="current", version=version)
                self.replace(coll, obj, new)
                return new
            check_version(obj, number, spec["noun"])
            if status == "current":
                self.title_taken(coll, obj["spaceId"], title, oid)
            links = dict(obj["_links"], webui=obj["_links"]["webui"].rsplit("/", 1)[0] + "/" + title_slug(title))
            new = dict(obj, status=status, title=title, body=body, _links=links, version=version)
            if parent and coll == "pages":
                new.update(parentId=parent, parentType="page")
            self.replace(coll, obj, new)
        return new

    def create_comment(self, coll, data):
        inline = coll == "inline-comments"
        containers = INLINE_CONTAINERS if inline else FOOTER_CONTAINERS
        check_keys(data, set(containers) | {"body"} | ({"inlineCommentProperties"} if inline else set()))
        given = [k for k in containers if data.get(k) is not None]
        if len(given) != 1:
            raise bad("Exactly one of %s must be given" % ", ".join(containers))
        key = given[0]
        cid = want_id(data, key, required=True)
        body = want_body(data.get("body"), required=True)
        props = None
        if inline:
            props = data.get("inlineCommentProperties")
            if props is not None or key != "parentCommentId":
                props = want_inline_props(props)
        if cid == MISSING_ID:
            raise not_found()
        with self.lock:
            obj = build_comment(coll, self.new_id(), key, cid, self.container_title(key, cid), body,
                                version_obj(1, ""), props)
            self.insert(coll, obj)
        return obj

    def container_title(self, key, cid):
        """The title a comment on this container gets.  Caller holds the lock."""
        parent = None
        if key == "pageId":
            parent = self.store["pages"].get(cid)
        elif key == "blogPostId":
            parent = self.store["blogposts"].get(cid)
        elif key == "parentCommentId":
            parent = self.store["footer-comments"].get(cid) or self.store["inline-comments"].get(cid)
        title = parent["title"] if parent else ""
        return title if title.startswith("Re: ") else "Re: " + title

    def update_comment(self, coll, oid, data):
        check_keys(data, {"version", "body"})
        number = want_version(data)
        body = want_body(data.get("body"), required=True)
        with self.lock:
            obj = self.store[coll].get(oid)
            if obj is None:
                raise not_found()
            check_version(obj, number, "comment")
            obj = dict(obj, body=body, version=version_obj(number, data["version"].get("message", "")))
            self.store[coll][oid] = obj
        return obj

    # --- seeding (POST /_standin/seed) -------------------------------------------

    def seed(self, req):
        """Creates objects straight in the store; raises ValueError for a bad request."""
        if not isinstance(req, dict):
            raise ValueError("seed needs a JSON object")
        coll = req.get("collection")
        if coll == "spaces":
            return self.seed_spaces(req)
        if coll == "labels":
            return self.seed_labels(req)
        if coll not in CONTENT and coll not in COMMENTS:
            raise ValueError('collection must be "pages", "blogposts", "footer-comments", '
                             '"inline-comments", "spaces" or "labels"')
        allowed = {"collection", "count", "body"} | (
            {"spaceId", "title_prefix", "status"} if coll in CONTENT else {"pageId", "blogPostId"})
        unknown = set(req) - allowed
        if unknown:
            raise ValueError("unknown seed keys for %s: %s" % (coll, ", ".join(sorted(unknown))))
        count = req.get("count")
        if not (isinstance(count, int) and not isinstance(count, bool) and 0 <= count <= SEED_MAX):
            raise ValueError("count must be an integer, 0 <= count <= %d" % SEED_MAX)
        value = req.get("body", "<p>x</p>")
        if value is not None and not isinstance(value, str):
            raise ValueError("body must be a string (storage format) or null")
        # Shared by every seeded object: objects are replaced, never mutated.
        body = {"storage": {"representation": "storage", "value": value}} if value is not None else {}
        version = version_obj(1, "")
        with self.lock:
            first = self.next_id
            if coll in CONTENT:
                space = req.get("spaceId", DEFAULT_SPACE["id"])
                prefix = req.get("title_prefix", "Seed ")
                status = req.get("status", "current")
                if not (isinstance(space, str) and space.isascii() and space.isdigit()):
                    raise ValueError("spaceId must be a string of digits")
                if not isinstance(prefix, str) or len(prefix) + len(str(count)) > 255:
                    raise ValueError("title_prefix must be a string; titles are at most 255 characters")
                if status not in ("current", "draft", "trashed"):
                    raise ValueError("status must be current, draft or trashed")
                if status == "current":
                    for i in range(1, count + 1):
                        if (coll, space, prefix + str(i)) in self.titles:
                            raise ValueError("title %s is already taken in space %s" % (dumps(prefix + str(i)), space))
                created, position = now_iso(), len(self.store[coll])
                for i in range(count):
                    self.insert(coll, build_content(coll, str(first + i), space, status, prefix + str(i + 1),
                                                    body, created, DEFAULT_PARENT, position + i, version))
            else:
                given = [k for k in ("pageId", "blogPostId") if req.get(k) is not None]
                if len(given) != 1:
                    raise ValueError("give exactly one of pageId, blogPostId")
                key = given[0]
                cid = req[key]
                if not (isinstance(cid, str) and cid.isascii() and cid.isdigit()):
                    raise ValueError("%s must be a string of digits" % key)
                title = self.container_title(key, cid)
                props = ({"textSelection": "x", "textSelectionMatchCount": 1, "textSelectionMatchIndex": 0}
                         if coll == "inline-comments" else None)
                for i in range(count):
                    self.insert(coll, build_comment(coll, str(first + i), key, cid, title, body, version, props))
            self.next_id = first + count
        return {"created": count, "first_id": str(first) if count else None,
                "last_id": str(first + count - 1) if count else None}

    def seed_labels(self, req):
        unknown = set(req) - {"collection", "pageId", "blogPostId", "names", "prefix"}
        if unknown:
            raise ValueError("unknown seed keys for labels: " + ", ".join(sorted(unknown)))
        given = [k for k in ("pageId", "blogPostId") if req.get(k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of pageId, blogPostId")
        coll = "pages" if given[0] == "pageId" else "blogposts"
        cid, names = req[given[0]], req.get("names")
        prefix = req.get("prefix", "global")
        if not (isinstance(names, list) and all(isinstance(n, str) and n for n in names)):
            raise ValueError('"names" must be a list of non-empty strings')
        if prefix not in ("global", "my", "team", "system"):
            raise ValueError("prefix must be global, my, team or system")
        with self.lock:
            if cid not in self.store[coll]:
                raise ValueError("%s %s does not exist" % (CONTENT[coll]["noun"], dumps(cid)))
            labels = self.labels.setdefault((coll, cid), [])
            ids = []
            for name in names:
                ids.append(self.new_id())
                labels.append({"id": ids[-1], "name": name, "prefix": prefix})
        return {"created": len(ids), "ids": ids}

    def seed_spaces(self, req):
        unknown = set(req) - {"collection", "spaces"}
        if unknown:
            raise ValueError("unknown seed keys for spaces: " + ", ".join(sorted(unknown)))
        spaces = req.get("spaces")
        if not isinstance(spaces, list):
            raise ValueError('"spaces" must be a list of space objects')
        built = [make_space(s) for s in spaces]
        with self.lock:
            keys = {s["key"]: s["id"] for s in self.spaces.values()}
            for s in built:
                if keys.get(s["key"], s["id"]) != s["id"]:
                    raise ValueError("space key %s is already taken" % dumps(s["key"]))
                keys[s["key"]] = s["id"]
            for s in built:
                old = self.spaces.get(s["id"])
                if old is not None:
                    keys.pop(old["key"], None)
                self.add_space(s)
        return {"created": len(built), "ids": [s["id"] for s in built]}


def make_space(s):
    """A space from a seed entry (id and key required); raises ValueError."""
    if not isinstance(s, dict):
        raise ValueError("a space must be a JSON object")
    allowed = {"id", "key", "name", "type", "status", "homepageId", "authorId", "createdAt", "description"}
    unknown = set(s) - allowed
    if unknown:
        raise ValueError("unknown space keys: " + ", ".join(sorted(unknown)))
    sid, key = s.get("id"), s.get("key")
    if not (isinstance(sid, str) and sid.isascii() and sid.isdigit()):
        raise ValueError("a space's id must be a string of digits")
    if not (isinstance(key, str) and key):
        raise ValueError("a space's key must be a non-empty string")
    out = {"id": sid, "key": key, "name": s.get("name", key), "type": s.get("type", "global"),
           "status": s.get("status", "current"), "authorId": s.get("authorId", AUTHOR),
           "createdAt": s.get("createdAt") or now_iso(), "homepageId": s.get("homepageId")}
    if out["type"] not in SPACE_TYPES:
        raise ValueError("a space's type must be one of " + ", ".join(SPACE_TYPES))
    if out["status"] not in ("current", "archived"):
        raise ValueError("a space's status must be current or archived")
    for k in ("name", "authorId", "createdAt"):
        if not isinstance(out[k], str):
            raise ValueError("a space's %s must be a string" % k)
    if out["homepageId"] is not None and not isinstance(out["homepageId"], str):
        raise ValueError("a space's homepageId must be a string or null")
    if "description" in s:
        out["description"] = s["description"]
    out["_links"] = {"webui": "/spaces/" + urllib.parse.quote(key, safe="")}
    return out


def build_content(coll, oid, space, status, title, body, created, parent, position, version):
    """A page or blog post as the store keeps it (the fields of PageSingle)."""
    slug = title_slug(title)
    tiny = base64.urlsafe_b64encode(int(oid).to_bytes(8, "little").rstrip(b"\0")).rstrip(b"=")
    if coll == "pages":
        webui = "/spaces/SP%s/pages/%s/%s" % (space, oid, slug)
    else:
        webui = "/spaces/SP%s/blog/%s/%s/%s" % (space, created[:10].replace("-", "/"), oid, slug)
    obj = {"id": oid, "status": status, "title": title, "spaceId": space}
    if coll == "pages":
        obj.update(parentId=parent, parentType="page" if parent else None, position=position)
    obj.update(authorId=AUTHOR, createdAt=created, version=version, body=body,
               _links={"webui": webui, "editui": "/pages/resumedraft.action?draftId=" + oid,
                       "tinyui": "/x/" + tiny.decode()})
    if coll == "pages":
        obj.update(ownerId=AUTHOR, lastOwnerId=None)
    return obj


def build_comment(coll, oid, key, cid, title, body, version, props):
    obj = {"id": oid, "status": "current", "title": title, key: cid,
           "version": version, "body": body,
           "_links": {"webui": "/pages/viewpage.action?%s=%s&focusedCommentId=%s#comment-%s"
                               % (key, cid, oid, oid)}}
    if coll == "inline-comments":
        obj.update(resolutionStatus="open", resolutionLastModifierId=None,
                   resolutionLastModifiedAt=None,
                   properties={"inlineMarkerRef": "standin-marker-" + oid,
                               "inlineOriginalSelection": (props or {}).get("textSelection", "")})
    return obj


def container_of(comment):
    for k in FOOTER_CONTAINERS:
        if k in comment:
            return (k, comment[k])
    return (None, None)


def remove_sorted(lst, n):
    i = bisect.bisect_left(lst, n)
    if i < len(lst) and lst[i] == n:
        del lst[i]


# ----------------------------------------------------------------------------
# Lists: query parameters, cursors, pages of results

def multi(qs, name):
    """A parameter given as a comma list, repeated, or both."""
    return [v for item in qs.get(name, []) for v in item.split(",") if v]


def want_ids(qs, name, most):
    ids = multi(qs, name)
    for v in ids:
        if not (v.isascii() and v.isdigit()):
            raise bad("Provided value {%s} for '%s' is not the correct type. Expected type is long" % (v, name))
    if len(ids) > most:
        raise bad("At most %d values may be given for '%s'" % (most, name))
    return ids


def flag(qs, name):
    return qs.get(name, ["false"])[-1].lower() == "true"


def body_format(qs, allowed):
    fmt = qs.get("body-format", [None])[-1]
    if fmt is not None and fmt not in allowed:
        raise bad("Invalid value for 'body-format': %s (expected one of %s)" % (dumps(fmt), ", ".join(allowed)))
    return fmt


def body_view(body, fmt):
    """The body as an answer shows it: {} without body-format, else the value
    under the name asked for.  The stand-in converts nothing: the value is
    the one stored, whatever representation it was sent in."""
    if fmt is None:
        return {}
    if body:
        rep, inner = next(iter(body.items()))
        if rep == fmt:
            return body
        return {fmt: {"representation": fmt, "value": inner["value"]}}
    return {fmt: {"representation": fmt, "value": ""}}


def list_kind(path):
    return path[len(API) + 1:]


def make_cursor(path, desc, last):
    # endpoint|direction|last id|check: a cursor cut short or edited is refused.
    raw = "%s|%s|%s" % (list_kind(path), "-" if desc else "+", last)
    raw += "|%08x" % binascii.crc32(raw.encode())
    return base64.urlsafe_b64encode(raw.encode()).rstrip(b"=").decode("ascii")


def read_cursor(path, token, desc):
    """The id a cursor continues after; 400 unless it was made for this
    endpoint and sort order."""
    try:
        if not token or token.strip("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"):
            raise ValueError
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        body, _, check = raw.rpartition("|")
        kind, d, last = body.split("|")
        if check != "%08x" % binascii.crc32(body.encode()) or kind != list_kind(path) or d != ("-" if desc else "+") or not (last.isascii() and last.isdigit()):
            raise ValueError
        return int(last)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise bad("Invalid cursor: %s" % token) from None


def list_paging(qs, path):
    """(limit, id to continue after or None, descending) from limit, cursor, sort."""
    v = qs.get("limit", [None])[-1]
    if v is None:
        limit = LIST_LIMIT_DEFAULT
    else:
        limit = int(v) if v.isascii() and v.isdigit() else None
        if limit is None or not 1 <= limit <= LIST_LIMIT_MAX:
            raise bad("Invalid value for 'limit': %s (expected an integer from 1 to %d)" % (v, LIST_LIMIT_MAX))
    # sort: id and -id (created-date too: ids grow with creation); others are ignored.
    desc = qs.get("sort", ["id"])[-1] in ("-id", "-created-date")
    token = qs.get("cursor", [None])[-1]
    after = read_cursor(path, token, desc) if token is not None else None
    return limit, after, desc


def walk(objs, cands, after, desc, limit, ok):
    """Up to limit objects of objs (a dict by id string) whose ids are in
    cands (ints, ascending), after the cursor's id, that ok() accepts, and
    whether more follow.  Caller holds the lock."""
    if desc:
        start = (bisect.bisect_left(cands, after) if after is not None else len(cands)) - 1
        idx = range(start, -1, -1)
    else:
        idx = range(bisect.bisect_right(cands, after) if after is not None else 0, len(cands))
    out, get = [], objs.get
    for j in idx:
        o = get(str(cands[j]))
        if o is not None and ok(o):
            if len(out) == limit:
                return out, True
            out.append(o)
    return out, False


def list_answer(path, query, base, results, more, desc):
    """{"results": [...], "_links": {["next": ...,] "base": ...}} and, when more
    follow, Confluence's Link header.  next is the request's own path and
    query with the cursor replaced."""
    links, hdrs = {"base": base}, []
    if more:
        kept = [p for p in query.split("&")
                if p and urllib.parse.unquote_plus(p.partition("=")[0]) != "cursor"]
        nxt = path + "?" + "&".join(kept + ["cursor=" + make_cursor(path, desc, results[-1]["id"])])
        links = {"next": nxt, "base": base}
        hdrs.append(("Link", '<%s>; rel="next", <%s>; rel="base"' % (nxt, base)))
    return 200, hdrs, dumps({"results": results, "_links": links}).encode()


NOT_JSON = object()   # "the body did not parse as JSON", distinct from JSON null


class BadFraming(Exception):
    """The request body cannot be delimited (bad Content-Length or chunking)."""


def check_keys(data, allowed):
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise bad("Unrecognized field \"%s\"" % unknown[0])


def want_id(data, key, required=False):
    v = data.get(key)
    if v is None:
        if required:
            raise bad("'%s' is required" % key)
        return None
    # Confluence's ids are strings that hold a number: 123 (a JSON number) is refused.
    if not isinstance(v, str):
        raise bad("Provided value {%s} for '%s' is not the correct type. Expected type is String"
                  % (dumps(v), key))
    if not (v.isascii() and v.isdigit()):
        raise bad("Provided value {%s} for '%s' is not the correct type. Expected type is long" % (v, key))
    return v


def want_path_id(v):
    if not (v.isascii() and v.isdigit()):
        raise bad("Provided value {%s} for 'id' is not the correct type. Expected type is long" % v)


def want_status(v):
    if v not in ("current", "draft"):
        raise bad("Invalid value for 'status': %s (expected current or draft)" % dumps(v))
    return v


def want_title(v, status, noun):
    if v is None:
        if status == "draft":
            return ""
        raise bad("Title is required for a %s that is not a draft" % noun)
    if not isinstance(v, str):
        raise bad("'title' must be a string")
    if status != "draft" and not v.strip():
        raise bad("Title cannot be empty")
    if len(v) > 255:
        raise bad("Title cannot be longer than 255 characters")
    return v


def want_body(v, required):
    """Accepts the flat and the nested body form; returns the response form."""
    if v is None:
        if required:
            raise bad("'body' is required")
        return None
    if not isinstance(v, dict):
        raise bad("'body' must be an object")
    if "representation" in v or "value" in v:
        inner, rep = v, v.get("representation")
    elif len(v) == 1 and next(iter(v)) in REPRESENTATIONS:
        rep, inner = next(iter(v.items()))
        if not isinstance(inner, dict):
            raise bad("'body.%s' must be an object" % rep)
        if inner.get("representation", rep) != rep:
            raise bad("'body.%s.representation' must be %s" % (rep, rep))
    else:
        raise bad("'body' must be {\"representation\": ..., \"value\": ...} or "
                  "one of storage, atlas_doc_format, wiki")
    extra = set(inner) - {"representation", "value"}
    if extra:
        raise bad("Unrecognized field \"%s\"" % sorted(extra)[0])
    if rep not in REPRESENTATIONS:
        raise bad("Invalid representation: %s" % dumps(rep))
    if not isinstance(inner.get("value"), str):
        raise bad("'body.value' is required and must be a string")
    value = inner["value"]
    if rep == "storage":
        value = saved_storage(value)
    return {rep: {"representation": rep, "value": value}}


MACRO_WITHOUT_ID = re.compile(r'<ac:structured-macro(?![^>]*\bac:macro-id=)')


def saved_storage(value):
    """As Confluence does when it saves a page: every macro gets an ac:macro-id,
    so what a client reads back is not byte for byte what it sent."""
    return MACRO_WITHOUT_ID.sub(lambda m: '<ac:structured-macro ac:macro-id="%s"' % uuid.uuid4(), value)


def want_version(data):
    v = data.get("version")
    n = v.get("number") if isinstance(v, dict) else None
    if not isinstance(n, int) or isinstance(n, bool):
        raise bad("'version' with an integer 'number' is required")
    if not isinstance(v.get("message", ""), str):
        raise bad("'version.message' must be a string")
    return n


def check_version(obj, number, noun):
    current = obj["version"]["number"]
    if number != current + 1:
        raise ApiError(409, "CONFLICT", "Version must be incremented when updating a %s. "
                       "Current Version: [%d]. Provided version: [%d]" % (noun, current, number))


def want_inline_props(p):
    if not isinstance(p, dict):
        raise bad("'inlineCommentProperties' is required for a top-level inline comment")
    sel, count, idx = (p.get(k) for k in ("textSelection", "textSelectionMatchCount",
                                          "textSelectionMatchIndex"))
    if not isinstance(sel, str) or not sel:
        raise bad("'inlineCommentProperties.textSelection' must be a non-empty string")
    for name, n in (("textSelectionMatchCount", count), ("textSelectionMatchIndex", idx)):
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise bad("'inlineCommentProperties.%s' must be an integer >= 0" % name)
    if count <= idx:
        raise bad("'textSelectionMatchCount' must be greater than 'textSelectionMatchIndex'")
    return p


def title_slug(title):
    return urllib.parse.quote(title.replace(" ", "-"), safe="-._~")


def version_obj(number, message):
    return {"createdAt": now_iso(), "message": message, "number": number,
            "minorEdit": False, "authorId": AUTHOR}


# ----------------------------------------------------------------------------
# HTTP

class Handler(http.server.BaseHTTPRequestHandler):
    """One instance per TCP connection; handle_one_request loops for keep-alive."""

    protocol_version = "HTTP/1.1"
    server_version = "confluence-standin/1"
    sys_version = ""
    # Head and body go out in one write anyway; without TCP_NODELAY a split
    # write would wait for the client's delayed ACK (40 ms per request).
    disable_nagle_algorithm = True
    timeout = 300       # idle keep-alive connections are closed after this
    verbose = False

    def setup(self):
        super().setup()
        self.state = self.server.state
        self.ctr = self.server.counters
        self.conn_epoch = -1
        self.conn_id = 0
        self.counted = False
        with self.state.lock:
            self.ctr.tcp_accepted += 1
            self.ctr.tcp_open += 1

    def finish(self):
        try:
            super().finish()
        except OSError:
            pass
        finally:
            with self.state.lock:
                self.ctr.tcp_open -= 1
                if self.counted:
                    self.ctr.open_connections -= 1

    def handle(self):
        if isinstance(self.connection, ssl.SSLSocket):
            # Done here, not in accept(), so a stalled client cannot block the listener.
            try:
                self.connection.do_handshake()
            except (OSError, ssl.SSLError):
                with self.state.lock:
                    self.ctr.tls_failures += 1
                return
        super().handle()

    def log_message(self, fmt, *args):
        if self.verbose:   # request line and status only, never headers
            sys.stderr.write("standin[%s] %s\n" % (self.server.name, fmt % args))

    def handle_expect_100(self):
        # Deferred to read_body(): drop_before_body must not have said "go on".
        return True

    def do_any(self):
        try:
            self.dispatch()
        except (OSError, ssl.SSLError):
            # The client went away (e.g. during a delay); nothing to tell anyone.
            self.close_connection = True
        except BadFraming as e:
            # The rest of the stream cannot be trusted: answer, then close.
            self.close_connection = True
            self.send(None, 400, [("Content-Type", "text/plain")], str(e).encode())

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = do_any

    # --- request side ----------------------------------------------------------

    def read_body(self):
        te = self.headers.get("Transfer-Encoding", "").lower()
        length = self.headers.get("Content-Length")
        if "chunked" not in te and not length:
            return b""
        if self.headers.get("Expect", "").lower() == "100-continue" and self.request_version != "HTTP/1.0":
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        if "chunked" in te:
            parts = []
            while True:
                line = self.rfile.readline(65537)
                if not line:
                    raise ConnectionResetError("client closed the connection mid-body")
                try:
                    size = int(line.split(b";", 1)[0].strip(), 16)
                except ValueError:
                    raise BadFraming("bad chunk size line") from None
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass   # trailers
                    break
                parts.append(self.rfile.read(size))
                if len(parts[-1]) < size:
                    raise ConnectionResetError("client closed the connection mid-body")
                self.rfile.readline(3)
            return b"".join(parts)
        if not length.strip().isdigit():
            raise BadFraming("bad Content-Length")
        n = int(length)
        data = self.rfile.read(n)
        if len(data) < n:
            raise ConnectionResetError("client closed the connection mid-body")
        return data

    def record(self, path, query, headers, auth, body, parsed, fault):
        ctype = headers.get("content-type")
        mt = media_type(ctype or "")
        text = body[:RECORD_BODY_CAP].decode("utf-8", "replace")
        form = None
        if mt == "application/x-www-form-urlencoded":
            qs = urllib.parse.parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
            form = {k: v[0] if len(v) == 1 else v for k, v in qs.items()}
        is_xml = mt in ("application/xml", "text/xml") or mt.endswith("+xml")
        rec = {"seq": 0, "server": self.server.name, "conn": 0, "t": round(time.time(), 6),
               "method": self.command, "path": path, "query": query, "headers": headers,
               "auth": auth, "content_type": ctype, "body_text": text,
               "body_truncated": len(body) > RECORD_BODY_CAP, "body_size": len(body),
               "body_json": None if parsed is NOT_JSON else parsed, "body_form": form,
               "body_xml": text if is_xml else None,
               "status": None, "fault": fault["kind"] if fault else None}
        front_conn = headers.pop("x-cfdw-front-conn", None)
        if front_conn is not None:
            rec["front"] = headers.pop("x-cfdw-front", None)
            rec["front_proto"] = headers.pop("x-cfdw-front-proto", None)
            headers.pop("connection", None)   # nginx's upstream "close"
        st, ctr = self.state, self.ctr
        with st.lock:
            # A connection's id counts from the last reset: an FDW that reuses
            # one connection shows conn == 1 throughout.
            if front_conn is not None:
                # Behind the test suite's nginx front (test/front.sh), every
                # request comes on a new upstream connection: number the
                # client's connections, which nginx names, instead.
                if front_conn not in ctr.front_conns:
                    ctr.connections += 1
                    ctr.front_conns[front_conn] = ctr.connections
                self.conn_id, self.conn_epoch = ctr.front_conns[front_conn], st.epoch
            elif self.conn_epoch != st.epoch:
                ctr.connections += 1
                self.conn_id, self.conn_epoch = ctr.connections, st.epoch
            if not self.counted:
                self.counted = True
                ctr.open_connections += 1
            ctr.seq += 1
            rec["seq"], rec["conn"] = ctr.seq, self.conn_id
            ctr.log.append(rec)
        return rec

    def dispatch(self):
        target = self.path
        if not target.startswith("/"):   # absolute-form, as sent to a proxy
            u = urllib.parse.urlsplit(target)
            target = (u.path or "/") + ("?" + u.query if u.query else "")
        path, _, query = target.partition("?")
        if path.startswith("/_standin/"):
            self.control(path, query, self.read_body())
            return
        st = self.state
        self.quota_headers = []
        quota_refused = False
        if st.quota is not None:
            with st.lock:
                if st.quota is not None:
                    allowed, self.quota_headers = quota_take(st.quota, path, time.time())
                    quota_refused = not allowed
        fault = None if quota_refused else st.take_fault(self.server.name, self.command, path)
        headers = {}
        for k, v in self.headers.items():
            k = k.lower()
            headers[k] = headers[k] + ", " + v if k in headers else v
        auth = st.creds.label(headers.get("authorization"))
        if auth == "invalid":
            auth = st.oauth.label(headers.get("authorization")) or auth
        if "authorization" in headers:
            headers["authorization"] = auth
        if "proxy-authorization" in headers:
            headers["proxy-authorization"] = "redacted"
        kind = fault["kind"] if fault else None
        if kind == "drop_before_body":
            self.record(path, query, headers, auth, b"", NOT_JSON, fault)
            self.drop()
            return
        body = self.read_body()
        parsed = NOT_JSON
        if body and not media_type(headers.get("content-type", "")).endswith(("form-urlencoded", "xml")):
            try:
                parsed = json.loads(body, parse_constant=reject_constant)
            except (ValueError, RecursionError):
                pass
        token_params = None
        if path in OAuth.PATHS:
            # the grant's parameters; the log gets the secret's label only
            token_params = OAuth.params(headers.get("content-type", ""), body, parsed)
            body, parsed = st.oauth.redacted(headers.get("content-type", ""), body, parsed)
        rec = self.record(path, query, headers, auth, body, parsed, fault)
        if quota_refused:
            rec["quota"] = "refused"
            self.send(rec, 429, [("Content-Type", JSON)],
                      errors_body(429, "TOO_MANY_REQUESTS", "Rate limit exceeded"))
            return

        def answer():
            if path in OAuth.PATHS:
                return st.oauth.grant(self.command, token_params, st.lock)
            return self.answer(path, query, auth, headers.get("content-type", ""), body, parsed)

        if kind == "drop_after_body":
            self.drop()
        elif kind == "drop_after_process":
            answer()   # the object now exists, but the client never hears of it
            self.drop()
        elif kind == "delay":
            time.sleep(fault["delay_ms"] / 1000.0)
            self.send(rec, *(self.fault_answer(fault) if "status" in fault else answer()))
        elif kind == "merge":
            # answered as usual, with these top-level keys put into the answer
            status, hdrs, out = answer()
            try:
                obj = json.loads(out) if out else None
            except ValueError:
                obj = None
            if isinstance(obj, dict):
                obj.update(fault["fields"])
                out = dumps(obj).encode()
            self.send(rec, status, hdrs + fault["headers"], out)
        elif kind == "slow_body":
            status, hdrs, out = answer()
            if "body" in fault:
                out = fault["body"].encode()
            self.send(rec, status, hdrs + fault["headers"], out, trickle=fault.get("interval_ms", 100) / 1000.0)
        elif kind:
            if fault.get("process"):
                answer()
            self.send(rec, *self.fault_answer(fault))
        else:
            self.send(rec, *answer())

    def answer(self, path, query, auth, ctype, body, parsed):
        """What Confluence would say: (status, headers, body)."""
        if path == TENANT_INFO and self.command in ("GET", "HEAD"):
            return 200, [("Content-Type", JSON)], dumps({"cloudId": CLOUD_ID}).encode()
        gateway = GATEWAY_RE.match(path)
        if gateway:
            if gateway.group(1) != CLOUD_ID:
                return 404, [("Content-Type", JSON)], dumps({"code": 404, "message": "Not Found"}).encode()
            path = gateway.group(2) or "/"
        if not (path == "/wiki" or path.startswith("/wiki/")):
            return 404, [("Content-Type", "text/plain")], b"Not Found"
        scopes = self.state.scopes.get(auth)
        if not auth.startswith(("basic:", "bearer:", "oauth:")) or (scopes is not None and not gateway):
            # a scoped token works only through the gateway
            return 401, [("Content-Type", JSON)], errors_body(
                401, "UNAUTHORIZED", "Unauthorized", "Authentication credentials are missing or invalid")
        method = "GET" if self.command == "HEAD" else self.command
        if scopes is not None and not scopes_allow(scopes, method, path):
            return 401, [("Content-Type", JSON), ("X-Failure-Category", "FAILURE_CLIENT_SCOPE_CHECK")], \
                dumps({"code": 401, "message": "Unauthorized; scope does not match"}).encode()
        if path == USER_CURRENT and method == "GET":
            return 200, [("Content-Type", JSON)], dumps(current_user(auth)).encode()
        try:
            method = "GET" if self.command == "HEAD" else self.command
            status, hdrs, out = self.state.api(method, path, query, ctype, body, parsed,
                                               self.server.base_url)
            return status, [("Content-Type", JSON)] + hdrs if status != 204 else hdrs, out
        except ApiError as e:
            return e.status, [("Content-Type", JSON)], errors_body(e.status, e.code, e.title, e.detail)

    def fault_answer(self, fault):
        kind, status = fault["kind"], fault.get("status")
        ctype = fault.get("content_type")
        if kind in ("status", "delay"):
            out = fault["body"].encode() if "body" in fault else generic_error(status)
        elif kind == "malformed_json":
            out = b'{"id": "123", "title": '
        elif kind == "empty_body":
            out = b""
        elif kind == "non_json":
            out, ctype = b"<html><body>OK</body></html>", ctype or "text/html; charset=utf-8"
        elif kind == "oversize":
            out = oversize_chunks(fault.get("bytes", 10 * 1024 * 1024))
        else:   # redirect
            status = status or 302
            return status, [("Location", fault["location"])] + fault["headers"], b""
        return status or 200, [("Content-Type", ctype or JSON)] + fault["headers"], out

    # --- response side ---------------------------------------------------------

    def send(self, rec, status, headers, body, trickle=None):
        """One write for head and body (see disable_nagle_algorithm).  body may
        be (length, iterator of chunks) for answers too big to build at once."""
        if rec is not None:
            rec["status"] = status   # before the client can see the answer
        no_body = status == 204 or status == 304 or status < 200
        length, chunks = (body if isinstance(body, tuple) else (len(body), None))
        head = ["HTTP/1.1 %d %s" % (status, phrase(status)),
                "Date: " + email.utils.formatdate(usegmt=True),
                "Server: " + self.server_version]
        head += ["%s: %s" % kv for kv in headers]
        if rec is not None:
            head += ["%s: %s" % kv for kv in getattr(self, "quota_headers", [])]
        if not no_body:
            head.append("Content-Length: %d" % length)
        if rec is not None:
            head.append("atl-traceid: standin%08x" % rec["seq"])
        if self.close_connection:
            head.append("Connection: close")
        head = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1")
        if self.verbose:
            self.log_message('"%s" %d', self.requestline, status)
        if no_body or self.command == "HEAD":
            self.wfile.write(head)
        elif trickle is not None:
            self.wfile.write(head)
            for i in range(len(body)):
                time.sleep(trickle)
                self.wfile.write(body[i:i + 1])
        elif chunks is not None:
            self.wfile.write(head)
            for c in chunks:
                self.wfile.write(c)
        else:
            self.wfile.write(head + body)

    def drop(self):
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    # --- control API -------------------------------------------------------------

    def control(self, path, query, body):
        st, m = self.state, self.command
        qs = urllib.parse.parse_qs(query)

        def reply(obj, status=200):
            self.send(None, status, [("Content-Type", JSON)], (dumps(obj) + "\n").encode())

        try:
            if m == "GET" and path == "/_standin/health":
                self.send(None, 200, [("Content-Type", "text/plain")], b"ok")
            elif m == "GET" and path == "/_standin/requests":
                since = int(qs.get("since", ["0"])[-1])
                which = qs.get("server", ["main"])[-1]
                names = list(LISTENERS) if which == "all" else [which]
                if not set(names) <= set(st.counters):
                    raise ValueError("server must be main, second, tls or all")
                with st.lock:
                    recs = [r for n in names for r in st.counters[n].log if r["seq"] > since]
                    # &stats=1: one more line, {"stats": {...}}, taken at the same moment
                    stats = st.stats() if qs.get("stats", ["0"])[-1] == "1" else None
                if len(names) > 1:
                    recs.sort(key=lambda r: r["t"])
                if stats is not None:
                    recs.append({"stats": stats})
                # ensure_ascii (the default) keeps each line pure ASCII with no raw newline.
                out = "".join(dumps(r) + "\n" for r in recs).encode("ascii")
                self.send(None, 200, [("Content-Type", "application/x-ndjson")], out)
            elif m == "GET" and path == "/_standin/stats":
                with st.lock:
                    reply(st.stats())
            elif m == "GET" and path == "/_standin/faults":
                with st.lock:
                    reply([dict(f, headers=dict(f["headers"])) for f in st.faults])
            elif m == "POST" and path == "/_standin/reset":
                keep = qs.get("keep", [None])[-1]
                if keep not in (None, "objects"):
                    raise ValueError("keep must be objects")
                st.reset(keep_objects=keep == "objects")
                reply({"ok": True})
            elif m == "POST" and path == "/_standin/fault":
                obj = json.loads(body or b"null")
                faults = [parse_fault(f) for f in (obj if isinstance(obj, list) else [obj])]
                with st.lock:
                    before = st.stats()   # the counters just before these faults
                    st.faults.extend(faults)
                    n = len(st.faults)
                reply({"ok": True, "queued": len(faults), "pending": n, "stats": before})
            elif m == "POST" and path == "/_standin/seed":
                reply(st.seed(json.loads(body or b"null")))
            elif m == "POST" and path == "/_standin/quota":
                q = parse_quota(json.loads(body or b"null"))
                with st.lock:
                    st.quota = q
                reply({"ok": True})
            elif m == "GET" and path == "/_standin/quota":
                with st.lock:
                    reply(None if st.quota is None else dict(st.quota))
            elif path == "/_standin/oauth" and m in ("GET", "POST"):
                reply(st.oauth.control(json.loads(body) if m == "POST" and body else None, st.lock))
            elif m == "POST" and path == "/_standin/credentials":
                st.creds = Credentials.from_json(json.loads(body or b"null"))
                reply({"ok": True})
            elif m == "POST" and path == "/_standin/scopes":
                obj = json.loads(body or b"null")
                if not (isinstance(obj, dict) and all(isinstance(v, list) and all(isinstance(x, str) for x in v)
                                                      for v in obj.values())):
                    raise ValueError('scopes must be {"<token label>": ["scope", ...]}')
                spec_scopes()   # a missing spec fails here, not in a request
                with st.lock:
                    st.scopes = {k: set(v) for k, v in obj.items()}
                reply({"ok": True, "tokens": len(obj)})
            else:
                reply({"ok": False, "error": "no such control call: %s %s" % (m, path)}, 404)
        except ValueError as e:   # includes JSON errors; never echoes credentials
            reply({"ok": False, "error": str(e)}, 400)


# ----------------------------------------------------------------------------
# Scoped tokens and the user endpoint

_SPEC_SCOPES = None


def spec_scopes():
    """[(method, path regex, scope)] from the v2 spec's security sections, read
    once; plus the v1 user endpoint, whose scope the v1 spec gives."""
    global _SPEC_SCOPES
    if _SPEC_SCOPES is None:
        with open(SPEC_FILE) as f:
            spec = json.load(f)
        rows = [("GET", re.compile("^" + re.escape(USER_CURRENT) + "$"), "read:confluence-user")]
        for p, ops in spec["paths"].items():
            rx = re.compile("^" + re.escape(API) + re.sub(r"\\\{[^}]*\\\}", "[^/]+", re.escape(p)) + "$")
            for m, op in ops.items():
                for req in (op.get("security") or []) if isinstance(op, dict) else []:
                    for scope in req.get("oAuthDefinitions") or []:
                        rows.append((m.upper(), rx, scope))
        _SPEC_SCOPES = rows
    return _SPEC_SCOPES


def scopes_allow(scopes, method, path):
    """Does a scoped token with these scopes pass the gateway's check for
    this operation?  An operation the spec does not know is refused."""
    need = [scope for m, rx, scope in spec_scopes() if m == method and rx.match(path)]
    return bool(need) and any(n in scopes for n in need)


def current_user(auth):
    """GET /wiki/rest/api/user/current for the credentials with this label.
    The e-mail is the Basic user name; a bearer token's account has none shown
    (as for an account whose profile hides it)."""
    kind, _, rest = auth.partition(":")
    if kind == "basic":
        user, _, n = rest.rpartition(":")
        account = "557058:standin-" + n
        out = {"email": user, "publicName": "Stand-in User", "displayName": "Stand-in User"}
    else:
        account = "557058:standin-bearer-" + rest
        out = {"publicName": "Stand-in Bot", "displayName": "Stand-in Bot"}
    return dict({"type": "known", "accountId": account, "accountType": "atlassian",
                 "_links": {"self": "/wiki/rest/api/user?accountId=" + account}}, **out)


def phrase(status):
    name = status_name(status)
    return name[1] if name else "Status"


def oversize_chunks(total):
    """A valid JSON object of exactly `total` bytes, produced in pieces."""
    head, tail = b'{"id":"1","pad":"', b'"}'
    pad = total - len(head) - len(tail)

    def gen():
        yield head
        left = pad
        block = b"x" * 65536
        while left > 0:
            yield block[:min(left, len(block))]
            left -= len(block)
        yield tail
    return total, gen()


class StandinServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256

    def __init__(self, name, state, port, tls_ctx=None):
        self.name, self.state, self.tls_ctx = name, state, tls_ctx
        self.counters = state.counters[name]
        super().__init__(("127.0.0.1", port), Handler)
        scheme = "https" if tls_ctx else "http"
        self.base_url = "%s://127.0.0.1:%d/wiki" % (scheme, self.server_address[1])

    def server_bind(self):
        # HTTPServer.server_bind calls getfqdn(), a DNS lookup that can stall
        # for seconds on a machine without a resolver.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]
        if self.tls_ctx:
            self.socket = self.tls_ctx.wrap_socket(self.socket, server_side=True,
                                                   do_handshake_on_connect=False)

    def handle_error(self, request, client_address):
        if isinstance(sys.exc_info()[1], (OSError, ssl.SSLError)):
            return   # the client hung up or timed out
        super().handle_error(request, client_address)   # a stand-in bug: show it


def write_port_file(path, port):
    # Readers poll for the file: rename makes it appear complete or not at all.
    tmp = "%s.tmp.%d" % (path, os.getpid())
    with open(tmp, "w") as f:
        f.write("%d\n" % port)
    os.replace(tmp, path)


def main(argv=None):
    p = argparse.ArgumentParser(description="Confluence Cloud REST v2 stand-in for tests")
    p.add_argument("--port", type=int, default=0, help="port on 127.0.0.1; 0 picks a free one")
    p.add_argument("--port-file", help="write the port here once listening")
    p.add_argument("--extra-port-file", help="also listen on a second free port, written here")
    p.add_argument("--credentials", help='JSON file {"basic": {user: [tokens]}, "bearer": [tokens]}')
    p.add_argument("--tls-cert", help="serve the main port over TLS with this certificate (PEM)")
    p.add_argument("--tls-key", help="private key (PEM) for --tls-cert")
    p.add_argument("--tls-port-file", help="serve TLS on a third free port (written here) "
                   "instead of on the main port")
    p.add_argument("--seed", type=int, help="seed for the faults that have a rate")
    p.add_argument("--max-lifetime-s", type=float, default=7200, help="exit by itself after this")
    p.add_argument("--idle-timeout-s", type=float, default=300, help="close idle connections after this")
    p.add_argument("--verbose", action="store_true", help="log request lines to stderr")
    args = p.parse_args(argv)
    if bool(args.tls_cert) != bool(args.tls_key):
        p.error("--tls-cert and --tls-key go together")
    if args.tls_port_file and not args.tls_cert:
        p.error("--tls-port-file needs --tls-cert and --tls-key")

    try:
        if args.credentials:
            with open(args.credentials) as f:
                creds = Credentials.from_json(json.load(f))
        else:
            creds = Credentials.from_env()
    except OSError as e:
        print("standin: cannot read %s: %s" % (args.credentials, e.strerror), file=sys.stderr)
        return 2
    except ValueError as e:
        # Our messages and json's name a position, never the file's contents.
        print("standin: bad credentials: %s" % e, file=sys.stderr)
        return 2
    if creds.empty():
        print("standin: warning: no credentials configured; every /wiki request gets 401",
              file=sys.stderr)

    Handler.timeout = args.idle_timeout_s
    Handler.verbose = args.verbose
    tls_ctx = None
    if args.tls_cert:
        tls_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls_ctx.load_cert_chain(args.tls_cert, args.tls_key)

    state = State(creds, args.seed)
    servers = [StandinServer("main", state, args.port, None if args.tls_port_file else tls_ctx)]
    if args.extra_port_file:
        servers.append(StandinServer("second", state, 0))
    if args.tls_port_file:
        servers.append(StandinServer("tls", state, 0, tls_ctx))
    for s in servers:
        threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.2},
                         name="serve-" + s.name, daemon=True).start()

    # The other ports first: whoever waits for the main port file finds them all.
    by_name = {s.name: s for s in servers}
    if args.extra_port_file:
        write_port_file(args.extra_port_file, by_name["second"].server_address[1])
    if args.tls_port_file:
        write_port_file(args.tls_port_file, by_name["tls"].server_address[1])
    if args.port_file:
        write_port_file(args.port_file, servers[0].server_address[1])
    try:
        print("listening on 127.0.0.1:%d" % servers[0].server_address[1], flush=True)
        if "second" in by_name:
            print("second listener on 127.0.0.1:%d" % by_name["second"].server_address[1], flush=True)
        if "tls" in by_name:
            print("TLS listener on 127.0.0.1:%d" % by_name["tls"].server_address[1], flush=True)
    except OSError:
        pass   # nobody reads stdout; keep serving

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    deadline = time.monotonic() + args.max_lifetime_s
    # Short waits so that signal handlers run promptly in the main thread.
    while not stop.is_set() and time.monotonic() < deadline:
        stop.wait(0.2)
    if not stop.is_set():
        print("standin: --max-lifetime-s reached, exiting", file=sys.stderr, flush=True)
    for s in servers:
        s.shutdown()
        s.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
