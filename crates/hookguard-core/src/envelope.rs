//! Typed envelopes of each sender's JSON, for [`Delivery::json`](crate::Delivery::json).
//!
//! Ids keep full precision: Procore's legacy `id` (e.g. `5982324300946918154`, beyond
//! 2^53) is a `u64`, never a float. Unknown fields are ignored and unknown event types are
//! plain strings, so new sender events still parse. Fields a sender's documents do not
//! promise on every event are `Option`s, and the HCSS and Procore enums end in an `Other`
//! variant holding the raw JSON: a shape we did not model still reaches the handler.
//!
//! Should a body still not fit (a documented field missing), [`Delivery::json`](crate::Delivery::json)
//! answers a retryable `500 unexpected_payload` and logs the field at error level: a gap in
//! our model must never be a permanent `4xx` that makes the sender drop the event.
//!
//! ```
//! use hookguard_core::envelope::ProcoreEvent;
//! // Procore's legacy `id` beyond 2^53 keeps every digit.
//! let e: ProcoreEvent = serde_json::from_str(r#"{"id":5982324300946918154,"resource_name":"RFIs","resource_id":3,"event_type":"update","api_version":"v2","timestamp":"2026-04-25T17:42:01Z","ulid":"01J0000000000000000000000A"}"#).unwrap();
//! let ProcoreEvent::Legacy(e) = e else { panic!("a legacy event") };
//! assert_eq!(e.id, 5982324300946918154);
//! ```

use serde_json::Value;

use crate::json_struct::{json_struct, json_untagged};

/// A BuildWorkPro event. `data` is generic: use your own type for one event, or the default
/// `serde_json::Value`.
///
/// ```
/// use hookguard_core::envelope::BuildWorkProEvent;
/// let e: BuildWorkProEvent = serde_json::from_str(r#"{"id":"evt_1","type":"project.status_changed","created_at":"2026-04-25T17:42:01.812Z","tenant_id":17,"data":{"projectId":3},"previous_attributes":{"status":"bidding"}}"#).unwrap();
/// assert_eq!(e.event_type, "project.status_changed");
/// assert!(e.previous_attributes.is_some());
/// // Only `id` and `type` are needed: what a minimal signed body carries.
/// let e: BuildWorkProEvent = serde_json::from_str(r#"{"id":"evt_2","type":"bid.created"}"#).unwrap();
/// assert_eq!((e.tenant_id, e.data), (None, None));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct BuildWorkProEvent<D = Value> {
    /// `evt_…`, stable across retries and replays.
    pub id: String,
    /// e.g. `bid.accepted`.
    pub event_type: String,
    /// RFC 3339 time.
    pub created_at: Option<String>,
    /// The tenant.
    pub tenant_id: Option<u64>,
    /// The record (camelCase keys).
    pub data: Option<D>,
    /// Changed attributes' previous values, on updates.
    pub previous_attributes: Option<Value>,
}

json_struct! {
    Serialize, Deserialize for BuildWorkProEvent<D> {
        id: "id",
        event_type: "type",
        created_at: "created_at" (default, skip_none),
        tenant_id: "tenant_id" (default, skip_none),
        data: "data" (default, skip_none),
        previous_attributes: "previous_attributes" (default, skip_none),
    }
}

/// Procore's `metadata` (any field may be null).
///
/// ```
/// use hookguard_core::envelope::ProcoreMetadata;
/// let m: ProcoreMetadata = serde_json::from_str(r#"{"source_user_id":1469242,"source_project_id":219542,"source_application_id":null}"#).unwrap();
/// assert_eq!(m.source_user_id, Some(1469242));
/// assert_eq!((m.source_company_id, m.source_application_id), (None, None));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcoreMetadata {
    /// The user that caused the change.
    pub source_user_id: Option<u64>,
    /// The project.
    pub source_project_id: Option<u64>,
    /// The operation.
    pub source_operation_id: Option<u64>,
    /// The company.
    pub source_company_id: Option<u64>,
    /// The application that caused the change (filter your own to avoid loops).
    pub source_application_id: Option<Value>,
}

