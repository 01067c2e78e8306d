#!/usr/bin/env python3
"""Checks a webhook verifier command against the conformance corpus (conformance/cases/*.json).

The verifier must follow the `hookguard verify` command-line shape (see conformance/README.md):

    python3 conformance/run.py -- target/debug/hookguard verify
    python3 conformance/run.py --provider standard --skip-tag payload --skip-tag policy -- ./my-verifier

Python 3 standard library only. Prints one line per failing case and a summary; exits 0 when
every selected case passes, 1 when any fails, 2 on a usage error.
"""

import argparse
import base64
import concurrent.futures
import glob
import json
import os
import subprocess
import sys
import tempfile

FORMAT = "hookguard-conformance/1"
HERE = os.path.dirname(os.path.abspath(__file__))


def parse_args(argv):
    if "--" not in argv:
        print("usage: run.py [options] -- VERIFIER [ARGS...]   (e.g. -- target/debug/hookguard verify)",
              file=sys.stderr)
        sys.exit(2)
    split = argv.index("--")
    p = argparse.ArgumentParser(prog="run.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", default=os.path.join(HERE, "cases"), help="directory of case files")
    p.add_argument("--provider", action="append", default=[], help="only this provider (repeatable)")
    p.add_argument("--skip-tag", action="append", default=[], help="skip cases with this tag (repeatable)")
    p.add_argument("--only-outcome", action="store_true",
                   help="check outcome, code and status only (not id, type, dedupe_key)")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 2, help="cases run at once")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds per case")
    p.add_argument("-v", "--verbose", action="store_true", help="print every case")
    args = p.parse_args(argv[:split])
    args.command = argv[split + 1:]
    if not args.command:
        p.error("no verifier command after --")
    return args


def load(args):
    files = sorted(glob.glob(os.path.join(args.cases, "*.json")))
    if not files:
        print("run.py: no case files in %s" % args.cases, file=sys.stderr)
        sys.exit(2)
    cases = []
    for path in files:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
        if doc.get("format") != FORMAT:
            print("run.py: %s: format %r, expected %r" % (path, doc.get("format"), FORMAT), file=sys.stderr)
            sys.exit(2)
        provider = doc["provider"]
        if args.provider and provider not in args.provider:
            continue
        for case in doc["cases"]:
            if set(case.get("tags", [])) & set(args.skip_tag):
                continue
            cases.append((provider, case))
    return cases


def argv_for(command, provider, case, body_path):
    """The command line of `hookguard verify` for one case (long options as --name=value)."""
    cfg, req = case["config"], case["request"]
    argv = list(command) + ["--provider=" + provider]
    argv += ["--secret=" + s for s in cfg.get("secrets", [])]
    auth = cfg.get("auth_header")
    if auth:
        argv += ["--auth-header=%s: %s" % (auth["name"], v) for v in auth["values"]]
    argv += ["--header=%s: %s" % (name, value) for name, value in req["headers"]]
    argv += ["--uri=" + req["target"], "--now=%d" % req["now"], "--file=" + body_path]
    if req.get("method", "POST") != "POST":
        argv.append("--method=" + req["method"])
    if "tolerance" in cfg:
        argv.append("--tolerance=%d" % cfg["tolerance"])
    if "max_body" in cfg:
        argv.append("--max-body=%d" % cfg["max_body"])
    if "dedupe_key" in cfg:
        argv.append("--dedupe-key=" + cfg["dedupe_key"])
    return argv


def outcome(proc):
    """What the verifier said, in the corpus's terms."""
    lines = [l for l in proc.stdout.decode("utf-8", "replace").splitlines() if l.strip()]
    out = None
    if lines:
        try:
            out = json.loads(lines[-1])
        except ValueError:
            out = None
    if proc.returncode == 0 and isinstance(out, dict):
        if "challenge" in out:
            return {"outcome": "challenge", "value": out["challenge"]}
        return {"outcome": "accept", "id": out.get("id"), "type": out.get("type"),
                "dedupe_key": out.get("dedupe_key")}
    if proc.returncode == 1 and isinstance(out, dict) and "error" in out:
        got = {"outcome": "reject", "code": out["error"]}
        if "status" in out:
            got["status"] = out["status"]
        return got
    if proc.returncode == 2:
        return {"outcome": "config_error"}
    return {"outcome": "unexpected exit %s" % proc.returncode,
            "stdout": proc.stdout.decode("utf-8", "replace")[-300:],
            "stderr": proc.stderr.decode("utf-8", "replace")[-300:]}


def compare(expect, got, only_outcome):
    """None when `got` satisfies `expect`, else the reason."""
    if got["outcome"] != expect["outcome"]:
        return "expected %s, got %s" % (json.dumps(expect), json.dumps(got))
    kind = expect["outcome"]
    fields = []
    if kind == "reject":
        fields = ["code", "status"]
    elif kind == "challenge":
        fields = ["value"]
    elif kind == "accept" and not only_outcome:
        fields = ["id", "type", "dedupe_key"]
    for f in fields:
        if f not in expect:
            continue
        if f == "status" and "status" not in got:
            continue  # a verifier that does not print the status is checked on the code only
        if got.get(f) != expect[f]:
            return "%s: expected %s, got %s" % (f, json.dumps(expect[f]), json.dumps(got.get(f)))
    return None


def run_case(args, env, tmp, index, provider, case):
    body = base64.b64decode(case["request"]["body_base64"])
    body_path = os.path.join(tmp, "body-%d" % index)
    with open(body_path, "wb") as f:
        f.write(body)
    argv = argv_for(args.command, provider, case, body_path)
    try:
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              env=env, timeout=args.timeout)
    except FileNotFoundError:
        print("run.py: cannot run %r" % argv[0], file=sys.stderr)
        sys.exit(2)
    except subprocess.TimeoutExpired:
        return "timed out after %.0f s" % args.timeout
    return compare(case["expect"], outcome(proc), args.only_outcome)


def main(argv):
    args = parse_args(argv)
    cases = load(args)
    # A verifier must see only what the case gives it (hookguard reads HOOKGUARD_SECRET).
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOOKGUARD_") and k != "RUST_LOG"}
    failures = []
    per_provider = {}
    with tempfile.TemporaryDirectory(prefix="hookguard-conformance-") as tmp:
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            futures = [pool.submit(run_case, args, env, tmp, i, p, c) for i, (p, c) in enumerate(cases)]
            for (provider, case), fut in zip(cases, futures):
                why = fut.result()
                passed, total = per_provider.get(provider, (0, 0))
                per_provider[provider] = (passed + (why is None), total + 1)
                label = "%s/%s" % (provider, case["name"])
                if why is not None:
                    failures.append(label)
                    print("FAIL %s: %s" % (label, why))
                elif args.verbose:
                    print("ok   %s" % label)
    summary = ", ".join("%s %d/%d" % (p, ok, n) for p, (ok, n) in sorted(per_provider.items()))
    print("conformance: %d cases, %d passed, %d failed (%s) against: %s"
          % (len(cases), len(cases) - len(failures), len(failures), summary, " ".join(args.command)))
    if failures:
        print("conformance: FAILED", file=sys.stderr)
        return 1
    print("conformance: PASSED")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
