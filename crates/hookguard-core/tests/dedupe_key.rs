//! Dedupe keys from signed fields (`.dedupe_key(..)`): event-level copies with distinct ids
//! coalesce, a missing field falls back to the sender's key, and why unsigned headers are
//! refused as key sources.

use bytes::Bytes;
use hookguard_core::clock::ManualClock;
use hookguard_core::dedupe::{Dedupe, MemoryStore};
use hookguard_core::schemes::{BuildWorkPro, Hcss, Procore, StandardWebhooks};
use hookguard_core::testing::{block_on, request_parts};
use hookguard_core::{
    ConfigError, DedupeKey, DedupeScope, HandlerOutcome, Receiver, Reply, RequestHead, Scheme, SignParams, Verdict,
    Verifier,
};

const NOW: u64 = 1_700_000_000;

/// Runs one request through `rx`; returns whether the handler ran and the HTTP status.
fn deliver(rx: &Receiver, headers: &http::HeaderMap, uri: &http::Uri, body: &[u8]) -> (bool, u16) {
    let head = RequestHead::new(&http::Method::POST, uri, headers);
    let mut ran = false;
    let reply = block_on(rx.deliver(&head, Bytes::copy_from_slice(body), |_d| {
        ran = true;
        async {
            HandlerOutcome::<_, ()>::Responded {
                response: 204u16,
                success: true,
            }
        }
    }))
    .unwrap();
    let status = match reply {
        Reply::Handler(s) => s,
        Reply::Respond(r) => r.status().as_u16(),
    };
    (ran, status)
}

fn bwp(id: &str) -> Vec<u8> {
    format!(
        r#"{{"id":"{id}","type":"bid.accepted","created_at":"2026-04-25T17:42:01.812Z","tenant_id":17,"data":{{}}}}"#
    )
    .into_bytes()
}

fn bwp_request(id: &str) -> (http::HeaderMap, http::Uri, Vec<u8>) {
    let body = bwp(id);
    let signed = BuildWorkPro::new()
        .sign("whsec_k", &body, &SignParams::new(NOW).id(id))
        .unwrap();
    let (mut h, uri) = request_parts(signed, "/webhooks");
    // BuildWorkPro sends the event id in a header too; the signature does not cover it.
    h.insert("buildworkpro-event-id", id.parse().unwrap());
    (h, uri, body)
}

fn bwp_receiver(key: Option<DedupeKey>, allow_header: bool) -> Result<Receiver, ConfigError> {
    let mut b = Receiver::builder(BuildWorkPro::new())
        .secret("whsec_k")
        .clock(ManualClock::new(NOW))
        .dedupe(MemoryStore::default());
    if let Some(k) = key {
        b = b.dedupe_key(k);
    }
    if allow_header {
        b = b.allow_unsigned_key_header("BuildWorkPro-Event-Id");
    }
    b.build()
}

/// Why an unsigned header is refused as a key source: anyone who captured one genuine
/// delivery can replay it (its signature stays valid for the window) with a forged unsigned
/// header naming an event that has not arrived yet. Keyed on that header, the replay claims
/// the future event's key, and the genuine event is answered `duplicate` and never handled.
#[test]
fn a_forged_unsigned_header_cannot_make_a_genuine_event_a_duplicate() {
    let header_key = DedupeKey::new().header("BuildWorkPro-Event-Id");
    // Refused by default, naming the danger.
    let err = bwp_receiver(Some(header_key.clone()), false).unwrap_err();
    assert!(
        matches!(&err, ConfigError::Invalid(m) if m.contains("not covered by the sender's signature")),
        "{err}"
    );

    // What the refusal prevents: with the header explicitly allowed, the attack works.
    let rx = bwp_receiver(Some(header_key), true).unwrap();
    let (a_headers, uri, a_body) = bwp_request("evt_A");
    assert_eq!(deliver(&rx, &a_headers, &uri, &a_body), (true, 204));
    let mut forged = a_headers.clone();
    forged.insert("buildworkpro-event-id", "evt_B".parse().unwrap());
    assert_eq!(
        deliver(&rx, &forged, &uri, &a_body),
        (true, 204),
        "the replay is handled as a new event"
    );
    let (b_headers, uri, b_body) = bwp_request("evt_B");
    assert_eq!(
        deliver(&rx, &b_headers, &uri, &b_body),
        (false, 200),
        "the genuine evt_B is lost: answered duplicate, never handled"
    );

    // Keyed on signed material (the body's `id`), the same forgery changes nothing.
    for key in [None, Some(DedupeKey::new().pointer("/id"))] {
        let rx = bwp_receiver(key, false).unwrap();
        assert_eq!(deliver(&rx, &a_headers, &uri, &a_body), (true, 204));
        assert_eq!(
            deliver(&rx, &forged, &uri, &a_body),
            (false, 200),
            "the replay is a copy of evt_A"
        );
        assert_eq!(deliver(&rx, &b_headers, &uri, &b_body), (true, 204), "evt_B is handled");
    }
}