json_struct! {
    Serialize, Deserialize for ProcoreMetadata {
        source_user_id: "source_user_id" (default),
        source_project_id: "source_project_id" (default),
        source_operation_id: "source_operation_id" (default),
        source_company_id: "source_company_id" (default),
        source_application_id: "source_application_id" (default),
    }
}

/// A related resource (Procore v3).
///
/// ```
/// use hookguard_core::envelope::ProcoreRelatedResource;
/// let r: ProcoreRelatedResource = serde_json::from_str(r#"{"id":245510722,"name":"Purchase Order Contracts"}"#).unwrap();
/// assert_eq!((r.id, r.name.as_str()), (245510722, "Purchase Order Contracts"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcoreRelatedResource {
    /// Its id.
    pub id: u64,
    /// Its name.
    pub name: String,
}

json_struct! {
    Serialize, Deserialize for ProcoreRelatedResource {
        id: "id",
        name: "name",
    }
}

/// Procore's legacy payload (v2, and v3 with `related_resources`).
///
/// ```
/// use hookguard_core::envelope::ProcoreLegacyEvent;
/// let e: ProcoreLegacyEvent = serde_json::from_str(r#"{"api_version":"v2","company_id":6452,"event_type":"create","id":5982324300946918154,"metadata":{"source_application_id":null,"source_company_id":6452,"source_operation_id":null,"source_project_id":219542,"source_user_id":1469242},"project_id":219542,"resource_id":245510722,"resource_name":"Purchase Order Contract Line Items","timestamp":"2020-07-20T15:22:01.353581Z","ulid":"01EDPD2J6SBY1163N77H95GW09","user_id":1469242}"#).unwrap();
/// assert_eq!(e.id, 5982324300946918154);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct ProcoreLegacyEvent {
    /// The event id (can exceed 2^53).
    pub id: u64,
    /// 26-character ULID, the dedupe key.
    pub ulid: String,
    /// UTC time.
    pub timestamp: String,
    /// Context.
    pub metadata: Option<ProcoreMetadata>,
    /// User.
    pub user_id: Option<u64>,
    /// Company.
    pub company_id: Option<u64>,
    /// Project.
    pub project_id: Option<u64>,
    /// `v2`, `v2.0`, `v3`…
    pub api_version: String,
    /// `create`, `update`, `delete`.
    pub event_type: String,
    /// e.g. `RFIs`.
    pub resource_name: String,
    /// The changed resource.
    pub resource_id: u64,
    /// v3 only.
    pub related_resources: Option<Vec<ProcoreRelatedResource>>,
}

json_struct! {
    Serialize, Deserialize for ProcoreLegacyEvent {
        id: "id",
        ulid: "ulid",
        timestamp: "timestamp",
        metadata: "metadata" (default),
        user_id: "user_id" (default),
        company_id: "company_id" (default),
        project_id: "project_id" (default),
        api_version: "api_version",
        event_type: "event_type",
        resource_name: "resource_name",
        resource_id: "resource_id",
        related_resources: "related_resources" (default, skip_none),
    }
}

/// Procore's v4 payload: ids are strings, `reason` and `resource_type` replace
/// `event_type` and `resource_name`.
///
/// ```
/// use hookguard_core::envelope::ProcoreV4Event;
/// let e: ProcoreV4Event = serde_json::from_str(r#"{"id":"01J0000000000000000000000A","timestamp":"2026-01-01T00:00:00Z","company_id":"6452","project_id":"1","user_id":"2","reason":"create","resource_type":"RFIs","resource_id":"3"}"#).unwrap();
/// assert_eq!(e.reason, "create");
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct ProcoreV4Event {
    /// A ULID, the dedupe key.
    pub id: String,
    /// UTC time.
    pub timestamp: String,
    /// Company.
    pub company_id: Option<String>,
    /// Project.
    pub project_id: Option<String>,
    /// User.
    pub user_id: Option<String>,
    /// `create`, `update`, `delete` or newer values.
    pub reason: String,
    /// e.g. `RFIs`.
    pub resource_type: String,
    /// The changed resource.
    pub resource_id: String,
    /// Optional data.
    pub data: Option<Value>,
}

json_struct! {
    Serialize, Deserialize for ProcoreV4Event {
        id: "id",
        timestamp: "timestamp",
        company_id: "company_id" (default),
        project_id: "project_id" (default),
        user_id: "user_id" (default),
        reason: "reason",
        resource_type: "resource_type",
        resource_id: "resource_id",
        data: "data" (default, skip_none),
    }
}

