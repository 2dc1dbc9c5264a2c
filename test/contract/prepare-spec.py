#!/usr/bin/env python3
"""Make the copy of Atlassian's Confluence REST API v2 spec that Prism serves.

    python3 test/contract/prepare-spec.py [--in SPEC] [--out FILE]
    python3 test/contract/prepare-spec.py --check FILE
    python3 test/contract/prepare-spec.py --selftest

Reads the committed spec (test/contract/openapi-v2.v3.json, see SOURCE.md),
checks its sha256, and writes test/contract/build/openapi.prism.json with
exactly two adjustments (README "Tests", the contract test):

 1. Every path gets the prefix /wiki/api/v2.  The spec's only server is
    https://{your-domain}/wiki/api/v2, and Prism ignores the path part of
    `servers`, so without this it would serve /pages where Confluence (and
    confluence_fdw) use /wiki/api/v2/pages.

 2. The eight *BodyWrite schemas (PageBodyWrite, PageNestedBodyWrite, ...
    CustomContentNestedBodyWrite) get "additionalProperties": false.  Every
    request `body` is a oneOf of the flat form {representation, value} and the
    nested form {storage: {...}}; neither forbids other keys, so any object
    matches both and oneOf refuses every valid body.  Closed, they match one
    form each.

Nothing else changes; after writing, the output is read back and compared with
the input key by key, and any difference other than those two is an error
(exit 1).  `--check FILE` does only that comparison; `--selftest` shows that
the comparison refuses tampered copies.  Output is deterministic:
same input, same bytes (key order kept, no timestamps).  Python 3 stdlib only.
"""
import argparse
import hashlib
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_IN = os.path.join(HERE, "openapi-v2.v3.json")
DEFAULT_OUT = os.path.join(HERE, "build", "openapi.prism.json")
# The committed copy (SOURCE.md); a changed spec must be a deliberate update
# of this value too.
EXPECTED_SHA256 = "c4bd1ed570f21cd6dee2360d9cda0d5aa09933233491c8286d60cc4fa16c5df5"
PREFIX = "/wiki/api/v2"
BODY_WRITE = (
    "PageBodyWrite", "PageNestedBodyWrite",
    "BlogPostBodyWrite", "BlogPostNestedBodyWrite",
    "CommentBodyWrite", "CommentNestedBodyWrite",
    "CustomContentBodyWrite", "CustomContentNestedBodyWrite",
)


class SpecError(Exception):
    pass


def fail(msg):
    raise SpecError(msg)


def adjust(spec):
    """Return a new spec with the two adjustments (the input is not changed)."""
    out = dict(spec)
    paths = spec["paths"]
    for p in paths:
        if not p.startswith("/") or p.startswith(PREFIX + "/"):
            fail(f"unexpected path {p!r} (already prefixed, or not starting with /)")
    out["paths"] = {PREFIX + p: v for p, v in paths.items()}
    schemas = dict(spec["components"]["schemas"])
    found = sorted(k for k in schemas if k.endswith("BodyWrite"))
    if found != sorted(BODY_WRITE):
        fail(f"the *BodyWrite schemas are {found}, expected {sorted(BODY_WRITE)}")
    for name in BODY_WRITE:
        s = schemas[name]
        if s.get("type") != "object" or "additionalProperties" in s:
            fail(f"schema {name} is not a plain object schema any more: {s}")
        s = dict(s)
        s["additionalProperties"] = False
        schemas[name] = s
    out["components"] = dict(spec["components"], schemas=schemas)
    return out


def differences(a, b, where=""):
    """Every difference between two JSON values, as (path, kind) tuples."""
    if isinstance(a, dict) and isinstance(b, dict):
        diffs = []
        if list(a) != list(b) and set(a) == set(b):
            diffs.append((where, "key order"))
        for k in a:
            if k not in b:
                diffs.append((f"{where}/{k}", "removed"))
            else:
                diffs.extend(differences(a[k], b[k], f"{where}/{k}"))
        for k in b:
            if k not in a:
                diffs.append((f"{where}/{k}", "added"))
        return diffs
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [(where, "length")]
        diffs = []
        for i, (x, y) in enumerate(zip(a, b)):
            diffs.extend(differences(x, y, f"{where}/{i}"))
        return diffs
    if type(a) is not type(b) or a != b:
        return [(where, "changed")]
    return []