fn procore_request(body: &[u8]) -> (http::HeaderMap, http::Uri) {
    request_parts(
        Procore::new().sign("Bearer t", body, &SignParams::new(0)).unwrap(),
        "/webhooks",
    )
}

#[test]
fn procore_event_copies_with_distinct_ids_coalesce_on_their_fields() {
    let key: DedupeKey = "/resource_name,/resource_id,/event_type,/timestamp".parse().unwrap();
    let rx = Receiver::builder(Procore::new())
        .secret("Bearer t")
        .dedupe_key(key.clone())
        .dedupe(MemoryStore::default())
        .build()
        .unwrap();
    let first = br#"{"id":5982324300946918154,"ulid":"01EDPD2J6SBY1163N77H95GW09","event_type":"update","resource_name":"RFIs","resource_id":245510722,"timestamp":"2020-07-20T15:22:01.353581Z","metadata":{}}"#;
    let second = br#"{"id":5982324300946918155,"ulid":"01EDPD2J6SBY1163N77H95GW0A","event_type":"update","resource_name":"RFIs","resource_id":245510722,"timestamp":"2020-07-20T15:22:01.353581Z","metadata":{}}"#;
    let later = br#"{"id":5982324300946918156,"ulid":"01EDPD2J6SBY1163N77H95GW0B","event_type":"update","resource_name":"RFIs","resource_id":245510722,"timestamp":"2020-07-20T15:23:00.000000Z","metadata":{}}"#;
    let (h, uri) = procore_request(first);
    assert_eq!(deliver(&rx, &h, &uri, first), (true, 204));
    assert_eq!(
        deliver(&rx, &h, &uri, second),
        (false, 200),
        "same change, another id: a copy"
    );
    assert_eq!(
        deliver(&rx, &h, &uri, later),
        (true, 204),
        "a later change of the same RFI"
    );

    // Without the option, the sender's ulid is the key: both copies are handled.
    let plain = Receiver::builder(Procore::new())
        .secret("Bearer t")
        .dedupe(MemoryStore::default())
        .build()
        .unwrap();
    assert_eq!(deliver(&plain, &h, &uri, first), (true, 204));
    assert_eq!(deliver(&plain, &h, &uri, second), (true, 204));

    // The key is exact, readable and remembered for the retention.
    let v = Verifier::builder(Procore::new())
        .secret("Bearer t")
        .dedupe_key(key)
        .build()
        .unwrap();
    let head = RequestHead::new(&http::Method::POST, &uri, &h);
    let d = v.verify(&head, Bytes::from_static(first)).unwrap();
    let d = d.delivery().unwrap();
    assert_eq!(
        d.dedupe_key(),
        Some(r#"procore:fields:["RFIs",245510722,"update","2020-07-20T15:22:01.353581Z"]"#)
    );
    assert_eq!(d.event_id(), Some("5982324300946918154"), "the event id is unchanged");
    assert_eq!(d.dedupe_scope(), DedupeScope::Retained);
}

#[test]
fn a_missing_field_keeps_the_senders_default_key_and_scope() {
    // Procore v4 has `resource_type`, not `resource_name`: the ulid/id key, never a rejection.
    let v = Verifier::builder(Procore::new())
        .secret("Bearer t")
        .dedupe_key("/resource_name,/resource_id".parse().unwrap())
        .build()
        .unwrap();
    let v4 = br#"{"id":"01J9Z3Q8XQ5G7W2A1B3C4D5E6F","timestamp":"2026-01-01T00:00:00Z","company_id":"6452","project_id":"1","user_id":"2","reason":"archived","resource_type":"RFIs","resource_id":"3"}"#;
    let (h, uri) = procore_request(v4);
    let head = RequestHead::new(&http::Method::POST, &uri, &h);
    let Verdict::Deliver(d) = v.verify(&head, Bytes::from_static(v4)).unwrap() else {
        panic!("not a delivery")
    };
    assert_eq!(d.dedupe_key(), Some("procore:01J9Z3Q8XQ5G7W2A1B3C4D5E6F"));
    assert_eq!(d.dedupe_scope(), DedupeScope::Retained);

    // HCSS Setups bodies carry no time: without the field, the default in-flight-only scope
    // stays (an identical body later is a new edit); with it, the key is remembered.
    let v = Verifier::builder(Hcss::new())
        .secret("tok")
        .dedupe_key("/eventType,/id,/version".parse().unwrap())
        .build()
        .unwrap();
    let body = br#"{"companyId":"c","eventType":"EmployeeUpdated","businessUnitId":"b","id":"e1"}"#;
    let (h, uri) = request_parts(Hcss::new().sign("tok", body, &SignParams::new(0)).unwrap(), "/hooks");
    let head = RequestHead::new(&http::Method::POST, &uri, &h);
    let d = v.verify(&head, Bytes::from_static(body)).unwrap();
    let d = d.delivery().unwrap();
    assert!(d.dedupe_key().unwrap().starts_with("hcss:sha256:"));
    assert_eq!(d.dedupe_scope(), DedupeScope::WhileInFlight);
    let with_version = br#"{"companyId":"c","eventType":"EmployeeUpdated","businessUnitId":"b","id":"e1","version":3}"#;
    let d = v.verify(&head, Bytes::from_static(with_version)).unwrap();
    let d = d.delivery().unwrap();
    assert_eq!(d.dedupe_key(), Some(r#"hcss:fields:["EmployeeUpdated","e1",3]"#));
    assert_eq!(d.dedupe_scope(), DedupeScope::Retained);
}

#[test]
fn standard_webhooks_signed_headers_may_be_key_fields() {
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let rx = Receiver::builder(StandardWebhooks::new())
        .secret(secret)
        .clock(ManualClock::new(NOW))
        .dedupe_key(DedupeKey::new().pointer("/type").header("webhook-timestamp"))
        .dedupe_policy(Dedupe::new(MemoryStore::default()))
        .build()
        .unwrap();
    let body = br#"{"type":"invoice.paid"}"#;
    let send = |id: &str| {
        let signed = StandardWebhooks::new()
            .sign(secret, body, &SignParams::new(NOW).id(id))
            .unwrap();
        let (h, uri) = request_parts(signed, "/");
        deliver(&rx, &h, &uri, body)
    };
    assert_eq!(send("msg_1"), (true, 204));
    assert_eq!(send("msg_2"), (false, 200), "same type and signed timestamp");
    let v = Verifier::builder(StandardWebhooks::new())
        .secret(secret)
        .clock(ManualClock::new(NOW))
        .dedupe_key(DedupeKey::new().header("webhook-id"))
        .build()
        .unwrap();
    let (h, uri) = request_parts(
        StandardWebhooks::new()
            .sign(secret, body, &SignParams::new(NOW).id("msg_9"))
            .unwrap(),
        "/",
    );
    let d = v
        .verify(
            &RequestHead::new(&http::Method::POST, &uri, &h),
            Bytes::from_static(body),
        )
        .unwrap();
    assert_eq!(d.delivery().unwrap().dedupe_key(), Some(r#"standard:fields:["msg_9"]"#));
    // The signature header itself is not signed content.
    assert!(Verifier::builder(StandardWebhooks::new())
        .secret(secret)
        .dedupe_key(DedupeKey::new().header("webhook-signature"))
        .build()
        .is_err());
}
