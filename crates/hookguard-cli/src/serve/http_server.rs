//! The HTTP/1.1 server under `serve`'s routes: what `axum::serve` does, plus a bound on the
//! time a connection may take to send a request head.
//!
//! `axum::serve` gives hyper no timer, so hyper's header read timeout never runs: a client that
//! sent half a request head (or nothing at all) held its connection for ever, and graceful
//! shutdown waited for it — one such connection kept `serve` from exiting on SIGTERM. Here
//! each connection has hyper's header read timeout (`--header-timeout`, default 30 s): the
//! head must be complete within it, and an idle keep-alive connection is closed after it. The
//! body's own bound is the receiver's (`408 body_read_timeout`).

use std::future::Future;
use std::time::Duration;

use axum::body::Body;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower_service::Service;

/// The header read timeout of the metrics endpoint and the inspector (`--header-timeout`'s
/// default).
pub const EXTRAS_HEAD_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves `app` on `listener` until `stop` completes; then stops accepting, lets each
/// connection finish the request it is answering, and returns once all are closed.
pub async fn serve(listener: TcpListener, app: Router, stop: impl Future<Output = ()>, head_timeout: Duration) {
    let (stopping_tx, stopping) = watch::channel(false);
    // Every connection's task holds a receiver; all dropped means all closed.
    let (closed_tx, closed) = watch::channel(());
    tokio::pin!(stop);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: as axum does, wait and go on.
                    if !is_connection_error(&e) {
                        tracing::error!(error = %e, "accept failed; retrying in 1 s");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    continue;
                }
            },
            () = &mut stop => break,
        };
        let app = app.clone();
        let service = hyper::service::service_fn(move |req: http::Request<Incoming>| {
            let mut app = app.clone();
            app.call(req.map(Body::new))
        });
        let mut stopping = stopping.clone();
        let held = closed.clone();
        tokio::spawn(async move {
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(head_timeout)
                .serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                () = async { drop(stopping.wait_for(|s| *s).await) } => {
                    // Finishes the request in hand (if any), then closes.
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.as_mut().await;
                }
            }
            drop(held);
        });
    }
    drop(listener);
    let _ = stopping_tx.send(true);
    drop(closed);
    closed_tx.closed().await;
}

/// Errors of one connection, not of the listener (axum's list).
fn is_connection_error(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
}