def verify(orig, adj):
    """Check that adj is orig plus exactly the two adjustments; return a summary."""
    # 1. paths: same operations, same order, each under PREFIX.
    op, ap = orig["paths"], adj["paths"]
    if list(ap) != [PREFIX + p for p in op]:
        fail("the adjusted paths are not exactly the original ones with the prefix, in order")
    for p in op:
        d = differences(op[p], ap[PREFIX + p], PREFIX + p)
        if d:
            fail(f"path item {p} changed: {d[:5]}")
    # 2. everything outside /paths: only the eight additionalProperties added.
    rest_o = {k: v for k, v in orig.items() if k != "paths"}
    rest_a = {k: v for k, v in adj.items() if k != "paths"}
    if list(orig) != list(adj):
        fail(f"top-level keys differ: {list(orig)} vs {list(adj)}")
    d = sorted(differences(rest_o, rest_a))
    want = sorted((f"/components/schemas/{n}/additionalProperties", "added") for n in BODY_WRITE)
    if d != want:
        fail(f"unexpected differences outside /paths: {[x for x in d if x not in want] or 'missing: ' + str([x for x in want if x not in d])}")
    for n in BODY_WRITE:
        if adj["components"]["schemas"][n]["additionalProperties"] is not False:
            fail(f"{n}.additionalProperties is not false")
    nops = sum(1 for v in op.values() for m in v if m in
               ("get", "put", "post", "delete", "patch", "head", "options", "trace"))
    return (f"{len(op)} paths ({nops} operations) prefixed with {PREFIX}; "
            f"additionalProperties: false on {len(BODY_WRITE)} schemas; nothing else differs")


def load(path):
    with open(path, "rb") as f:
        raw = f.read()
    return raw, json.loads(raw)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--in", dest="inp", default=DEFAULT_IN)
    ap.add_argument("--out", default=DEFAULT_OUT)
    ap.add_argument("--check", metavar="FILE", help="only verify an adjusted spec against the input")
    ap.add_argument("--selftest", action="store_true",
                    help="check that the verification refuses tampered copies")
    args = ap.parse_args()

    raw, orig = load(args.inp)
    digest = hashlib.sha256(raw).hexdigest()
    if digest != EXPECTED_SHA256:
        fail(f"{args.inp}: sha256 {digest}, expected {EXPECTED_SHA256} (see SOURCE.md)")

    if args.selftest:
        print(f"prepare-spec: selftest: {selftest(orig)}")
        return
    if args.check:
        _, adj = load(args.check)
        print(f"prepare-spec: {args.check}: {verify(orig, adj)}")
        return

    adj = adjust(orig)
    data = json.dumps(adj, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    tmp = args.out + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, args.out)
    # Verify what is on disk, not the object in memory.
    _, back = load(args.out)
    summary = verify(orig, back)
    print(f"prepare-spec: wrote {args.out} (sha256 {hashlib.sha256(data).hexdigest()[:16]}...): {summary}")


def selftest(orig):
    """verify() accepts the real adjustment and refuses near misses."""
    import copy
    good = adjust(orig)
    verify(orig, good)

    def prefixed(p):
        return good["paths"][PREFIX + p]

    def schema(s, name):
        return s["components"]["schemas"][name]

    tampered = {
        "a path left without the prefix":
            lambda s: s.__setitem__("paths", {("/pages" if k == PREFIX + "/pages" else k): v
                                              for k, v in s["paths"].items()}),
        "an operation changed":
            lambda s: s["paths"][PREFIX + "/pages"]["post"].__setitem__("operationId", "x"),
        "one *BodyWrite schema left open":
            lambda s: schema(s, "CommentBodyWrite").pop("additionalProperties"),
        "additionalProperties true":
            lambda s: schema(s, "PageBodyWrite").__setitem__("additionalProperties", True),
        "another schema closed":
            lambda s: schema(s, "PageSingle").__setitem__("additionalProperties", False),
        "servers changed":
            lambda s: s.__setitem__("servers", [{"url": "http://127.0.0.1"}]),
        "a request body changed":
            lambda s: s["components"]["requestBodies"]["PageCreateRequest"].__setitem__("required", False),
    }
    assert prefixed("/pages") is orig["paths"]["/pages"]
    for what, change in tampered.items():
        bad = copy.deepcopy(good)
        change(bad)
        try:
            verify(orig, bad)
        except SpecError:
            continue
        raise SpecError(f"selftest: verify() accepted a spec with {what}")
    return f"verify() refuses all {len(tampered)} tampered copies"


if __name__ == "__main__":
    try:
        main()
    except SpecError as e:
        print(f"prepare-spec: {e}", file=sys.stderr)
        sys.exit(1)
