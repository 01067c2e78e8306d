//! `serve --metrics ADDR`: the core's metrics (see `hookguard_core::observe`) in the Prometheus
//! text format at `http://ADDR/metrics`. The recorder is `metrics-exporter-prometheus` without
//! its own HTTP listener: a small axum router serves the rendered text.

use std::time::Duration;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::common::{failed, CliResult};

/// Bucket bounds (seconds) of the `_seconds` histograms: verification takes microseconds, a
/// durable commit milliseconds, a handler up to the sender's timeout — with bounds at the
/// senders' timeouts (Slack 3 s, Procore 5 s, APS 6 s, BuildWorkPro 10 s) and up to an inbox
/// handler's default limit (48 s of a 60 s lease), which all fell in one 2.5–10 s bucket or
/// beyond the last (a review).
const BUCKETS: [f64; 21] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 3.0, 5.0,
    6.0, 10.0, 30.0, 60.0,
];

/// The metric table of `hookguard_core::observe`, as `# HELP` lines.
const DESCRIPTIONS: [(&str, &str); 9] = [
    (
        "hookguard_answers_total",
        "Every answer by provider and outcome (handled, handler_failed, accepted, duplicate, ignored, challenge, rejected; code = the stable rejection code).",
    ),
    (
        "hookguard_handler_outcomes_total",
        "Inline handler runs: success, failure (non-2xx or error), timeout.",
    ),
    (
        "hookguard_inbox_transitions_total",
        "Inbox transitions: accepted, done, retried, deferred, dead, lost, replayed, purged.",
    ),
    (
        "hookguard_verify_seconds",
        "Time to authenticate and describe one delivery.",
    ),
    (
        "hookguard_handler_seconds",
        "One handler run (inline or from the inbox).",
    ),
    (
        "hookguard_accept_seconds",
        "Storing one delivery in the inbox (the durable commit).",
    ),
    (
        "hookguard_inbox_items",
        "Inbox items per state (pending, running, done, dead), sampled by the worker.",
    ),
    (
        "hookguard_inbox_oldest_pending_seconds",
        "Age of the oldest pending inbox item.",
    ),
    (
        "hookguard_sender_consecutive_failures",
        "Failed answers (non-2xx, or later than the sender waits) given to the sender in a row, to compare with its kill switch.",
    ),
];

/// Installs the Prometheus recorder as the global `metrics` recorder. Call before the receiver
/// answers anything: metrics recorded earlier are lost.
pub fn install() -> CliResult<PrometheusHandle> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &BUCKETS)
        .and_then(PrometheusBuilder::install_recorder)
        .map_err(|e| failed(format!("cannot install the metrics recorder: {e}")))?;
    for (name, help) in DESCRIPTIONS {
        match name {
            n if n.ends_with("_total") => metrics::describe_counter!(name, help),
            "hookguard_inbox_items"
            | "hookguard_inbox_oldest_pending_seconds"
            | "hookguard_sender_consecutive_failures" => metrics::describe_gauge!(name, help),
            _ => metrics::describe_histogram!(name, metrics::Unit::Seconds, help),
        }
    }
    Ok(handle)
}

async fn scrape(State(handle): State<PrometheusHandle>) -> Response {
    (
        [
            (http::header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8"),
            (http::header::CACHE_CONTROL, "no-store"),
        ],
        handle.render(),
    )
        .into_response()
}

/// Serves `GET /metrics` on `listener` until the task is aborted, and drains the histograms
/// every 5 s (the recorder's upkeep).
pub fn spawn(listener: tokio::net::TcpListener, handle: PrometheusHandle) -> Vec<tokio::task::JoinHandle<()>> {
    let hosts = listener.local_addr().ok().and_then(super::ui::loopback_hosts);
    let upkeep = {
        let handle = handle.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(5));
            loop {
                every.tick().await;
                handle.run_upkeep();
            }
        })
    };
    // On loopback, only by its own name (a DNS-rebinding page cannot read it).
    let app = Router::new()
        .route("/metrics", get(scrape))
        .with_state(handle)
        .layer(axum::middleware::from_fn(
            move |req: axum::extract::Request, next: axum::middleware::Next| {
                let refused = super::ui::wrong_host(hosts.as_deref(), req.headers());
                async move {
                    match refused {
                        Some(r) => r,
                        None => next.run(req).await,
                    }
                }
            },
        ));
    let server = tokio::spawn(super::http_server::serve(
        listener,
        app,
        std::future::pending(),
        super::http_server::Limits::EXTRAS,
    ));
    vec![upkeep, server]
}