/// Any Procore payload.
///
/// ```
/// use hookguard_core::envelope::ProcoreEvent;
/// let e: ProcoreEvent = serde_json::from_str(r#"{"id":"01J0000000000000000000000A","timestamp":"t","reason":"update","resource_type":"RFIs","resource_id":"3"}"#).unwrap();
/// assert!(matches!(e, ProcoreEvent::V4(_)));
/// let e: ProcoreEvent = serde_json::from_str(r#"{"id":"x","event":"new"}"#).unwrap();
/// assert!(matches!(e, ProcoreEvent::Other(_)));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub enum ProcoreEvent {
    /// v2/v3.
    Legacy(ProcoreLegacyEvent),
    /// v4.
    V4(ProcoreV4Event),
    /// A shape neither v2/v3 nor v4 matches (a future version): the raw JSON.
    Other(Value),
}

json_untagged! {
    ProcoreEvent {
        Legacy(ProcoreLegacyEvent),
        V4(ProcoreV4Event),
    }
}

/// HeavyBid Pre-Construction `data`.
///
/// ```
/// use hookguard_core::envelope::HcssPreConstructionData;
/// let d: HcssPreConstructionData = serde_json::from_str(r#"{"companyId":"c","businessUnitId":"b","projectId":"p"}"#).unwrap();
/// assert_eq!(d.project_id.as_deref(), Some("p"));
/// assert_eq!(d.schema_id, None); // a project event
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HcssPreConstructionData {
    /// Company GUID.
    pub company_id: String,
    /// Business unit GUID.
    pub business_unit_id: String,
    /// Project GUID (project events).
    pub project_id: Option<String>,
    /// Schema id (schema events).
    pub schema_id: Option<String>,
}

json_struct! {
    Serialize, Deserialize for HcssPreConstructionData {
        company_id: "companyId",
        business_unit_id: "businessUnitId",
        project_id: "projectId" (default),
        schema_id: "schemaId" (default),
    }
}

/// A HeavyBid Pre-Construction event (`ProjectCreated`, `ProjectChanged`, `ProjectDeleted`, `SchemaChanged`).
///
/// ```
/// use hookguard_core::envelope::HcssPreConstructionEvent;
/// let e: HcssPreConstructionEvent = serde_json::from_str(r#"{"eventSource":"HeavyBid Pre-Construction","eventType":"ProjectCreated","version":"1","date":"2019-09-10T16:12:29Z","data":{"companyId":"c","businessUnitId":"b","projectId":"p"}}"#).unwrap();
/// assert_eq!(e.event_type, "ProjectCreated");
/// assert_eq!(e.data.business_unit_id, "b");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HcssPreConstructionEvent {
    /// `HeavyBid Pre-Construction`.
    pub event_source: String,
    /// The event type.
    pub event_type: String,
    /// Link to the entity.
    pub entity_url: Option<String>,
    /// Payload version.
    pub version: Option<String>,
    /// UTC time.
    pub date: String,
    /// The ids.
    pub data: HcssPreConstructionData,
}

json_struct! {
    Serialize, Deserialize for HcssPreConstructionEvent {
        event_source: "eventSource",
        event_type: "eventType",
        entity_url: "entityUrl" (default),
        version: "version" (default),
        date: "date",
        data: "data",
    }
}

/// A Setups event (`Employee|Equipment|Location|BusinessUnit` × `Created|Updated|Deleted`).
///
/// ```
/// use hookguard_core::envelope::HcssSetupsEvent;
/// let e: HcssSetupsEvent = serde_json::from_str(r#"{"companyId":"c","eventType":"EmployeeUpdated","businessUnitId":"b","id":"e"}"#).unwrap();
/// assert_eq!((e.event_type.as_str(), e.id.as_str()), ("EmployeeUpdated", "e"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HcssSetupsEvent {
    /// Company GUID.
    pub company_id: String,
    /// The event type.
    pub event_type: String,
    /// Business unit GUID.
    pub business_unit_id: String,
    /// The entity's id.
    pub id: String,
}

