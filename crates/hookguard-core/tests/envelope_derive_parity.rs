//! The envelopes' hand-written serde impls (`json_struct!`, `json_untagged!`; the core builds
//! without serde's derive) against the derive itself: for each envelope, a copy declared with
//! the `#[derive]` and `#[serde(...)]` attributes the envelope had, and many bodies (the full
//! example, each field missing, repeated, null or of the wrong type, unknown fields, escaped
//! keys, arrays, non-objects). Both must parse to the same JSON, or fail with the same message.

use hookguard_core::envelope as hand;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

/// The envelopes as they were declared with serde's derive (documentation left out).
mod derived {
    use serde::{Deserialize, Serialize};
    use serde_json::Value;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct BuildWorkProEvent<D = Value> {
        pub id: String,
        #[serde(rename = "type")]
        pub event_type: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub created_at: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub tenant_id: Option<u64>,
        #[serde(default = "none", skip_serializing_if = "Option::is_none")]
        pub data: Option<D>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub previous_attributes: Option<Value>,
    }

    fn none<D>() -> Option<D> {
        None
    }

    #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
    pub struct ProcoreMetadata {
        #[serde(default)]
        pub source_user_id: Option<u64>,
        #[serde(default)]
        pub source_project_id: Option<u64>,
        #[serde(default)]
        pub source_operation_id: Option<u64>,
        #[serde(default)]
        pub source_company_id: Option<u64>,
        #[serde(default)]
        pub source_application_id: Option<Value>,
    }

    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct ProcoreRelatedResource {
        pub id: u64,
        pub name: String,
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct ProcoreLegacyEvent {
        pub id: u64,
        pub ulid: String,
        pub timestamp: String,
        #[serde(default)]
        pub metadata: Option<ProcoreMetadata>,
        #[serde(default)]
        pub user_id: Option<u64>,
        #[serde(default)]
        pub company_id: Option<u64>,
        #[serde(default)]
        pub project_id: Option<u64>,
        pub api_version: String,
        pub event_type: String,
        pub resource_name: String,
        pub resource_id: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub related_resources: Option<Vec<ProcoreRelatedResource>>,
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct ProcoreV4Event {
        pub id: String,
        pub timestamp: String,
        #[serde(default)]
        pub company_id: Option<String>,
        #[serde(default)]
        pub project_id: Option<String>,
        #[serde(default)]
        pub user_id: Option<String>,
        pub reason: String,
        pub resource_type: String,
        pub resource_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub data: Option<Value>,
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(untagged)]
    pub enum ProcoreEvent {
        Legacy(ProcoreLegacyEvent),
        V4(ProcoreV4Event),
        Other(Value),
    }

    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct HcssPreConstructionData {
        pub company_id: String,
        pub business_unit_id: String,
        #[serde(default)]
        pub project_id: Option<String>,
        #[serde(default)]
        pub schema_id: Option<String>,
    }

    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct HcssPreConstructionEvent {
        pub event_source: String,
        pub event_type: String,
        #[serde(default)]
        pub entity_url: Option<String>,
        #[serde(default)]
        pub version: Option<String>,
        pub date: String,
        pub data: HcssPreConstructionData,
    }

    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct HcssSetupsEvent {
        pub company_id: String,
        pub event_type: String,
        pub business_unit_id: String,
        pub id: String,
    }

    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct HcssHeavyJobEvent {
        pub company_id: String,
        pub event_type: String,
        pub job_id: String,
        pub cost_code_id: String,
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(untagged)]
    pub enum HcssEvent {
        PreConstruction(HcssPreConstructionEvent),
        HeavyJob(HcssHeavyJobEvent),
        Setups(HcssSetupsEvent),
        Other(Value),
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct StandardEvent<D = Value> {
        #[serde(rename = "type")]
        pub event_type: String,
        pub timestamp: String,
        pub data: D,
    }
}

/// Both types' outcome for `text`: the JSON they serialize back to, or the error message.
fn outcome<T: Serialize + DeserializeOwned>(text: &str) -> Result<String, String> {
    let t: T = serde_json::from_str(text).map_err(|e| e.to_string())?;
    // Through `Value` too: a wrong `serialize_struct` length would break a map serializer.
    let via_value = serde_json::to_value(&t).unwrap();
    let text = serde_json::to_string(&t).unwrap();
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), via_value);
    Ok(text)
}

/// Also from a `Value` (the `Deserializer` of `extract`-style callers) and from bytes.
fn outcome_value<T: Serialize + DeserializeOwned>(text: &str) -> Option<Result<String, String>> {
    let v: Value = serde_json::from_str(text).ok()?;
    Some(
        serde_json::from_value::<T>(v)
            .map(|t| serde_json::to_string(&t).unwrap())
            .map_err(|e| e.to_string()),
    )
}

fn same<H, D>(text: &str)
where
    H: Serialize + DeserializeOwned,
    D: Serialize + DeserializeOwned,
{
    assert_eq!(outcome::<H>(text), outcome::<D>(text), "{text}");
    assert_eq!(outcome_value::<H>(text), outcome_value::<D>(text), "from_value: {text}");
    let h = serde_json::from_slice::<H>(text.as_bytes()).map(|t| serde_json::to_string(&t).unwrap());
    let d = serde_json::from_slice::<D>(text.as_bytes()).map(|t| serde_json::to_string(&t).unwrap());
    assert_eq!(
        h.map_err(|e| e.to_string()),
        d.map_err(|e| e.to_string()),
        "from_slice: {text}"
    );
}

/// Bodies derived from `full` (an object's fields as `(key, JSON)` in order).
fn bodies(full: &[(&str, &str)], repeated_keys: bool) -> Vec<String> {
    fn object(fields: &[(String, String)]) -> String {
        let inner: Vec<String> = fields.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
        format!("{{{}}}", inner.join(","))
    }
    let full: Vec<(String, String)> = full.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    let mut out = vec![
        object(&full),
        "{}".into(),
        "null".into(),
        "7".into(),
        "\"s\"".into(),
        "true".into(),
        "[]".into(),
        "{\"unknown\":1}".into(),
    ];
    // Unknown fields anywhere, and a reversed order.
    let mut more = full.clone();
    more.insert(0, ("x".into(), "{\"a\":[1,{\"b\":null}]}".into()));
    more.push(("camelCaseKey".into(), "\"v\"".into()));
    out.push(object(&more));
    out.push(object(&full.iter().rev().cloned().collect::<Vec<_>>()));
    const WRONG: [&str; 10] = [
        "null",
        "1.5",
        "-1",
        "18446744073709551616",
        "\"s\"",
        "{}",
        "[]",
        "true",
        "0",
        "\"\"",
    ];
    for i in 0..full.len() {
        let mut without = full.clone();
        without.remove(i);
        out.push(object(&without));
        for w in WRONG {
            let mut changed = full.clone();
            changed[i].1 = w.into();
            out.push(object(&changed));
        }
        // The key with an escape.
        let mut escaped = full.clone();
        let k = &full[i].0;
        escaped[i].0 = format!("\\u{:04x}{}", k.as_bytes()[0], &k[1..]);
        out.push(object(&escaped));
        if repeated_keys {
            for v in [full[i].1.as_str(), "null"] {
                let mut twice = full.clone();
                twice.push((full[i].0.clone(), v.into()));
                out.push(object(&twice));
            }
        }
    }
    // As arrays (serde reads a struct from a sequence too), of every length.
    let values: Vec<&str> = full.iter().map(|(_, v)| v.as_str()).collect();
    for n in 0..=values.len() {
        out.push(format!("[{}]", values[..n].join(",")));
    }
    out.push(format!("[{},1]", values.join(",")));
    out
}

fn check<H, D>(full: &[(&str, &str)], repeated_keys: bool)
where
    H: Serialize + DeserializeOwned,
    D: Serialize + DeserializeOwned,
{
    for body in bodies(full, repeated_keys) {
        same::<H, D>(&body);
    }
}

const BWP: &[(&str, &str)] = &[
    ("id", "\"evt_1\""),
    ("type", "\"project.status_changed\""),
    ("created_at", "\"2026-04-25T17:42:01.812Z\""),
    ("tenant_id", "17"),
    ("data", "{\"projectId\":3}"),
    ("previous_attributes", "{\"status\":\"bidding\"}"),
];

const METADATA: &str = r#"{"source_application_id":null,"source_company_id":6452,"source_operation_id":null,"source_project_id":219542,"source_user_id":1469242}"#;

const LEGACY: &[(&str, &str)] = &[
    ("api_version", "\"v3\""),
    ("company_id", "6452"),
    ("event_type", "\"create\""),
    ("id", "5982324300946918154"),
    ("metadata", METADATA),
    ("project_id", "219542"),
    ("resource_id", "245510722"),
    ("resource_name", "\"Purchase Order Contract Line Items\""),
    ("timestamp", "\"2020-07-20T15:22:01.353581Z\""),
    ("ulid", "\"01EDPD2J6SBY1163N77H95GW09\""),
    ("user_id", "1469242"),
    ("related_resources", r#"[{"id":1,"name":"n"},{"name":"m","id":2}]"#),
];

const V4: &[(&str, &str)] = &[
    ("id", "\"01J0000000000000000000000A\""),
    ("timestamp", "\"2026-01-01T00:00:00Z\""),
    ("company_id", "\"6452\""),
    ("project_id", "\"1\""),
    ("user_id", "\"2\""),
    ("reason", "\"create\""),
    ("resource_type", "\"RFIs\""),
    ("resource_id", "\"3\""),
    ("data", "{\"a\":[1,2]}"),
];

const PRE_CONSTRUCTION: &[(&str, &str)] = &[
    ("eventSource", "\"HeavyBid Pre-Construction\""),
    ("eventType", "\"ProjectCreated\""),
    ("entityUrl", "\"https://example.invalid/p\""),
    ("version", "\"1\""),
    ("date", "\"2019-09-10T16:12:29Z\""),
    (
        "data",
        r#"{"companyId":"c","businessUnitId":"b","projectId":"p","schemaId":"s"}"#,
    ),
];

const SETUPS: &[(&str, &str)] = &[
    ("companyId", "\"c\""),
    ("eventType", "\"EmployeeCreated\""),
    ("businessUnitId", "\"b\""),
    ("id", "\"e\""),
];

const HEAVY_JOB: &[(&str, &str)] = &[
    ("companyId", "\"c\""),
    ("eventType", "\"CostCodeUpdated\""),
    ("jobId", "\"j\""),
    ("costCodeId", "\"k\""),
];

const STANDARD: &[(&str, &str)] = &[
    ("type", "\"invoice.paid\""),
    ("timestamp", "\"2026-01-01T00:00:00Z\""),
    ("data", "{\"id\":1}"),
];

#[test]
fn buildworkpro() {
    check::<hand::BuildWorkProEvent, derived::BuildWorkProEvent>(BWP, true);
    check::<hand::BuildWorkProEvent<u8>, derived::BuildWorkProEvent<u8>>(BWP, true);
    check::<hand::BuildWorkProEvent<Option<Value>>, derived::BuildWorkProEvent<Option<Value>>>(BWP, true);
}

#[test]
fn procore() {
    check::<hand::ProcoreMetadata, derived::ProcoreMetadata>(
        &serde_json::from_str::<serde_json::Map<String, Value>>(METADATA)
            .unwrap()
            .iter()
            .map(|(k, v)| {
                (
                    &*Box::leak(k.clone().into_boxed_str()),
                    &*Box::leak(v.to_string().into_boxed_str()),
                )
            })
            .collect::<Vec<_>>(),
        true,
    );
    check::<hand::ProcoreRelatedResource, derived::ProcoreRelatedResource>(&[("id", "1"), ("name", "\"n\"")], true);
    check::<hand::ProcoreLegacyEvent, derived::ProcoreLegacyEvent>(LEGACY, true);
    check::<hand::ProcoreV4Event, derived::ProcoreV4Event>(V4, true);
    // Untagged: the derive buffered the body with its repeated keys, ours buffers a `Value`
    // (the last of a repeated key wins), so repeated keys are left out here (see
    // `untagged_repeated_keys` below).
    for full in [LEGACY, V4, SETUPS] {
        check::<hand::ProcoreEvent, derived::ProcoreEvent>(full, false);
    }
}

#[test]
fn hcss() {
    check::<hand::HcssPreConstructionEvent, derived::HcssPreConstructionEvent>(PRE_CONSTRUCTION, true);
    check::<hand::HcssSetupsEvent, derived::HcssSetupsEvent>(SETUPS, true);
    check::<hand::HcssHeavyJobEvent, derived::HcssHeavyJobEvent>(HEAVY_JOB, true);
    for full in [PRE_CONSTRUCTION, SETUPS, HEAVY_JOB, LEGACY] {
        check::<hand::HcssEvent, derived::HcssEvent>(full, false);
    }
}

#[test]
fn standard() {
    check::<hand::StandardEvent, derived::StandardEvent>(STANDARD, true);
    check::<hand::StandardEvent<Option<Value>>, derived::StandardEvent<Option<Value>>>(STANDARD, true);
    check::<hand::StandardEvent<String>, derived::StandardEvent<String>>(STANDARD, true);
}

/// The one difference from the derive: a body with a repeated key. The derive's untagged
/// buffer kept both copies, so a variant's `duplicate field` error sent the body on to the
/// next variant (usually `Other`); ours keeps the last copy, so the variant matches.
#[test]
fn untagged_repeated_keys() {
    let body =
        r#"{"id":"a","timestamp":"t","reason":"create","resource_type":"RFIs","resource_id":"3","reason":"update"}"#;
    assert!(matches!(
        serde_json::from_str(body).unwrap(),
        derived::ProcoreEvent::Other(_)
    ));
    let hand::ProcoreEvent::V4(e) = serde_json::from_str(body).unwrap() else {
        panic!("not V4")
    };
    assert_eq!(e.reason, "update");
    // A repeated key the variants ignore: the same with both.
    let body = r#"{"id":"a","timestamp":"t","reason":"create","resource_type":"RFIs","resource_id":"3","x":1,"x":2}"#;
    same::<hand::ProcoreEvent, derived::ProcoreEvent>(body);
}
