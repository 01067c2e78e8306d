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

use serde::{Deserialize, Serialize};
use serde_json::Value;

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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BuildWorkProEvent<D = Value> {
    /// `evt_…`, stable across retries and replays.
    pub id: String,
    /// e.g. `bid.accepted`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// RFC 3339 time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    /// The tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<u64>,
    /// The record (camelCase keys).
    #[serde(default = "none", skip_serializing_if = "Option::is_none")]
    pub data: Option<D>,
    /// Changed attributes' previous values, on updates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_attributes: Option<Value>,
}

fn none<D>() -> Option<D> {
    None
}

/// Procore's `metadata` (any field may be null).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcoreMetadata {
    /// The user that caused the change.
    #[serde(default)]
    pub source_user_id: Option<u64>,
    /// The project.
    #[serde(default)]
    pub source_project_id: Option<u64>,
    /// The operation.
    #[serde(default)]
    pub source_operation_id: Option<u64>,
    /// The company.
    #[serde(default)]
    pub source_company_id: Option<u64>,
    /// The application that caused the change (filter your own to avoid loops).
    #[serde(default)]
    pub source_application_id: Option<Value>,
}

/// A related resource (Procore v3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcoreRelatedResource {
    /// Its id.
    pub id: u64,
    /// Its name.
    pub name: String,
}

/// Procore's legacy payload (v2, and v3 with `related_resources`).
///
/// ```
/// use hookguard_core::envelope::ProcoreLegacyEvent;
/// let e: ProcoreLegacyEvent = serde_json::from_str(r#"{"api_version":"v2","company_id":6452,"event_type":"create","id":5982324300946918154,"metadata":{"source_application_id":null,"source_company_id":6452,"source_operation_id":null,"source_project_id":219542,"source_user_id":1469242},"project_id":219542,"resource_id":245510722,"resource_name":"Purchase Order Contract Line Items","timestamp":"2020-07-20T15:22:01.353581Z","ulid":"01EDPD2J6SBY1163N77H95GW09","user_id":1469242}"#).unwrap();
/// assert_eq!(e.id, 5982324300946918154);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcoreLegacyEvent {
    /// The event id (can exceed 2^53).
    pub id: u64,
    /// 26-character ULID, the dedupe key.
    pub ulid: String,
    /// UTC time.
    pub timestamp: String,
    /// Context.
    #[serde(default)]
    pub metadata: Option<ProcoreMetadata>,
    /// User.
    #[serde(default)]
    pub user_id: Option<u64>,
    /// Company.
    #[serde(default)]
    pub company_id: Option<u64>,
    /// Project.
    #[serde(default)]
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub related_resources: Option<Vec<ProcoreRelatedResource>>,
}

/// Procore's v4 payload: ids are strings, `reason` and `resource_type` replace
/// `event_type` and `resource_name`.
///
/// ```
/// use hookguard_core::envelope::ProcoreV4Event;
/// let e: ProcoreV4Event = serde_json::from_str(r#"{"id":"01J0000000000000000000000A","timestamp":"2026-01-01T00:00:00Z","company_id":"6452","project_id":"1","user_id":"2","reason":"create","resource_type":"RFIs","resource_id":"3"}"#).unwrap();
/// assert_eq!(e.reason, "create");
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcoreV4Event {
    /// A ULID, the dedupe key.
    pub id: String,
    /// UTC time.
    pub timestamp: String,
    /// Company.
    #[serde(default)]
    pub company_id: Option<String>,
    /// Project.
    #[serde(default)]
    pub project_id: Option<String>,
    /// User.
    #[serde(default)]
    pub user_id: Option<String>,
    /// `create`, `update`, `delete` or newer values.
    pub reason: String,
    /// e.g. `RFIs`.
    pub resource_type: String,
    /// The changed resource.
    pub resource_id: String,
    /// Optional data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ProcoreEvent {
    /// v2/v3.
    Legacy(ProcoreLegacyEvent),
    /// v4.
    V4(ProcoreV4Event),
    /// A shape neither v2/v3 nor v4 matches (a future version): the raw JSON.
    Other(Value),
}

/// HeavyBid Pre-Construction `data`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HcssPreConstructionData {
    /// Company GUID.
    pub company_id: String,
    /// Business unit GUID.
    pub business_unit_id: String,
    /// Project GUID (project events).
    #[serde(default)]
    pub project_id: Option<String>,
    /// Schema id (schema events).
    #[serde(default)]
    pub schema_id: Option<String>,
}

/// A HeavyBid Pre-Construction event (`ProjectCreated`, `ProjectChanged`, `ProjectDeleted`, `SchemaChanged`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HcssPreConstructionEvent {
    /// `HeavyBid Pre-Construction`.
    pub event_source: String,
    /// The event type.
    pub event_type: String,
    /// Link to the entity.
    #[serde(default)]
    pub entity_url: Option<String>,
    /// Payload version.
    #[serde(default)]
    pub version: Option<String>,
    /// UTC time.
    pub date: String,
    /// The ids.
    pub data: HcssPreConstructionData,
}

/// A Setups event (`Employee|Equipment|Location|BusinessUnit` × `Created|Updated|Deleted`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
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

/// A HeavyJob event (`CostCodeCreated|Updated|Deleted`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
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

/// A Standard Webhooks payload: `{type, timestamp, data}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StandardEvent<D = Value> {
    /// The event type.
    #[serde(rename = "type")]
    pub event_type: String,
    /// RFC 3339 time.
    pub timestamp: String,
    /// The data.
    pub data: D,
}