json_struct! {
    Serialize, Deserialize for HcssSetupsEvent {
        company_id: "companyId",
        event_type: "eventType",
        business_unit_id: "businessUnitId",
        id: "id",
    }
}

/// A HeavyJob event (`CostCodeCreated|Updated|Deleted`).
///
/// ```
/// use hookguard_core::envelope::HcssHeavyJobEvent;
/// let e: HcssHeavyJobEvent = serde_json::from_str(r#"{"companyId":"c","eventType":"CostCodeUpdated","jobId":"j","costCodeId":"k"}"#).unwrap();
/// assert_eq!((e.job_id.as_str(), e.cost_code_id.as_str()), ("j", "k"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HcssHeavyJobEvent {
    /// Company GUID.
    pub company_id: String,
    /// The event type.
    pub event_type: String,
    /// Job GUID.
    pub job_id: String,
    /// Cost code GUID.
    pub cost_code_id: String,
}

json_struct! {
    Serialize, Deserialize for HcssHeavyJobEvent {
        company_id: "companyId",
        event_type: "eventType",
        job_id: "jobId",
        cost_code_id: "costCodeId",
    }
}

/// Any HCSS event.
///
/// ```
/// use hookguard_core::envelope::HcssEvent;
/// let e: HcssEvent = serde_json::from_str(r#"{"companyId":"c","eventType":"CostCodeUpdated","jobId":"j","costCodeId":"k"}"#).unwrap();
/// assert!(matches!(e, HcssEvent::HeavyJob(_)));
/// let e: HcssEvent = serde_json::from_str(r#"{"eventSource":"HeavyBid Pre-Construction","eventType":"ProjectCreated","version":"1","date":"2019-09-10T16:12:29Z","data":{"companyId":"c","businessUnitId":"b","projectId":"p"}}"#).unwrap();
/// assert!(matches!(e, HcssEvent::PreConstruction(_)));
/// let e: HcssEvent = serde_json::from_str(r#"{"eventType":"CrewCreated","crewId":"x"}"#).unwrap();
/// assert!(matches!(e, HcssEvent::Other(_)));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub enum HcssEvent {
    /// HeavyBid Pre-Construction.
    PreConstruction(HcssPreConstructionEvent),
    /// HeavyJob.
    HeavyJob(HcssHeavyJobEvent),
    /// Setups.
    Setups(HcssSetupsEvent),
    /// A shape we did not model (another HCSS product, a changed field): the raw JSON.
    Other(Value),
}

json_untagged! {
    HcssEvent {
        PreConstruction(HcssPreConstructionEvent),
        HeavyJob(HcssHeavyJobEvent),
        Setups(HcssSetupsEvent),
    }
}

/// A Standard Webhooks payload: `{type, timestamp, data}`.
///
/// ```
/// use hookguard_core::envelope::StandardEvent;
/// let e: StandardEvent = serde_json::from_str(r#"{"type":"invoice.paid","timestamp":"2026-01-01T00:00:00Z","data":{"amount":100}}"#).unwrap();
/// assert_eq!(e.event_type, "invoice.paid");
/// assert_eq!(e.data["amount"], 100);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct StandardEvent<D = Value> {
    /// The event type.
    pub event_type: String,
    /// RFC 3339 time.
    pub timestamp: String,
    /// The data.
    pub data: D,
}

json_struct! {
    Serialize, Deserialize for StandardEvent<D> {
        event_type: "type",
        timestamp: "timestamp",
        data: "data",
    }
}

#[cfg(test)]
mod tests {
    use serde::de::DeserializeOwned;
    use serde::Serialize;
    use serde_json::json;

    use super::*;

