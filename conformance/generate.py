#!/usr/bin/env python3
"""Writes the conformance corpus, conformance/cases/<provider>.json.

Python 3 standard library only. Every signature here is computed independently of hookguard:
HMAC with `hmac`/`hashlib`, Ed25519 with the RFC 8032 reference algorithm below (checked
against RFC 8032 test 1 and the published Standard Webhooks `v1a` vector before anything is
written). Published vectors are copied verbatim, with their source.

    python3 conformance/generate.py          # rewrite the case files
    python3 conformance/generate.py --check  # exit 1 if the files differ from what it would write

The case files are the corpus; this script is how they were made. Edit it, run it, and commit
both (`cargo test -p hookguard-core --test conformance_corpus` and `conformance/run.py` then
check hookguard against the new cases).
"""

import base64
import hashlib
import hmac
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
FORMAT = "hookguard-conformance/1"

# --- Ed25519, RFC 8032 section 6 (reference; slow, fine for a handful of signatures) ---------

P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493
D = -121665 * pow(121666, P - 2, P) % P
SQRT_M1 = pow(2, (P - 1) // 4, P)


def _inv(x):
    return pow(x, P - 2, P)


def _add(a, b):
    x1, y1, z1, t1 = a
    x2, y2, z2, t2 = b
    aa = (y1 - x1) * (y2 - x2) % P
    bb = (y1 + x1) * (y2 + x2) % P
    cc = t1 * 2 * D * t2 % P
    dd = z1 * 2 * z2 % P
    e, f, g, h = bb - aa, dd - cc, dd + cc, bb + aa
    return (e * f % P, g * h % P, f * g % P, e * h % P)


def _mul(s, pt):
    q = (0, 1, 1, 0)
    while s > 0:
        if s & 1:
            q = _add(q, pt)
        pt = _add(pt, pt)
        s >>= 1
    return q


def _recover_x(y, sign):
    if y >= P:
        return None
    x2 = (y * y - 1) * _inv(D * y * y + 1)
    if x2 == 0:
        return None if sign else 0
    x = pow(x2, (P + 3) // 8, P)
    if (x * x - x2) % P != 0:
        x = x * SQRT_M1 % P
    if (x * x - x2) % P != 0:
        return None
    if (x & 1) != sign:
        x = P - x
    return x


_GY = 4 * _inv(5) % P
_GX = _recover_x(_GY, 0)
G = (_GX, _GY, 1, _GX * _GY % P)


def _compress(pt):
    zinv = _inv(pt[2])
    x, y = pt[0] * zinv % P, pt[1] * zinv % P
    return int.to_bytes(y | ((x & 1) << 255), 32, "little")


def _sha512_int(*parts):
    return int.from_bytes(hashlib.sha512(b"".join(parts)).digest(), "little")


def _expand(seed):
    h = hashlib.sha512(seed).digest()
    a = int.from_bytes(h[:32], "little")
    a &= (1 << 254) - 8
    a |= 1 << 254
    return a, h[32:]


def ed25519_public(seed):
    a, _ = _expand(seed)
    return _compress(_mul(a, G))


def ed25519_sign(seed, msg):
    a, prefix = _expand(seed)
    public = _compress(_mul(a, G))
    r = _sha512_int(prefix, msg) % L
    big_r = _compress(_mul(r, G))
    s = (r + _sha512_int(big_r, public, msg) * a) % L
    return big_r + int.to_bytes(s, 32, "little")


# --- helpers ---------------------------------------------------------------------------------


def b64(b):
    return base64.b64encode(b).decode()


def hmac256(key, *parts):
    return hmac.new(key, b"".join(parts), hashlib.sha256).digest()


def hmac1(key, *parts):
    return hmac.new(key, b"".join(parts), hashlib.sha1).digest()


def body_digest(body):
    """hookguard's dedupe key for senders without a signed id: 128 bits of SHA-256."""
    return "sha256:" + hashlib.sha256(body).hexdigest()[:32]


def accept(id=None, type=None, dedupe_key=None):
    return {"outcome": "accept", "id": id, "type": type, "dedupe_key": dedupe_key}


def reject(code, status):
    return {"outcome": "reject", "code": code, "status": status}


def challenge(value):
    return {"outcome": "challenge", "value": value}


CONFIG_ERROR = {"outcome": "config_error"}

STATUS = {
    "missing_signature": 401,
    "signature_mismatch": 401,
    "unauthorized": 401,
    "malformed_signature": 400,
    "missing_header": 400,
    "repeated_header": 400,
    "malformed_timestamp": 400,
    "timestamp_out_of_window": 503,
    "too_many_signatures": 400,
    "invalid_payload": 400,
    "challenge_missing": 400,
    "challenge_too_long": 400,
    "body_too_large": 503,
    "method_not_allowed": 405,
}


def rej(code):
    return reject(code, STATUS[code])


class Corpus:
    def __init__(self, provider, about):
        self.provider = provider
        self.about = about
        self.cases = []

    def add(self, name, description, *, secrets, headers, body, now, expect, tags,
            target="/webhooks", method="POST", source=None, auth_header=None, **config):
        assert all(c["name"] != name for c in self.cases), name
        cfg = {"secrets": list(secrets)}
        if auth_header:
            cfg["auth_header"] = {"name": auth_header[0], "values": list(auth_header[1])}
        for k in ("tolerance", "max_body", "dedupe_key"):
            if k in config:
                cfg[k] = config.pop(k)
        assert not config, config
        case = {"name": name, "description": description}
        if source:
            case["source"] = source
        case["tags"] = list(tags)
        case["config"] = cfg
        case["request"] = {
            "method": method,
            "target": target,
            "headers": [[k, v] for k, v in headers],
            "body_base64": b64(body),
            "now": now,
        }
        case["expect"] = expect
        self.cases.append(case)

    def document(self):
        return {"format": FORMAT, "provider": self.provider, "about": self.about, "cases": self.cases}


# --- Standard Webhooks -----------------------------------------------------------------------


def standard():
    c = Corpus(
        "standard",
        "Standard Webhooks: webhook-id, webhook-timestamp, webhook-signature = space-separated "
        "`v1,<base64 HMAC-SHA256>` and `v1a,<base64 Ed25519>` entries over \"{id}.{timestamp}.{body}\". "
        "whsec_ secrets are base64-decoded to the HMAC key; whpk_ is a base64 Ed25519 public key. "
        "±300 s. Deduplicated on webhook-id.",
    )
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    key = base64.b64decode(secret[6:])
    mid, ts, body = "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}'
    ref_src = "standard-webhooks/standard-webhooks libraries (python tests/test_webhooks.py, JS tests)"

    def v1(k, i=mid, t=ts, b=body):
        return "v1," + b64(hmac256(k, i.encode(), b".", str(t).encode(), b".", b))

    sig = v1(key)
    assert sig == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=", sig

    def h(s, i=mid, t=ts):
        return [("webhook-id", i), ("webhook-timestamp", str(t)), ("webhook-signature", s)]

    ok = accept(mid, None, "standard:" + mid)
    c.add("v1-reference-vector", "The reference libraries' vector.", source=ref_src,
          secrets=[secret], headers=h(sig), body=body, now=ts, expect=ok, tags=["vector"])
    c.add("v1-reference-near-miss", "The reference tests' signature with its last byte changed.", source=ref_src,
          secrets=[secret], headers=h("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OA="), body=body, now=ts,
          expect=rej("signature_mismatch"), tags=["vector"])
    for name, s, desc in [
        ("v1-empty", "v1,", "`v1,` with nothing after the comma verified anything in two reference libraries."),
        ("v1-bare-label", "v1", "A label without a signature."),
        ("header-empty", "", "An empty signature header."),
        ("v1-short", "v1,g0hM9SsE", "A truncated signature is never a candidate."),
        ("v1-not-base64", "v1,!!!!not-base64!!!!g0hM9SsE+OTPJTGt/tmIKtS", "44 characters that are not base64."),
        ("garbage", "garbage", "No `v1,` entry at all."),
        ("unknown-version-only", "v2," + sig[3:], "A valid MAC under an unknown version label."),
    ]:
        c.add(name, desc + " Malformed: nothing to check.", secrets=[secret], headers=h(s), body=body, now=ts,
              expect=rej("malformed_signature"), tags=["malformed"])
    svix = [("svix-id", mid), ("svix-timestamp", str(ts)), ("svix-signature", sig)]
    c.add("svix-header-names", "Svix's default names (svix-id, svix-timestamp, svix-signature), which Svix and "
          "the APIs built on it send unless their customer paid for the webhook- prefix; Svix's libraries accept "
          "both. Read when none of the webhook- headers is present; deduplicated on svix-id.",
          source="docs.svix.com/receiving/verifying-payloads/how-manual", secrets=[secret], headers=svix,
          body=body, now=ts, expect=ok, tags=["vector", "headers", "policy"])
    c.add("svix-names-never-mixed", "A webhook-id with Svix's timestamp and signature: the webhook- names are "
          "read alone, so the timestamp is missing.", secrets=[secret], headers=[("webhook-id", mid)] + svix[1:],
          body=body, now=ts, expect=rej("missing_header"), tags=["headers"])
    c.add("junk-beside-valid", "Junk entries beside a valid one: any valid entry accepts.",
          secrets=[secret], headers=h("v1,Zm9v v1a,xyz v2,abc " + sig), body=body, now=ts, expect=ok,
          tags=["junk"])
    c.add("valid-beside-junk", "The valid entry first, junk after it.",
          secrets=[secret], headers=h(sig + " v1, v1,Zm9v"), body=body, now=ts, expect=ok, tags=["junk"])
    c.add("too-many-signatures", "17 entries (the bound is 16, hookguard's own: no sender documents one), a "
          "valid one last: refused before any MAC.",
          secrets=[secret], headers=h(" ".join(["v1,Zm9v"] * 16 + [sig])), body=body, now=ts,
          expect=rej("too_many_signatures"), tags=["malformed", "bounds", "policy"])
    old = "whsec_" + b64(b"an-older-secret-0123456789abcdef")
    other = "whsec_" + b64(b"a-stranger-secret-0123456789abcd")
    c.add("rotation-new-signs", "Two secrets configured during a rotation; signed with the current one.",
          secrets=[old, secret], headers=h(sig), body=body, now=ts, expect=ok, tags=["rotation"])
    c.add("rotation-old-signs", "Two secrets configured; signed with the older one.",
          secrets=[old, secret], headers=h(v1(base64.b64decode(old[6:]))), body=body, now=ts, expect=ok,
          tags=["rotation"])
    c.add("rotation-both-entries", "The sender signs with old and new (two entries); only the new is configured.",
          secrets=[secret], headers=h(v1(base64.b64decode(other[6:])) + " " + sig), body=body, now=ts, expect=ok,
          tags=["rotation"])
    c.add("unknown-secret", "Signed with a secret the receiver does not hold.",
          secrets=[old, secret], headers=h(v1(base64.b64decode(other[6:]))), body=body, now=ts,
          expect=rej("signature_mismatch"), tags=["rotation"])
    for off, expect in [(300, ok), (-300, ok), (301, rej("timestamp_out_of_window")),
                        (-301, rej("timestamp_out_of_window"))]:
        name = "window-%s%d" % ("plus" if off > 0 else "minus", abs(off))
        c.add(name, "now = timestamp %+d s (the window is ±300 s, inclusive)." % off,
              secrets=[secret], headers=h(sig), body=body, now=ts + off, expect=expect, tags=["window"])
    c.add("window-forged-stale", "Signed with a secret the receiver does not hold, an hour before now: forged, whatever its time (the signature is checked before the window; only an authentic delivery is out of window).", secrets=[secret], headers=h(v1(base64.b64decode(other[6:]))),
          body=body, now=ts + 3600, expect=rej("signature_mismatch"), tags=["window", "tamper"])
    c.add("tampered-body", "The body changed after signing.", secrets=[secret], headers=h(sig),
          body=b'{"test": 2432232315}', now=ts, expect=rej("signature_mismatch"), tags=["tamper"])
    c.add("tampered-id", "The id header changed after signing (it is signed content).", secrets=[secret],
          headers=h(sig, i="msg_p5jXN8AQM9LWM0D4loKWxJeK"), body=body, now=ts, expect=rej("signature_mismatch"),
          tags=["tamper"])
    c.add("missing-id", "No webhook-id header.", secrets=[secret], headers=h(sig)[1:], body=body, now=ts,
          expect=rej("missing_header"), tags=["headers"])
    c.add("missing-timestamp", "No webhook-timestamp header.", secrets=[secret], headers=[h(sig)[0], h(sig)[2]],
          body=body, now=ts, expect=rej("missing_header"), tags=["headers"])
    c.add("missing-signature", "No webhook-signature header.", secrets=[secret], headers=h(sig)[:2], body=body,
          now=ts, expect=rej("missing_signature"), tags=["headers"])
    c.add("timestamp-not-digits", "A timestamp that is not unix seconds (integer digits; the reference Python "
          "library reads it as a float and accepts this one).", secrets=[secret],
          headers=[("webhook-id", mid), ("webhook-timestamp", "1614265330.5"), ("webhook-signature", sig)],
          body=body, now=ts, expect=rej("malformed_timestamp"), tags=["headers", "policy"])
    for name, first, second in [("signature-header-twice-valid-first", sig, "v1,Zm9v"),
                                ("signature-header-twice-junk-first", "v1,Zm9v", sig)]:
        c.add(name, "The signature header given twice (%s): which one the sender signed is ambiguous; refused "
              "whatever the order." % ("the valid one first" if first == sig else "junk first"),
              secrets=[secret], headers=h(first) + [("webhook-signature", second)], body=body, now=ts,
              expect=rej("repeated_header"), tags=["headers", "policy"])
    c.add("id-header-twice", "webhook-id given twice (the signed one first): which id was signed is ambiguous.",
          secrets=[secret], headers=h(sig) + [("webhook-id", "msg_other")], body=body, now=ts,
          expect=rej("repeated_header"), tags=["headers", "policy"])
    c.add("tolerance-60-edge", "config.tolerance 60: now = timestamp + 60 s still verifies.", secrets=[secret],
          headers=h(sig), body=body, now=ts + 60, tolerance=60, expect=ok, tags=["window"])
    c.add("tolerance-60-past", "config.tolerance 60: now = timestamp + 61 s is outside.", secrets=[secret],
          headers=h(sig), body=body, now=ts + 61, tolerance=60, expect=rej("timestamp_out_of_window"),
          tags=["window"])
    raw = b'{"bin":"\xff\xfe\x00\x80"}\xc3('
    c.add("non-utf8-body", "A body that is not UTF-8 (nor JSON): signed and verified as raw bytes.",
          secrets=[secret], headers=h(v1(key, b=raw)), body=raw, now=ts, expect=ok, tags=["non-utf8"])
    c.add("non-utf8-body-lossy-signature", "Signed over the lossy UTF-8 conversion of the body: must not verify.",
          secrets=[secret], headers=h(v1(key, b=raw.decode("utf-8", "replace").encode())), body=raw, now=ts,
          expect=rej("signature_mismatch"), tags=["non-utf8"])
    c.add("json-type", "The payload's `type` is the event type.", secrets=[secret],
          headers=h(v1(key, b=b'{"type":"invoice.paid","data":{}}')), body=b'{"type":"invoice.paid","data":{}}',
          now=ts, expect=accept(mid, "invoice.paid", "standard:" + mid), tags=["payload"])
    c.add("secret-not-base64", "A whsec_ secret that is not base64 is a configuration error.",
          secrets=["whsec_%%not-base64%%"], headers=h(sig), body=body, now=ts, expect=CONFIG_ERROR,
          tags=["config"])

    # v1a: Ed25519.
    seed = base64.b64decode("VEVTVFNJR05JTkdLRVlET05PVFVTRVRISVNGT1JBTlk=")
    public = ed25519_public(seed)
    assert b64(public) == "ZlN4eg7dSSqi0moX9hQUk3orrOouK3QVQSlJa248c/g="
    whpk = "whpk_" + b64(public)

    def v1a(sd, i=mid, t=ts, b=body):
        return "v1a," + b64(ed25519_sign(sd, i.encode() + b"." + str(t).encode() + b"." + b))

    sig_a = v1a(seed)
    assert sig_a == ("v1a,tQ9V2XOqn7jL/DQenEFpqIugdBVtiMmER5mhSkXBNwM0mkATuDe6KYYUuxqtaiHeYGb7KaaBRd"
                     "M5WqyeFiL8Ag=="), sig_a
    v1a_src = ("Standard Webhooks Ed25519 vector (seed VEVTVFNJR05JTkdLRVlET05PVFVTRVRISVNGT1JBTlk=), "
               "hookguard issue 15; reproduced by this generator's own RFC 8032 Ed25519")
    seed2, seed3 = hashlib.sha256(b"second-seed").digest(), hashlib.sha256(b"stranger-seed").digest()
    whpk2 = "whpk_" + b64(ed25519_public(seed2))
    c.add("v1a-vector", "The published Ed25519 vector, verified with the whpk_ public key.", source=v1a_src,
          secrets=[whpk], headers=h(sig_a), body=body, now=ts, expect=ok, tags=["vector", "v1a"])
    c.add("v1a-and-v1-public-key", "A v1 and a v1a entry; only the public key is configured.",
          secrets=[whpk], headers=h(sig + " " + sig_a), body=body, now=ts, expect=ok, tags=["v1a", "junk"])
    c.add("v1a-and-v1-hmac-secret", "A v1a and a v1 entry; only the HMAC secret is configured.",
          secrets=[secret], headers=h(sig_a + " " + sig), body=body, now=ts, expect=ok, tags=["v1a", "junk"])
    c.add("v1a-and-v1-both-keys", "Both kinds of key configured, both entries present.",
          secrets=[secret, whpk], headers=h(sig_a + " " + sig), body=body, now=ts, expect=ok, tags=["v1a"])
    c.add("v1a-with-hmac-secret-only", "A v1a entry is never checked against an HMAC secret.",
          secrets=[secret], headers=h(sig_a), body=body, now=ts, expect=rej("signature_mismatch"),
          tags=["v1a", "key-kind"])
    c.add("v1-with-public-key-only", "A v1 entry is never checked against an Ed25519 public key.",
          secrets=[whpk], headers=h(sig), body=body, now=ts, expect=rej("signature_mismatch"),
          tags=["v1a", "key-kind"])
    c.add("v1-keyed-with-public-key-bytes",
          "A v1 HMAC keyed with the (public!) Ed25519 key bytes: a verifier that used a whpk_ key as an "
          "HMAC secret would accept this forgery.",
          secrets=[whpk], headers=h(v1(public)), body=body, now=ts, expect=rej("signature_mismatch"),
          tags=["v1a", "key-kind"])
    c.add("v1a-rotation", "Two public keys configured; signed with the second.",
          secrets=[whpk, whpk2], headers=h(v1a(seed2)), body=body, now=ts, expect=ok, tags=["v1a", "rotation"])
    c.add("v1a-unknown-key", "Signed with a key whose public half is not configured.",
          secrets=[whpk, whpk2], headers=h(v1a(seed3)), body=body, now=ts, expect=rej("signature_mismatch"),
          tags=["v1a", "rotation"])
    c.add("v1a-junk-beside-valid", "Junk and a stranger's signature beside the valid v1a entry.",
          secrets=[whpk], headers=h("v1a, v1a,AAAA " + v1a(seed3) + " " + sig_a), body=body, now=ts, expect=ok,
          tags=["v1a", "junk"])
    strangers = [v1a(hashlib.sha256(b"stranger-%d" % i).digest()) for i in range(4)]
    c.add("v1a-four-entries", "Three strangers' signatures and the valid one: four v1a entries are checked.",
          secrets=[whpk], headers=h(" ".join(strangers[:3] + [sig_a])), body=body, now=ts, expect=ok,
          tags=["v1a", "bounds"])
    c.add("v1a-five-entries", "Five well-formed v1a entries: refused before any Ed25519 check (each costs a "
          "verification and a SHA-512 of the body per public key; hookguard checks at most four).",
          secrets=[whpk], headers=h(" ".join(strangers + [sig_a])), body=body, now=ts,
          expect=rej("too_many_signatures"), tags=["v1a", "bounds", "policy"])
    for name, s, desc in [
        ("v1a-empty", "v1a,", "`v1a,` with nothing after the comma."),
        ("v1a-short", sig_a[:60], "A truncated Ed25519 signature."),
        ("v1a-not-base64", "v1a," + "!" * 88, "88 characters that are not base64."),
        ("v1a-signature-as-v1", "v1," + sig_a[4:], "An Ed25519 signature under the v1 label (wrong length)."),
        ("v1-mac-as-v1a", "v1a," + sig[3:], "An HMAC under the v1a label (wrong length)."),
    ]:
        c.add(name, desc + " Malformed: nothing to check.", secrets=[whpk, secret], headers=h(s), body=body,
              now=ts, expect=rej("malformed_signature"), tags=["v1a", "malformed"])
    raw_sig = bytearray(base64.b64decode(sig_a[4:]))
    s_plus_l = int.from_bytes(raw_sig[32:], "little") + L
    raw_sig[32:] = s_plus_l.to_bytes(32, "little")
    c.add("v1a-non-canonical-s", "The vector's signature with S + L (the group order): the same point equation "
          "holds, but strict verification refuses a non-canonical S (signature malleability).",
          secrets=[whpk], headers=h("v1a," + b64(bytes(raw_sig))), body=body, now=ts,
          expect=rej("signature_mismatch"), tags=["v1a", "strict"])
    c.add("v1a-tampered-body", "The body changed after signing.", secrets=[whpk], headers=h(sig_a),
          body=b'{"test": 2432232315}', now=ts, expect=rej("signature_mismatch"), tags=["v1a", "tamper"])
    c.add("v1a-tampered-timestamp", "The timestamp header changed after signing.", secrets=[whpk],
          headers=h(sig_a, t=ts + 1), body=body, now=ts, expect=rej("signature_mismatch"), tags=["v1a", "tamper"])
    for off, expect in [(300, ok), (-301, rej("timestamp_out_of_window"))]:
        name = "v1a-window-%s%d" % ("plus" if off > 0 else "minus", abs(off))
        c.add(name, "now = timestamp %+d s." % off, secrets=[whpk], headers=h(sig_a), body=body, now=ts + off,
              expect=expect, tags=["v1a", "window"])
    c.add("v1a-window-forged-stale", "Signed with an Ed25519 key the receiver does not hold, an hour before now: "
          "forged, whatever its time.", secrets=[whpk], headers=h(v1a(bytes(range(32)))), body=body,
          now=ts + 3600, expect=rej("signature_mismatch"), tags=["v1a", "window", "tamper"])
    c.add("v1a-non-utf8-body", "Ed25519 over a non-UTF-8 body.", secrets=[whpk], headers=h(v1a(seed, b=raw)),
          body=raw, now=ts, expect=ok, tags=["v1a", "non-utf8"])
    c.add("v1a-small-order-key", "A whpk_ key of small order (y = 0) is a configuration error: strict "
          "verification could never accept a signature under it.", secrets=["whpk_" + b64(bytes(32))],
          headers=h(sig_a), body=body, now=ts, expect=CONFIG_ERROR, tags=["v1a", "config"])
    c.add("v1a-short-key", "A whpk_ key of 31 bytes is a configuration error.", secrets=["whpk_" + b64(public[:31])],
          headers=h(sig_a), body=body, now=ts, expect=CONFIG_ERROR, tags=["v1a", "config"])
    c.add("dedupe-key-signed-header", "--dedupe-key header:webhook-id: the id is signed content.",
          secrets=[secret], headers=h(sig), body=body, now=ts, dedupe_key="header:webhook-id",
          expect=accept(mid, None, 'standard:fields:["%s"]' % mid), tags=["dedupe"])
    c.add("dedupe-key-missing-field", "--dedupe-key /type on a body without `type`: the sender's key stays.",
          secrets=[secret], headers=h(sig), body=body, now=ts, dedupe_key="/type", expect=ok, tags=["dedupe"])
    c.add("dedupe-key-unsigned-header", "The signature header is not signed content: refused as a key source.",
          secrets=[secret], headers=h(sig), body=body, now=ts, dedupe_key="header:webhook-signature",
          expect=CONFIG_ERROR, tags=["dedupe", "config"])
    return c


# --- BuildWorkPro and Stripe: t=…,v1=<hex> ---------------------------------------------------


def tv1_common(c, header, secret, body, ts, ok, label, several_v1):
    def sig(s=secret, t=ts, b=body):
        return hmac256(s.encode(), str(t).encode(), b".", b).hex()

    def h(v):
        return [(header, v)]

    good = "t=%d,v1=%s" % (ts, sig())
    other = secret + "-older"
    stranger = secret + "-stranger"
    c.add("valid", "A delivery signed as %s signs it." % label, secrets=[secret], headers=h(good), body=body,
          now=ts, expect=ok, tags=["basic"])
    c.add("rotation-old-signs", "Two secrets configured; signed with the older one.", secrets=[secret, other],
          headers=h("t=%d,v1=%s" % (ts, sig(other))), body=body, now=ts, expect=ok, tags=["rotation"])
    c.add("rotation-several-v1", several_v1 + " The valid one first.", secrets=[secret],
          headers=h("t=%d,v1=%s,v1=%s" % (ts, sig(), sig(stranger))),
          body=body, now=ts, expect=ok, tags=["rotation", "junk"])
    c.add("unknown-secret", "Signed with a secret the receiver does not hold.", secrets=[secret, other],
          headers=h("t=%d,v1=%s" % (ts, sig(stranger))), body=body, now=ts, expect=rej("signature_mismatch"),
          tags=["rotation"])
    for off, expect in [(300, ok), (-300, ok), (301, rej("timestamp_out_of_window")),
                        (-301, rej("timestamp_out_of_window"))]:
        name = "window-%s%d" % ("plus" if off > 0 else "minus", abs(off))
        # A timestamp in the future is refused too (Stripe's own libraries check only the past).
        future = " A timestamp from the future is outside too." if off == -301 else ""
        c.add(name, "now = t %+d s (the window is ±300 s, inclusive).%s" % (off, future), secrets=[secret],
              headers=h(good), body=body, now=ts + off, expect=expect,
              tags=["window", "policy"] if future else ["window"])
    c.add("tolerance-60-edge", "config.tolerance 60: now = t + 60 s still verifies.", secrets=[secret],
          headers=h(good), body=body, now=ts + 60, tolerance=60, expect=ok, tags=["window"])
    c.add("tolerance-60-past", "config.tolerance 60: now = t - 61 s (a timestamp from the future) is outside.",
          secrets=[secret], headers=h(good), body=body, now=ts - 61, tolerance=60,
          expect=rej("timestamp_out_of_window"), tags=["window", "policy"])
    c.add("window-forged-stale", "Signed with a secret the receiver does not hold, an hour before now: forged, whatever its time (the signature is checked before the window; only an authentic delivery is out of window).", secrets=[secret], headers=h("t=%d,v1=%s" % (ts, sig(stranger))),
          body=body, now=ts + 3600, expect=rej("signature_mismatch"), tags=["window", "tamper"])
    for name, v, desc in [
        ("v1-empty", "t=%d,v1=" % ts, "`v1=` with nothing after it."),
        ("v1-short", "t=%d,v1=%s" % (ts, sig()[:62]), "62 hex digits."),
        ("v1-long", "t=%d,v1=%s00" % (ts, sig()), "66 hex digits."),
        ("v1-not-hex", "t=%d,v1=%s" % (ts, "zz" * 32), "64 characters that are not hex."),
        ("garbage", "garbage", "Not a t=…,v1=… list."),
        ("no-timestamp", "v1=%s" % sig(), "No t=."),
        ("repeated-timestamp", "t=%d,t=%d,v1=%s" % (ts, ts + 1, sig()),
         "Two t= (which one was signed? Stripe's own libraries take the first)."),
        ("only-v0", "t=%d,v0=%s" % (ts, sig()), "A valid MAC under another label."),
    ]:
        c.add(name, desc + " Malformed.", secrets=[secret], headers=h(v), body=body, now=ts,
              expect=rej("malformed_signature"),
              tags=["malformed", "policy"] if name == "repeated-timestamp" else ["malformed"])
    c.add("v1-uppercase-hex", "The v1 MAC in upper-case hex: the same bytes, accepted (%s sends lower case; "
          "some senders' own libraries compare the text and refuse it)." % label, secrets=[secret],
          headers=h("t=%d,v1=%s" % (ts, sig().upper())), body=body, now=ts, expect=ok, tags=["policy"])
    for name, first, second in [("signature-header-twice-valid-first", good, "t=%d,v1=%s" % (ts, "ab" * 32)),
                                ("signature-header-twice-junk-first", "t=%d,v1=%s" % (ts, "ab" * 32), good)]:
        c.add(name, "The signature header given twice (%s): which one the sender signed is ambiguous; refused "
              "whatever the order." % ("the valid one first" if first == good else "junk first"),
              secrets=[secret], headers=h(first) + h(second), body=body, now=ts, expect=rej("repeated_header"),
              tags=["headers", "policy"])
    c.add("junk-beside-valid", "A junk v1 and a v0 beside the valid v1: every v1 is tried (a receiver that "
          "takes the first v1 only, as BuildWorkPro's sample does, refuses this).", secrets=[secret],
          headers=h("t=%d,v1=%s,v0=abc,v1=%s" % (ts, "ab" * 32, sig())), body=body, now=ts, expect=ok,
          tags=["junk", "policy"])
    c.add("too-many-signatures", "17 v1 entries (the bound is 16, hookguard's own: no sender documents one), the "
          "valid one last.", secrets=[secret],
          headers=h("t=%d,%s,v1=%s" % (ts, ",".join(["v1=" + "ab" * 32] * 16), sig())), body=body, now=ts,
          expect=rej("too_many_signatures"), tags=["malformed", "bounds", "policy"])
    c.add("timestamp-not-digits", "t= is not unix seconds.", secrets=[secret],
          headers=h("t=17e8,v1=%s" % sig()), body=body, now=ts, expect=rej("malformed_timestamp"), tags=["headers"])
    c.add("missing-signature", "No signature header.", secrets=[secret], headers=[], body=body, now=ts,
          expect=rej("missing_signature"), tags=["headers"])
    tampered = body.replace(b'"', b"'", 1) if body.startswith(b'{"') else body + b" "
    c.add("tampered-body", "The body changed after signing.", secrets=[secret], headers=h(good), body=tampered,
          now=ts, expect=rej("signature_mismatch"), tags=["tamper"])
    c.add("tampered-timestamp", "t= changed after signing.", secrets=[secret],
          headers=h("t=%d,v1=%s" % (ts + 1, sig())), body=body, now=ts, expect=rej("signature_mismatch"),
          tags=["tamper"])
    raw = b'{"id":"evt_\xff\xfe"}'
    c.add("non-utf8-string", "Authentic JSON with a string that is not UTF-8: the signature verifies over the raw "
          "bytes, and the delivery is keyed by the body's digest (whether the probe reads that field or skips "
          "it; a 400 would come back on every retry of the same bytes).", secrets=[secret],
          headers=h("t=%d,v1=%s" % (ts, sig(b=raw))), body=raw, now=ts,
          expect=accept(None, None, c.provider + ":" + body_digest(raw)), tags=["non-utf8", "payload"])
    not_json = b'\xff\xfe{"id"}'
    c.add("non-utf8-body", "Authentic bytes that are not JSON at all: refused as a payload (400: the same bytes "
          "never parse).", secrets=[secret], headers=h("t=%d,v1=%s" % (ts, sig(b=not_json))), body=not_json,
          now=ts, expect=rej("invalid_payload"), tags=["non-utf8", "payload"])
    c.add("non-utf8-body-lossy-signature", "Signed over the lossy UTF-8 conversion of the body: must not verify "
          "(the raw bytes are signed; BuildWorkPro's sample converts the body to text first, which would accept "
          "this).", secrets=[secret],
          headers=h("t=%d,v1=%s" % (ts, sig(b=raw.decode("utf-8", "replace").encode()))),
          body=raw, now=ts, expect=rej("signature_mismatch"), tags=["non-utf8", "policy"])
    return sig


def buildworkpro():
    c = Corpus(
        "buildworkpro",
        "BuildWorkPro: `BuildWorkPro-Signature: t=<unix>,v1=<hex HMAC-SHA256>` over \"{t}.{body}\", keyed by "
        "the secret string including its whsec_ prefix. ±300 s. Deduplicated on the body's `id`.",
    )
    secret, ts = "whsec_bwp_conformance_1", 1750000000
    body = (b'{"id":"evt_01HZX3","type":"bid.accepted","created_at":"2025-06-15T15:06:40.000Z","tenant_id":17,'
            b'"data":{"id":9}}')
    ok = accept("evt_01HZX3", "bid.accepted", "buildworkpro:evt_01HZX3")
    sig = tv1_common(c, "BuildWorkPro-Signature", secret, body, ts, ok, "BuildWorkPro",
                     "Several v1 in one header (BuildWorkPro sends one; every v1 is still tried).")
    c.add("secret-without-prefix-is-another-key", "Keyed by `whsec_…` as is: the MAC with the prefix stripped "
          "(or base64-decoded) is another key.", secrets=[secret],
          headers=[("BuildWorkPro-Signature", "t=%d,v1=%s" % (ts, sig(s=secret[6:])))], body=body, now=ts,
          expect=rej("signature_mismatch"), tags=["key"])
    no_id = b'{"type":"bid.accepted","data":{}}'
    c.add("no-id", "An authentic body without `id`: handled, deduplicated on a digest of the signed body.",
          secrets=[secret], headers=[("BuildWorkPro-Signature", "t=%d,v1=%s" % (ts, sig(b=no_id)))], body=no_id,
          now=ts, expect=accept(None, "bid.accepted", "buildworkpro:" + body_digest(no_id)), tags=["payload"])
    c.add("event-id-header-is-not-the-key", "The unsigned BuildWorkPro-Event-Id header says another id: the "
          "signed body's id is the key.", secrets=[secret],
          headers=[("BuildWorkPro-Signature", "t=%d,v1=%s" % (ts, sig())), ("BuildWorkPro-Event-Id", "evt_forged")],
          body=body, now=ts, expect=ok, tags=["dedupe"])
    c.add("dedupe-key-fields", "--dedupe-key /type,/data/id.", secrets=[secret],
          headers=[("BuildWorkPro-Signature", "t=%d,v1=%s" % (ts, sig()))], body=body, now=ts,
          dedupe_key="/type,/data/id",
          expect=accept("evt_01HZX3", "bid.accepted", 'buildworkpro:fields:["bid.accepted",9]'), tags=["dedupe"])
    c.add("dedupe-key-unsigned-header", "--dedupe-key header:buildworkpro-event-id: not signed, refused.",
          secrets=[secret], headers=[("BuildWorkPro-Signature", "t=%d,v1=%s" % (ts, sig()))], body=body, now=ts,
          dedupe_key="header:buildworkpro-event-id", expect=CONFIG_ERROR, tags=["dedupe", "config"])
    return c


def stripe():
    c = Corpus(
        "stripe",
        "Stripe: `Stripe-Signature: t=<unix>,v1=<hex HMAC-SHA256>[,v1=…]` over \"{t}.{body}\", keyed by the "
        "secret string as is. ±300 s. Deduplicated on the body's `id`.",
    )
    with open(os.path.join(ROOT, "crates/hookguard-core/tests/vectors/stripe_event.json"), "rb") as f:
        vec_body = f.read()
    vec_header = ("t=1533204620,v1=2220f87ef101a04665f11cdf770523143f875572008577fa0f20882ddb9cc3c7,"
                  "v0=63f3a72374a733066c4be69ed7f8e5ac85c22c9f0a6a612ab9a025a9e4ee7eef")
    assert hmac256(b"webhook_secret", b"1533204620.", vec_body).hex() in vec_header
    src = "stripe/stripe-dotnet, src/StripeTests/Services/Events/EventUtilityTest.cs"
    c.add("reference-vector", "Stripe's own test vector (a v1 and a v0).", source=src, secrets=["webhook_secret"],
          headers=[("Stripe-Signature", vec_header)], body=vec_body, now=1533204720,
          expect=accept("evt_123", "customer.created", "stripe:evt_123"), tags=["vector"])
    c.add("reference-vector-trailing-newline-dropped", "The vector's body without its final newline.", source=src,
          secrets=["webhook_secret"], headers=[("Stripe-Signature", vec_header)], body=vec_body[:-1],
          now=1533204720, expect=rej("signature_mismatch"), tags=["vector", "tamper"])
    secret, ts = "whsec_stripe_conformance", 1750000000
    body = b'{"id":"evt_1Pq","object":"event","type":"payment_intent.succeeded","created":1750000000,"data":{}}'
    tv1_common(c, "Stripe-Signature", secret, body, ts, accept("evt_1Pq", "payment_intent.succeeded",
                                                                 "stripe:evt_1Pq"), "Stripe",
               "Several v1 while a secret rolls (keeping only the last v1 breaks rolls).")
    return c


# --- GitHub, APS: a MAC of the body only -------------------------------------------------------


def github():
    c = Corpus(
        "github",
        "GitHub: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, body)>`. No timestamp, no replay "
        "window. X-GitHub-Delivery is unsigned: deduplicated on a digest of the signed body.",
    )
    secret, body = "It's a Secret to Everybody", b"Hello, World!"
    vec = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    assert vec == "sha256=" + hmac256(secret.encode(), body).hex()
    src = "GitHub docs, Validating webhook deliveries (Testing the webhook payload validation)"
    now = 1750000000
    key = "github:" + body_digest(body)
    c.add("reference-vector", "GitHub's documented example.", source=src, secrets=[secret],
          headers=[("X-Hub-Signature-256", vec)], body=body, now=now, expect=accept(None, None, key), tags=["vector"])
    c.add("reference-vector-tampered", "The documented signature over another body.", source=src, secrets=[secret],
          headers=[("X-Hub-Signature-256", vec)], body=b"Hello, World?", now=now,
          expect=rej("signature_mismatch"), tags=["vector", "tamper"])
    c.add("no-replay-window", "GitHub signs no time: any `now` verifies.", secrets=[secret],
          headers=[("X-Hub-Signature-256", vec)], body=body, now=4102444800, expect=accept(None, None, key),
          tags=["window"])
    event = b'{"zen":"Design for failure.","hook_id":42}'
    sig = "sha256=" + hmac256(b"gh-secret", event).hex()
    hdrs = [("X-Hub-Signature-256", sig), ("X-GitHub-Delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
            ("X-GitHub-Event", "ping")]
    ok = accept("72d3162e-cc78-11e3-81ab-4c9367dc0958", "ping", "github:" + body_digest(event))
    c.add("delivery-and-event-headers", "Id and type from X-GitHub-Delivery and X-GitHub-Event.",
          secrets=["gh-secret"], headers=hdrs, body=event, now=now, expect=ok, tags=["basic"])
    c.add("rotation", "Two secrets configured; signed with the second.", secrets=["gh-old", "gh-secret"],
          headers=hdrs, body=event, now=now, expect=ok, tags=["rotation"])
    c.add("unknown-secret", "Signed with a secret the receiver does not hold.", secrets=["gh-old", "gh-other"],
          headers=hdrs, body=event, now=now, expect=rej("signature_mismatch"), tags=["rotation"])
    for name, v, desc in [
        ("empty", "sha256=", "`sha256=` with nothing after it."),
        ("short", sig[:-2], "62 hex digits."),
        ("sha1-only", "sha1=" + hmac1(b"gh-secret", event).hex(), "A valid SHA-1 signature (X-Hub-Signature)."),
        ("not-hex", "sha256=" + "zz" * 32, "64 characters that are not hex."),
        ("garbage", "garbage", "No sha256= prefix."),
    ]:
        c.add(name, desc + " Malformed.", secrets=["gh-secret"], headers=[("X-Hub-Signature-256", v)] + hdrs[1:],
              body=event, now=now, expect=rej("malformed_signature"), tags=["malformed"])
    c.add("uppercase-hex", "The MAC in upper-case hex: the same bytes, accepted.", secrets=["gh-secret"],
          headers=[("X-Hub-Signature-256", "sha256=" + hmac256(b"gh-secret", event).hex().upper())] + hdrs[1:],
          body=event, now=now, expect=ok, tags=["policy"])
    c.add("signature-header-twice", "X-Hub-Signature-256 given twice, the valid one first: refused whatever the "
          "order (which one was signed is ambiguous).", secrets=["gh-secret"],
          headers=[hdrs[0], ("X-Hub-Signature-256", "sha256=" + "ab" * 32)] + hdrs[1:], body=event, now=now,
          expect=rej("repeated_header"), tags=["headers", "policy"])
    c.add("missing-signature", "Only X-Hub-Signature (SHA-1) is sent.", secrets=["gh-secret"],
          headers=[("X-Hub-Signature", "sha1=" + hmac1(b"gh-secret", event).hex())] + hdrs[1:], body=event, now=now,
          expect=rej("missing_signature"), tags=["headers"])
    raw = bytes(range(256))
    c.add("non-utf8-body", "Every byte value in the body: verified as raw bytes.", secrets=["gh-secret"],
          headers=[("X-Hub-Signature-256", "sha256=" + hmac256(b"gh-secret", raw).hex())], body=raw, now=now,
          expect=accept(None, None, "github:" + body_digest(raw)), tags=["non-utf8"])
    c.add("body-over-limit", "A signed body over the configured limit (max_body 8): refused before it is read.",
          secrets=[secret], headers=[("X-Hub-Signature-256", vec)], body=body, now=now, max_body=8,
          expect=rej("body_too_large"), tags=["bounds"])
    c.add("unsigned-body-over-limit", "A body over the limit without a signature: refused as unsigned (the head "
          "alone decides), not told to come back as too large.",
          secrets=[secret], headers=[], body=body, now=now, max_body=8,
          expect=rej("missing_signature"), tags=["bounds", "headers"])
    c.add("delivery-header-does-not-change-the-key", "Another X-GitHub-Delivery with the same signed body is the "
          "same event (the header is unsigned).", secrets=["gh-secret"],
          headers=[hdrs[0], ("X-GitHub-Delivery", "00000000-0000-0000-0000-000000000000"), hdrs[2]], body=event,
          now=now, expect=accept("00000000-0000-0000-0000-000000000000", "ping", "github:" + body_digest(event)),
          tags=["dedupe"])
    c.add("wrong-method", "A GET is not a delivery.", method="GET", secrets=["gh-secret"], headers=hdrs, body=b"",
          now=now, expect=rej("method_not_allowed"), tags=["method"])
    return c


def aps():
    c = Corpus(
        "aps",
        "Autodesk Platform Services: `x-adsk-signature: sha1hash=<hex HMAC-SHA1(secret token, body)>`. No "
        "timestamp. Deduplicated on a digest of the signed body; x-adsk-delivery-id is the id.",
    )
    secret = "my-secret-token"
    body = (b'{"version":"1.0","resourceUrn":"urn:adsk.wipprod:fs.file:vf.0zvdp3CoTzWDdZC_wL0kJA?version=1",'
            b'"hook":{"system":"data","event":"dm.version.added","hookId":"1fcd3e30-9f3f-11e7-951f-0fd5337ed5ce"},'
            b'"payload":{"ext":"txt","name":"notes.txt","sizeInBytes":36}}')
    sig = "sha1hash=" + hmac1(secret.encode(), body).hex()
    assert sig == "sha1hash=0fb778418f832fa7dd4a3ba4cae5af3957f8c3f2"
    now = 1750000000
    ok = accept("d-1", "dm.version.added", "aps:" + body_digest(body))
    hdrs = [("x-adsk-signature", sig), ("x-adsk-delivery-id", "d-1")]
    c.add("known-answer", "HMAC-SHA1 computed with Python's hmac module.", secrets=[secret], headers=hdrs,
          body=body, now=now, expect=ok, tags=["vector"])
    c.add("rotation", "Two tokens configured; signed with the second.", secrets=["old-token", secret],
          headers=hdrs, body=body, now=now, expect=ok, tags=["rotation"])
    c.add("unknown-secret", "Signed with a token the receiver does not hold.", secrets=["old-token"],
          headers=hdrs, body=body, now=now, expect=rej("signature_mismatch"), tags=["rotation"])
    c.add("tampered-body", "The body changed after signing.", secrets=[secret], headers=hdrs,
          body=body.replace(b"36", b"37"), now=now, expect=rej("signature_mismatch"), tags=["tamper"])
    for name, v, desc in [
        ("empty", "sha1hash=", "`sha1hash=` with nothing after it."),
        ("short", sig[:-2], "38 hex digits."),
        ("sha256-length", "sha1hash=" + "ab" * 32, "64 hex digits."),
        ("garbage", "garbage", "No sha1hash= prefix."),
    ]:
        c.add(name, desc + " Malformed.", secrets=[secret], headers=[("x-adsk-signature", v)], body=body, now=now,
              expect=rej("malformed_signature"), tags=["malformed"])
    c.add("signature-header-twice", "x-adsk-signature given twice, junk first: refused whatever the order "
          "(which one was signed is ambiguous).", secrets=[secret],
          headers=[("x-adsk-signature", "sha1hash=" + "ab" * 20)] + hdrs, body=body, now=now,
          expect=rej("repeated_header"), tags=["headers", "policy"])
    c.add("missing-signature", "No x-adsk-signature header.", secrets=[secret], headers=hdrs[1:], body=body,
          now=now, expect=rej("missing_signature"), tags=["headers"])
    raw = b'{"hook":{"event":"\xff"}}'
    c.add("non-utf8-string", "Authentic JSON with a string that is not UTF-8: delivered, keyed by the body's "
          "digest (a 400 would come back on every retry of the same bytes, and APS then disables the hook).",
          secrets=[secret], headers=[("x-adsk-signature", "sha1hash=" + hmac1(secret.encode(), raw).hex())],
          body=raw, now=now, expect=accept(None, None, "aps:" + body_digest(raw)), tags=["non-utf8", "payload"])
    raw = b'\xff\xfe{"hook"}'
    c.add("non-utf8-body", "Authentic bytes that are not JSON at all: refused as a payload (400).",
          secrets=[secret], headers=[("x-adsk-signature", "sha1hash=" + hmac1(secret.encode(), raw).hex())],
          body=raw, now=now, expect=rej("invalid_payload"), tags=["non-utf8", "payload"])
    return c


# --- Slack -----------------------------------------------------------------------------------


def slack():
    c = Corpus(
        "slack",
        "Slack: `X-Slack-Signature: v0=<hex HMAC-SHA256>` over \"v0:{X-Slack-Request-Timestamp}:{body}\". "
        "±300 s. A signed `url_verification` is a challenge. Deduplicated on `event_id`; a delivery without "
        "one (a form-encoded slash command or interaction) on a digest of its body. Typed by the Events API "
        "event's `type`, a slash command's `command`, an interaction payload's `type`.",
    )
    secret, ts = "8f742231b10e8888abcd99yyyzzz85a5", 1531420618
    body = (b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&"
            b"channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&"
            b"response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRs"
            b"kXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c")

    def sig(b=body, t=ts, s=secret):
        return "v0=" + hmac256(s.encode(), b"v0:", str(t).encode(), b":", b).hex()

    vec = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
    assert sig() == vec

    def h(s, t=ts):
        return [("X-Slack-Request-Timestamp", str(t)), ("X-Slack-Signature", s)]

    src = "Slack docs, Verifying requests from Slack (worked example)"
    ok = accept(None, "/webhook-collect", "slack:" + body_digest(body))
    c.add("reference-vector", "Slack's worked example (a form-encoded slash command: no event id, so the key is "
          "a digest of the body; typed by its command).", source=src,
          secrets=[secret], headers=h(vec), body=body, now=ts, expect=ok, tags=["vector"])
    for off, expect in [(300, ok), (-300, ok), (301, rej("timestamp_out_of_window")),
                        (-301, rej("timestamp_out_of_window"))]:
        name = "window-%s%d" % ("plus" if off > 0 else "minus", abs(off))
        c.add(name, "now = timestamp %+d s." % off, source=src if off == 301 else None, secrets=[secret],
              headers=h(vec), body=body, now=ts + off, expect=expect, tags=["window"])
    c.add("window-forged-stale", "Signed with a secret the receiver does not hold, an hour before now: forged, "
          "whatever its time (the signature is checked before the window).", secrets=[secret],
          headers=h(sig(s="another-secret")), body=body, now=ts + 3600, expect=rej("signature_mismatch"),
          tags=["window", "tamper"])
    c.add("rotation", "Two secrets configured; signed with the second.", secrets=["old-slack-secret", secret],
          headers=h(vec), body=body, now=ts, expect=ok, tags=["rotation"])
    c.add("unknown-secret", "Signed with a secret the receiver does not hold.", secrets=[secret],
          headers=h(sig(s="another-secret")), body=body, now=ts, expect=rej("signature_mismatch"), tags=["rotation"])
    c.add("tampered-timestamp", "The timestamp header changed after signing.", secrets=[secret],
          headers=h(vec, t=ts + 1), body=body, now=ts, expect=rej("signature_mismatch"), tags=["tamper"])
    for name, v, desc in [
        ("empty", "v0=", "`v0=` with nothing after it."),
        ("short", vec[:-2], "62 hex digits."),
        ("garbage", "garbage", "No v0= prefix."),
    ]:
        c.add(name, desc + " Malformed.", secrets=[secret], headers=h(v), body=body, now=ts,
              expect=rej("malformed_signature"), tags=["malformed"])
    c.add("missing-signature", "No X-Slack-Signature.", secrets=[secret], headers=h(vec)[:1], body=body, now=ts,
          expect=rej("missing_signature"), tags=["headers"])
    c.add("no-headers", "Neither header: the signature's absence is said first (Standard Webhooks says the "
          "id's: each scheme checks its headers in its own order).", secrets=[secret], headers=[], body=body,
          now=ts, expect=rej("missing_signature"), tags=["headers"])
    c.add("uppercase-hex", "The MAC in upper-case hex: the same bytes, accepted (Slack's own SDK compares the "
          "text and refuses it).", secrets=[secret], headers=h("v0=" + vec[3:].upper()), body=body, now=ts,
          expect=ok, tags=["policy"])
    c.add("signature-header-twice", "X-Slack-Signature given twice, junk first: refused whatever the order "
          "(which one was signed is ambiguous).", secrets=[secret],
          headers=h("v0=" + "ab" * 32) + [("X-Slack-Signature", vec)], body=body, now=ts,
          expect=rej("repeated_header"), tags=["headers", "policy"])
    c.add("timestamp-header-twice", "X-Slack-Request-Timestamp given twice, the signed one first.",
          secrets=[secret], headers=h(vec) + [("X-Slack-Request-Timestamp", str(ts + 1))], body=body, now=ts,
          expect=rej("repeated_header"), tags=["headers", "policy"])
    c.add("missing-timestamp", "No X-Slack-Request-Timestamp.", secrets=[secret], headers=h(vec)[1:], body=body,
          now=ts, expect=rej("missing_header"), tags=["headers"])
    event = (b'{"type":"event_callback","event_id":"Ev08MFMKH6","event_time":1531420618,'
             b'"event":{"type":"app_mention"}}')
    c.add("event-callback", "An Events API delivery: deduplicated on event_id, typed by its event's type "
          "(the wrapper's event_callback is every event's).", secrets=[secret],
          headers=h(sig(event)), body=event, now=ts, expect=accept("Ev08MFMKH6", "app_mention",
                                                                    "slack:Ev08MFMKH6"), tags=["basic"])
    verification = (b'{"token":"Jhj5dZrVaK7ZwHHjRyZWjbDl","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFX'
                    b'O7tYXAYM8P","type":"url_verification"}')
    c.add("url-verification", "A signed url_verification: the challenge is echoed.", secrets=[secret],
          headers=h(sig(verification)), body=verification, now=ts,
          expect=challenge("3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"), tags=["challenge"])
    c.add("url-verification-forged", "An unsigned url_verification is not echoed.", secrets=[secret],
          headers=h(sig(verification, s="forger")), body=verification, now=ts, expect=rej("signature_mismatch"),
          tags=["challenge"])
    interaction = (b"payload=%7B%22type%22%3A%22block_actions%22%2C%22user%22%3A%7B%22id%22%3A%22U1%22%7D%2C"
                   b"%22trigger_id%22%3A%2213345224609.8534564800.6f8ab1f53e13d0cd15f96106292d5536%22%7D")
    c.add("interaction", "An interaction (a form whose `payload` field is JSON): no event id, typed by the "
          "payload's type.", secrets=[secret], headers=h(sig(interaction)), body=interaction, now=ts,
          expect=accept(None, "block_actions", "slack:" + body_digest(interaction)), tags=["basic"])
    raw = b"payload=\xff\xfe%7B%7D"
    c.add("non-utf8-body", "A form body with bytes that are not UTF-8, verified as raw bytes.", secrets=[secret],
          headers=h(sig(raw)), body=raw, now=ts, expect=accept(None, None, "slack:" + body_digest(raw)),
          tags=["non-utf8"])
    return c


# --- Procore and HCSS: shared credentials ----------------------------------------------------


def procore():
    c = Corpus(
        "procore",
        "Procore: no signature; the header value configured on the hook (default `Authorization`) is compared "
        "in constant time; several values for rotation. Deduplicated on `ulid` (v2/v3) or `id` (v4).",
    )
    now = 1750000000
    v2 = (b'{"api_version":"v2","company_id":6452,"event_type":"create","id":5982324300946918154,'
          b'"metadata":{"source_application_id":null},"project_id":219542,"resource_id":245510722,'
          b'"resource_name":"RFIs","timestamp":"2020-07-20T15:22:01.353581Z","ulid":"01EDPD2J6SBY1163N77H95GW09",'
          b'"user_id":1469242}')
    ok = accept("5982324300946918154", "RFIs.create", "procore:01EDPD2J6SBY1163N77H95GW09")
    auth = [("Authorization", "Bearer s3cret"), ("Content-Type", "application/json")]
    c.add("valid", "The configured Authorization value; an id above 2^53 keeps every digit.",
          secrets=["Bearer s3cret"], headers=auth, body=v2, now=now, expect=ok, tags=["basic"])
    c.add("rotation", "Two accepted values; the second is sent.", secrets=["Bearer old", "Bearer s3cret"],
          headers=auth, body=v2, now=now, expect=ok, tags=["rotation"])
    c.add("wrong-token", "Another value.", secrets=["Bearer s3cret"],
          headers=[("Authorization", "Bearer s3cre")], body=v2, now=now, expect=rej("unauthorized"), tags=["auth"])
    c.add("missing-token", "No Authorization header.", secrets=["Bearer s3cret"], headers=auth[1:], body=v2,
          now=now, expect=rej("unauthorized"), tags=["auth"])
    c.add("custom-header", "The hook's token in a custom header.", secrets=[],
          auth_header=("X-Hook-Token", ["t0k3n"]), headers=[("X-Hook-Token", "t0k3n")], body=v2, now=now,
          expect=ok, tags=["auth"])
    c.add("custom-header-value-in-authorization", "The right value in the wrong header.", secrets=[],
          auth_header=("X-Hook-Token", ["t0k3n"]), headers=[("Authorization", "t0k3n")], body=v2, now=now,
          expect=rej("unauthorized"), tags=["auth"])
    v4 = (b'{"id":"01J9Z3Q8XQ5G7W2A1B3C4D5E6F","timestamp":"2026-01-01T00:00:00Z","company_id":"6452",'
          b'"project_id":"1","user_id":"2","reason":"archived","resource_type":"RFIs","resource_id":"3"}')
    c.add("v4-payload", "Payload v4: a ULID id, reason and resource_type.", secrets=["Bearer s3cret"], headers=auth,
          body=v4, now=now, expect=accept("01J9Z3Q8XQ5G7W2A1B3C4D5E6F", "RFIs.archived",
                                           "procore:01J9Z3Q8XQ5G7W2A1B3C4D5E6F"), tags=["payload"])
    c.add("not-json", "Authenticated, but the body is not JSON (nor UTF-8): 400, the same bytes never parse.",
          secrets=["Bearer s3cret"], headers=auth, body=b"\xff\xfe not json", now=now, expect=rej("invalid_payload"),
          tags=["payload", "non-utf8"])
    odd = (b'{"api_version":"v2","event_type":"create","id":5982324300946918154,"resource_name":"RFIs",'
           b'"ulid":12345,"metadata":"none","reason":{"code":"moved"}}')
    c.add("field-of-another-type", "Authenticated JSON with fields of other types than documented (a numeric "
          "`ulid`, a string `metadata`, a `reason` object): those fields are not read, the delivery is accepted "
          "and keyed by what can be read — never a 500, which pauses every delivery to the endpoint.",
          secrets=["Bearer s3cret"], headers=auth, body=odd, now=now,
          expect=accept("5982324300946918154", "RFIs.create", "procore:5982324300946918154"), tags=["payload"])
    not_object = b'[{"id":1}]'
    c.add("not-an-object", "Authenticated JSON that is not an object: accepted, keyed by the body's digest "
          "(no field is read from an array by position).", secrets=["Bearer s3cret"], headers=auth,
          body=not_object, now=now, expect=accept(None, None, "procore:" + body_digest(not_object)),
          tags=["payload"])
    c.add("wrong-method", "A GET is not a delivery.", method="GET", secrets=["Bearer s3cret"], headers=auth,
          body=b"", now=now, expect=rej("method_not_allowed"), tags=["method"])
    fields = "/resource_name,/resource_id,/event_type,/timestamp"
    c.add("dedupe-key-fields", "--dedupe-key " + fields + ": numbers exactly as sent.",
          secrets=["Bearer s3cret"], headers=auth, body=v2, now=now, dedupe_key=fields,
          expect=accept("5982324300946918154", "RFIs.create",
                        'procore:fields:["RFIs",245510722,"create","2020-07-20T15:22:01.353581Z"]'), tags=["dedupe"])
    c.add("dedupe-key-missing-field", "--dedupe-key " + fields + " on a v4 body (no resource_name): the sender's "
          "key stays, never a rejection.", secrets=["Bearer s3cret"], headers=auth, body=v4, now=now,
          dedupe_key=fields, expect=accept("01J9Z3Q8XQ5G7W2A1B3C4D5E6F", "RFIs.archived",
                                           "procore:01J9Z3Q8XQ5G7W2A1B3C4D5E6F"), tags=["dedupe"])
    c.add("dedupe-key-unsigned-header", "Procore signs no header: one is refused as a key source.",
          secrets=["Bearer s3cret"], headers=auth, body=v2, now=now, dedupe_key="header:authorization",
          expect=CONFIG_ERROR, tags=["dedupe", "config"])
    return c


def hcss():
    c = Corpus(
        "hcss",
        "HCSS: `GET ?challenge=<value>` is echoed; deliveries are authenticated by a URL token (`?token=`, `+` "
        "kept as `+`) or a shared header. No id: deduplicated on a digest of the body.",
    )
    now = 1750000000
    setups = b'{"companyId":"c1","eventType":"EmployeeUpdated","businessUnitId":"b1","id":"e1"}'
    ok = accept(None, "EmployeeUpdated", "hcss:" + body_digest(setups))
    c.add("url-token", "The token in the callback URL.", secrets=["tok-123"], target="/webhooks?token=tok-123",
          headers=[("Content-Type", "application/json")], body=setups, now=now, expect=ok, tags=["basic"])
    c.add("url-token-rotation", "Two tokens accepted; the second is in the URL.", secrets=["tok-old", "tok-123"],
          target="/webhooks?token=tok-123", headers=[], body=setups, now=now, expect=ok, tags=["rotation"])
    c.add("url-token-wrong", "Another token.", secrets=["tok-123"], target="/webhooks?token=tok-124", headers=[],
          body=setups, now=now, expect=rej("unauthorized"), tags=["auth"])
    c.add("url-token-missing", "No token.", secrets=["tok-123"], target="/webhooks", headers=[], body=setups,
          now=now, expect=rej("unauthorized"), tags=["auth"])
    c.add("url-token-plus-kept", "A base64 token: `+` in the URL is `+`, not a space.", secrets=["ab+c/d=="],
          target="/webhooks?token=ab+c/d==", headers=[], body=setups, now=now, expect=ok, tags=["auth"])
    c.add("url-token-percent-encoded", "A percent-encoded token.", secrets=["a b&c"],
          target="/webhooks?token=a%20b%26c", headers=[], body=setups, now=now, expect=ok, tags=["auth"])
    c.add("shared-header", "A shared header instead of the URL token.", secrets=[],
          auth_header=("X-Hcss-Token", ["h-tok"]), headers=[("X-Hcss-Token", "h-tok")], body=setups, now=now,
          expect=ok, tags=["auth"])
    c.add("challenge", "The subscription's challenge is echoed.", method="GET", secrets=["tok-123"],
          target="/webhooks?challenge=c0ffee42", headers=[], body=b"", now=now, expect=challenge("c0ffee42"),
          tags=["challenge"])
    c.add("challenge-after-naive-append", "The challenge appended with a second `?` to a URL that has one.",
          method="GET", secrets=["tok-123"], target="/webhooks?token=tok-123?challenge=c0ffee42", headers=[],
          body=b"", now=now, expect=challenge("c0ffee42"), tags=["challenge"])
    c.add("challenge-plus-kept", "A challenge holding `+` (base64) appended as it is: echoed exactly, `+` kept "
          "(HCSS asks for the exact value; `%2B` would decode to `+` too).", method="GET", secrets=["tok-123"],
          target="/webhooks?token=tok-123?challenge=q+8/Zw==", headers=[], body=b"", now=now,
          expect=challenge("q+8/Zw=="), tags=["challenge"])
    c.add("challenge-missing", "A GET without a challenge value.", method="GET", secrets=["tok-123"],
          target="/webhooks", headers=[], body=b"", now=now, expect=rej("challenge_missing"), tags=["challenge"])
    c.add("challenge-too-long", "A challenge over 1 KiB is not reflected.", method="GET", secrets=["tok-123"],
          target="/webhooks?challenge=" + "a" * 1025, headers=[], body=b"", now=now,
          expect=rej("challenge_too_long"), tags=["challenge", "bounds"])
    precon = (b'{"eventSource":"HeavyBid Pre-Construction","eventType":"ProjectCreated","version":"1",'
              b'"date":"2019-09-10T16:12:29Z","data":{"companyId":"c","businessUnitId":"b","projectId":"p"}}')
    c.add("pre-construction", "A Pre-Construction event (it carries a date).", secrets=["tok-123"],
          target="/webhooks?token=tok-123", headers=[], body=precon, now=now,
          expect=accept(None, "ProjectCreated", "hcss:" + body_digest(precon)), tags=["payload"])
    c.add("not-json", "Authenticated, but not JSON (nor UTF-8): 400.", secrets=["tok-123"],
          target="/webhooks?token=tok-123", headers=[], body=b"\xc3\x28", now=now, expect=rej("invalid_payload"),
          tags=["payload", "non-utf8"])
    c.add("dedupe-key-fields", "--dedupe-key /eventType,/id.", secrets=["tok-123"], target="/webhooks?token=tok-123",
          headers=[], body=setups, now=now, dedupe_key="/eventType,/id",
          expect=accept(None, "EmployeeUpdated", 'hcss:fields:["EmployeeUpdated","e1"]'), tags=["dedupe"])
    return c


BUILDERS = [buildworkpro, procore, hcss, standard, stripe, github, slack, aps]


def self_test():
    # RFC 8032 section 7.1, TEST 1.
    seed = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
    assert ed25519_public(seed).hex() == "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
    assert ed25519_sign(seed, b"").hex() == (
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595"
        "bbe24655141438e7a100b")


def render(doc):
    """One line per field of a case, so a diff shows which case changed and how."""

    def compact(v):
        return json.dumps(v, ensure_ascii=False)

    lines = ["{"]
    for k in ("format", "provider", "about"):
        lines.append("  %s: %s," % (compact(k), compact(doc[k])))
    lines.append('  "cases": [')
    for i, case in enumerate(doc["cases"]):
        lines.append("    {")
        items = list(case.items())
        for j, (k, v) in enumerate(items):
            lines.append("      %s: %s%s" % (compact(k), compact(v), "," if j + 1 < len(items) else ""))
        lines.append("    }" + ("," if i + 1 < len(doc["cases"]) else ""))
    lines.append("  ]")
    lines.append("}")
    text = "\n".join(lines) + "\n"
    assert json.loads(text) == doc
    return text


def main():
    self_test()
    check = "--check" in sys.argv[1:]
    out = os.path.join(HERE, "cases")
    os.makedirs(out, exist_ok=True)
    stale = []
    total = 0
    for build in BUILDERS:
        c = build()
        total += len(c.cases)
        path = os.path.join(out, c.provider + ".json")
        text = render(c.document())
        old = open(path, encoding="utf-8").read() if os.path.exists(path) else None
        if old != text:
            stale.append(path)
            if not check:
                with open(path, "w", encoding="utf-8") as f:
                    f.write(text)
    if check and stale:
        print("conformance cases out of date: " + ", ".join(stale), file=sys.stderr)
        return 1
    print("%d cases in %d files%s" % (total, len(BUILDERS), " (rewrote %d)" % len(stale) if stale and not check else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
