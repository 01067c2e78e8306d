#!/usr/bin/env python3
"""Writes the seed corpora fuzz/seeds/TARGET/ (run from anywhere; committed output).

Header seeds carry valid MACs for the secrets and clock the targets use, so the fuzzer starts
past the signature check as well as before it."""
import base64, hashlib, hmac, os, shutil

HERE = os.path.dirname(os.path.abspath(__file__))
TS = b"1700000000"

BODIES = {
    "buildworkpro": b'{"id":"evt_1","type":"bid.accepted","created_at":"2026-04-25T17:42:01.812Z","tenant_id":17,"data":{"bidId":9},"previous_attributes":{"status":"open"}}',
    "stripe": b'{"id":"evt_1NG8Du2eZvKYlo2CUI79vXWy","object":"event","type":"payment_intent.succeeded","data":{"object":{"id":"pi_1"}}}',
    "standard": b'{"type":"invoice.paid","timestamp":"2022-11-03T20:26:10.344522Z","data":{"id":"inv_1"}}',
    "github": b'{"action":"opened","number":1,"repository":{"id":1296269,"full_name":"o/r"}}',
    "slack_challenge": b'{"token":"t","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}',
    "slack_event": b'{"type":"event_callback","event_id":"Ev08MFMKH6","event":{"type":"app_mention","text":"hi"}}',
    "slack_form": b"token=t&team_id=T1&command=%2Fweather&text=94070",
    "procore_v2": b'{"api_version":"v2","company_id":6452,"event_type":"create","id":5982324300946918154,"metadata":{"source_application_id":null,"source_company_id":6452,"source_operation_id":null,"source_project_id":219542,"source_user_id":1469242},"project_id":219542,"resource_id":245510722,"resource_name":"Purchase Order Contract Line Items","timestamp":"2020-07-20T15:22:01.353581Z","ulid":"01EDPD2J6SBY1163N77H95GW09","user_id":1469242}',
    "procore_v3": b'{"api_version":"v3","company_id":1,"event_type":"update","id":7,"metadata":{"source_application_id":"fuzz-app"},"project_id":2,"resource_id":3,"resource_name":"RFIs","timestamp":"t","ulid":"01EDPD2J6SBY1163N77H95GW0A","related_resources":[{"id":4,"name":"Projects"}]}',
    "procore_v4": b'{"id":"01J0000000000000000000000A","timestamp":"2026-01-01T00:00:00Z","company_id":"6452","project_id":"1","user_id":"2","reason":"create","resource_type":"RFIs","resource_id":"3","data":{"k":[1,2.5,null]}}',
    "hcss_precon": b'{"eventSource":"HeavyBid Pre-Construction","eventType":"ProjectCreated","entityUrl":"https://x/p","version":"1","date":"2019-09-10T16:12:29Z","data":{"companyId":"c","businessUnitId":"b","projectId":"p"}}',
    "hcss_heavyjob": b'{"companyId":"c","eventType":"CostCodeUpdated","jobId":"j","costCodeId":"k"}',
    "hcss_setups": b'{"companyId":"c","eventType":"EmployeeCreated","businessUnitId":"b","id":"e"}',
    "aps": b'{"version":"1.0","resourceUrn":"urn:adsk.wipprod:fs.file:vf.abc?version=1","hook":{"system":"data","event":"dm.version.added","hookId":"h1","tenant":"urn:adsk.wipprod:fs.folder:co.t","createdDate":"2026-01-01T00:00:00Z","status":"active"},"payload":{"ext":"rvt","version":1,"name":"L2.rvt"}}',
}


def mac(key, *parts):
    return hmac.new(key, b"".join(parts), hashlib.sha256).digest()