    /// Serialized, then read back: the same value, and the JSON `want`.
    fn round_trip<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(t: T, want: Value) {
        let text = serde_json::to_string(&t).unwrap();
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), want);
        assert_eq!(serde_json::from_str::<T>(&text).unwrap(), t);
        assert_eq!(serde_json::from_value::<T>(want).unwrap(), t);
    }

    fn s(v: &str) -> String {
        v.to_owned()
    }

    fn legacy() -> ProcoreLegacyEvent {
        ProcoreLegacyEvent {
            id: 5982324300946918154,
            ulid: s("01EDPD2J6SBY1163N77H95GW09"),
            timestamp: s("t"),
            metadata: Some(ProcoreMetadata {
                source_user_id: Some(1),
                ..Default::default()
            }),
            user_id: None,
            company_id: Some(2),
            project_id: None,
            api_version: s("v3"),
            event_type: s("create"),
            resource_name: s("RFIs"),
            resource_id: 3,
            related_resources: Some(vec![ProcoreRelatedResource { id: 4, name: s("n") }]),
        }
    }

    fn v4() -> ProcoreV4Event {
        ProcoreV4Event {
            id: s("01J0000000000000000000000A"),
            timestamp: s("t"),
            company_id: Some(s("6452")),
            project_id: None,
            user_id: None,
            reason: s("update"),
            resource_type: s("RFIs"),
            resource_id: s("3"),
            data: None,
        }
    }

    fn pre_construction() -> HcssPreConstructionEvent {
        HcssPreConstructionEvent {
            event_source: s("HeavyBid Pre-Construction"),
            event_type: s("ProjectCreated"),
            entity_url: None,
            version: Some(s("1")),
            date: s("d"),
            data: HcssPreConstructionData {
                company_id: s("c"),
                business_unit_id: s("b"),
                project_id: Some(s("p")),
                schema_id: None,
            },
        }
    }

    fn heavy_job() -> HcssHeavyJobEvent {
        HcssHeavyJobEvent {
            company_id: s("c"),
            event_type: s("CostCodeCreated"),
            job_id: s("j"),
            cost_code_id: s("k"),
        }
    }

    fn setups() -> HcssSetupsEvent {
        HcssSetupsEvent {
            company_id: s("c"),
            event_type: s("EmployeeCreated"),
            business_unit_id: s("b"),
            id: s("e"),
        }
    }

    #[test]
    fn buildworkpro_round_trip() {
        let e = BuildWorkProEvent {
            id: s("evt_1"),
            event_type: s("bid.accepted"),
            created_at: None,
            tenant_id: Some(17),
            data: Some(json!({"id": 9})),
            previous_attributes: None,
        };
        // `None`s are left out.
        round_trip(
            e,
            json!({"id": "evt_1", "type": "bid.accepted", "tenant_id": 17, "data": {"id": 9}}),
        );
        let e: BuildWorkProEvent<u8> = BuildWorkProEvent {
            id: s("evt_2"),
            event_type: s("x"),
            created_at: Some(s("t")),
            tenant_id: None,
            data: None,
            previous_attributes: Some(json!({"a": 1})),
        };
        round_trip(
            e,
            json!({"id": "evt_2", "type": "x", "created_at": "t", "previous_attributes": {"a": 1}}),
        );
    }

    #[test]
    fn procore_round_trip() {
        let want = json!({
            "id": 5982324300946918154u64, "ulid": "01EDPD2J6SBY1163N77H95GW09", "timestamp": "t",
            "metadata": {"source_user_id": 1, "source_project_id": null, "source_operation_id": null,
                         "source_company_id": null, "source_application_id": null},
            "user_id": null, "company_id": 2, "project_id": null, "api_version": "v3", "event_type": "create",
            "resource_name": "RFIs", "resource_id": 3, "related_resources": [{"id": 4, "name": "n"}],
        });
        round_trip(legacy(), want.clone());
        round_trip(ProcoreEvent::Legacy(legacy()), want);
        let want = json!({
            "id": "01J0000000000000000000000A", "timestamp": "t", "company_id": "6452", "project_id": null,
            "user_id": null, "reason": "update", "resource_type": "RFIs", "resource_id": "3",
        });
        round_trip(v4(), want.clone());
        round_trip(ProcoreEvent::V4(v4()), want);
        round_trip(
            ProcoreMetadata::default(),
            json!({"source_user_id": null, "source_project_id": null, "source_operation_id": null, "source_company_id": null, "source_application_id": null}),
        );
        round_trip(
            ProcoreRelatedResource { id: 1, name: s("n") },
            json!({"id": 1, "name": "n"}),
        );
        let other = json!({"id": "x", "event": "new"});
        round_trip(ProcoreEvent::Other(other.clone()), other);
    }

    #[test]
    fn procore_untagged_order_and_fallback() {
        // Legacy is tried first: a body that is both is Legacy.
        let mut both = serde_json::to_value(legacy()).unwrap();
        both.as_object_mut()
            .unwrap()
            .extend([(s("reason"), json!("r")), (s("resource_type"), json!("RFIs"))]);
        assert!(matches!(
            serde_json::from_value(both.clone()).unwrap(),
            ProcoreEvent::Legacy(_)
        ));
        // With v4's string ids it is not Legacy but V4.
        both["id"] = json!("01J0000000000000000000000A");
        both["resource_id"] = json!("3");
        both["company_id"] = json!("2");
        assert!(matches!(
            serde_json::from_value(both.clone()).unwrap(),
            ProcoreEvent::V4(_)
        ));
        // Neither (a field of the wrong type): `Other`, holding the body unchanged.
        both["timestamp"] = json!(1);
        assert_eq!(
            serde_json::from_value::<ProcoreEvent>(both.clone()).unwrap(),
            ProcoreEvent::Other(both)
        );
        assert_eq!(
            serde_json::from_str::<ProcoreEvent>("[1]").unwrap(),
            ProcoreEvent::Other(json!([1]))
        );
        assert!(serde_json::from_str::<ProcoreEvent>("{").is_err());
    }

    #[test]
    fn hcss_round_trip_and_fallback() {
        let want = json!({
            "eventSource": "HeavyBid Pre-Construction", "eventType": "ProjectCreated", "entityUrl": null,
            "version": "1", "date": "d",
            "data": {"companyId": "c", "businessUnitId": "b", "projectId": "p", "schemaId": null},
        });
        round_trip(pre_construction(), want.clone());
        round_trip(HcssEvent::PreConstruction(pre_construction()), want);
        let want = json!({"companyId": "c", "eventType": "CostCodeCreated", "jobId": "j", "costCodeId": "k"});
        round_trip(heavy_job(), want.clone());
        round_trip(HcssEvent::HeavyJob(heavy_job()), want);
        let want = json!({"companyId": "c", "eventType": "EmployeeCreated", "businessUnitId": "b", "id": "e"});
        round_trip(setups(), want.clone());
        round_trip(HcssEvent::Setups(setups()), want);
        // HeavyJob is tried before Setups.
        let both = json!({"companyId": "c", "eventType": "e", "businessUnitId": "b", "id": "e", "jobId": "j", "costCodeId": "k"});
        assert!(matches!(serde_json::from_value(both).unwrap(), HcssEvent::HeavyJob(_)));
        // The field names are camelCase: snake_case is `Other`.
        let snake = json!({"company_id": "c", "event_type": "e", "job_id": "j", "cost_code_id": "k"});
        assert_eq!(
            serde_json::from_value::<HcssEvent>(snake.clone()).unwrap(),
            HcssEvent::Other(snake.clone())
        );
        round_trip(HcssEvent::Other(snake.clone()), snake);
    }

    #[test]
    fn standard_round_trip() {
        let e = StandardEvent {
            event_type: s("invoice.paid"),
            timestamp: s("t"),
            data: json!({"id": 1}),
        };
        round_trip(e, json!({"type": "invoice.paid", "timestamp": "t", "data": {"id": 1}}));
        let e: StandardEvent<Option<u8>> = StandardEvent {
            event_type: s("x"),
            timestamp: s("t"),
            data: None,
        };
        round_trip(e, json!({"type": "x", "timestamp": "t", "data": null}));
        // A missing field names its JSON name (what `Delivery::json` reports).
        let err = serde_json::from_str::<StandardEvent>(r#"{"type":"x","data":1}"#).unwrap_err();
        assert_eq!(err.to_string(), "missing field `timestamp` at line 1 column 21");
        let err = serde_json::from_str::<ProcoreLegacyEvent>(r#"{"id":1}"#).unwrap_err();
        assert_eq!(err.to_string(), "missing field `ulid` at line 1 column 8");
        let err =
            serde_json::from_str::<HcssHeavyJobEvent>(r#"{"companyId":"c","eventType":"e","jobId":"j"}"#).unwrap_err();
        assert_eq!(err.to_string(), "missing field `costCodeId` at line 1 column 45");
    }
}