def write(target, name, data):
    d = os.path.join(HERE, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


for t in ["tv1_header", "standard_header", "github_slack_header", "challenge_query", "payload", "signed_payload", "json_fast", "token_header", "dedupe_key", "stored_headers"]:
    shutil.rmtree(os.path.join(HERE, t), ignore_errors=True)

# tv1_header: HEADER \0 BODY, secret "whsec_fuzz".
for name in ["buildworkpro", "stripe"]:
    b = BODIES[name]
    m = mac(b"whsec_fuzz", TS, b".", b).hex().encode()
    write("tv1_header", name, b"t=" + TS + b",v1=" + m + b"\0" + b)
write("tv1_header", "two_sigs", b"t=" + TS + b",v1=" + b"ab" * 32 + b",v0=x,v1=" + b"AB" * 32 + b"\0{}")

# standard_header: SIGNATURE \0 TIMESTAMP \0 BODY, webhook-id "msg_1".
key = base64.b64decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
b = BODIES["standard"]
sig = base64.b64encode(mac(key, b"msg_1.", TS, b".", b))
write("standard_header", "valid", b"v1," + sig + b"\0" + TS + b"\0" + b)
write("standard_header", "list", b"v1a,x v1," + b"A" * 43 + b"= v1," + sig + b"\0" + TS + b"\0" + b)
# A genuine `v1a` (Ed25519) entry for the same id, timestamp and body, made by
# `hookguard sign --provider standard --secret whsk_VEVTVFNJR05JTkdLRVlET05PVFVTRVRISVNGT1JBTlk=
# --id msg_1 --timestamp 1700000000 --file BODY` (Ed25519 signatures are deterministic; the
# target's verifier holds the matching `whpk_` key).
v1a = b"LhlyYepnWIOgZw4u3hvzSZzTKI3BkSfWTaXLRbMmq+O6TIZbvyWAtOE1xCevZELYNKJqYp0VGupzTfZ3OuL5Aw=="
write("standard_header", "v1a_valid", b"v1a," + v1a + b"\0" + TS + b"\0" + b)
write("standard_header", "v1a_and_v1", b"v1a," + b"A" * 86 + b"== v1," + sig + b" v1a," + v1a + b"\0" + TS + b"\0" + b)

# github_slack_header: SIGNATURE \0 SLACK_TIMESTAMP \0 BODY, secret "s".
b = BODIES["github"]
write("github_slack_header", "github", b"sha256=" + mac(b"s", b).hex().encode() + b"\0" + TS + b"\0" + b)
b = BODIES["slack_event"]
write("github_slack_header", "slack", b"v0=" + mac(b"s", b"v0:", TS, b":", b).hex().encode() + b"\0" + TS + b"\0" + b)
b = BODIES["aps"]
write("github_slack_header", "aps", b"sha1hash=" + hmac.new(b"s", b, hashlib.sha1).hexdigest().encode() + b"\0\0" + b)

# challenge_query: the query string.
write("challenge_query", "plain", b"challenge=abc123")
write("challenge_query", "encoded", b"token=tok&challenge=a%20b+c%2F&x")
write("challenge_query", "repeated", b"challenge=&challenge=%ZZ%4")

# payload: Procore and HCSS bodies.
for name in ["procore_v2", "procore_v3", "procore_v4", "hcss_precon", "hcss_heavyjob", "hcss_setups"]:
    write("payload", name, BODIES[name])

# signed_payload: BODY [\0 ID [\0 EVENT_TYPE]], every body.
for name, b in BODIES.items():
    write("signed_payload", name, b)
write("signed_payload", "github_with_ids", BODIES["github"] + b"\0" + b"72d3162e-cc78-11e3-81ab-4c9367dc0958\0pull_request")
write("signed_payload", "bwp_with_ids", BODIES["buildworkpro"] + b"\0evt_1\0bid.accepted")
# An id ending in a tab: valid header text that `sign` refuses (the target skips such ids).
write("signed_payload", "id_with_tab", BODIES["buildworkpro"] + b"\0evt_1\t")

# json_fast: a body, every sender's, and the shapes the comparison's structs read.
for name, b in BODIES.items():
    write("json_fast", name, b)
write("json_fast", "fields", b'{"id":7,"type":null,"n":3,"data":{"a":[1.5e-3,true]},"tags":["x"],"raw":[{}],"date":"d"}')
write("json_fast", "escapes", b'{"date":"\\u00e9\\n","x":"\\ud800","\\u0069d":"k"}')

# token_header: VALUES (\n between repeated headers) \0 BODY; tokens "Bearer t0k" (Procore's
# Authorization) and "t0k" (HCSS's token header).
write("token_header", "procore", b"Bearer t0k\0" + BODIES["procore_v2"])
write("token_header", "hcss", b"t0k\0" + BODIES["hcss_precon"])
write("token_header", "repeated", b"Bearer x\nBearer t0k\0" + BODIES["procore_v4"])
write("token_header", "near_miss", b"Bearer t0K\0{}")

# dedupe_key: SPEC \0 BODY (Procore, "Bearer t").
write("dedupe_key", "procore_fields", b"/resource_name,/resource_id,/event_type,/timestamp\0" + BODIES["procore_v2"])
write("dedupe_key", "single_string", b"/ulid\0" + BODIES["procore_v2"])
write("dedupe_key", "escaped_pointer", b"/metadata/source_application_id, /a~1b/~0\0" + BODIES["procore_v3"])
write("dedupe_key", "nested", b"/data/k,/data\0" + BODIES["procore_v4"])

# stored_headers: NAME:VALUE lines, the first name the scheme's credential header.
write("stored_headers", "procore", b"authorization:Bearer t\ncontent-type:application/json\nx-request-id:r1")
write("stored_headers", "proxy_copies", b"x-hcss-token:t\nx-forwarded-query:token=t\nx-original-uri:/h?token=t\nwebhook-id:msg_1\nx-api-key:k\nx-note:a=b; token=c")
