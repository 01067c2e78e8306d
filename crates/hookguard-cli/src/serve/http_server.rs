//! The HTTP/1.1 server under `serve`'s routes: what `axum::serve` does, plus a bound on the
//! time a connection may take to send a request head.
//!
//! `axum::serve` gives hyper no timer, so hyper's header read timeout never runs: a client that
//! sent half a request head (or nothing at all) held its connection for ever, and graceful
//! shutdown waited for it — one such connection kept `serve` from exiting on SIGTERM. Here
//! each connection has hyper's header read timeout (`--header-timeout`, default 30 s): one
//! limit for a kept-alive connection's idle time plus the next request's head (hyper starts
//! the timer when it waits for a head). When it fires the connection is closed without an
//! answer. The body's own bound is the receiver's (`408 body_read_timeout`). On shutdown a
//! connection finishes the request it is answering; one with nothing in hand is closed.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
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
/// connection finish the request it is answering, closes the others, and returns once all
/// are closed.
pub async fn serve(listener: TcpListener, app: Router, stop: impl Future<Output = ()>, head_timeout: Duration) {
    // Told to clients that read it (Node's undici, for one), a second short of the real bound:
    // they stop reusing an idle connection before the server closes it under a new request.
    let keep_alive = (head_timeout >= Duration::from_secs(2))
        .then(|| http::HeaderValue::from_str(&format!("timeout={}", head_timeout.as_secs() - 1)).ok())
        .flatten();
    let (stopping_tx, stopping) = watch::channel(false);
    // Every connection's task holds a receiver; all dropped means all closed.
    let (closed_tx, closed) = watch::channel(());
    tokio::pin!(stop);
    loop {
        let accepted = tokio::select! {
            biased;
            () = &mut stop => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                // Out of file descriptors and the like: as axum does, wait and go on.
                tracing::error!(error = %e, "accept failed; retrying in 1 s");
                tokio::select! {
                    biased;
                    () = &mut stop => break,
                    () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            }
        };
        let in_hand = Arc::new(AtomicUsize::new(0));
        let service = {
            let app = app.clone();
            let in_hand = Arc::clone(&in_hand);
            let keep_alive = keep_alive.clone();
            hyper::service::service_fn(move |req: http::Request<Incoming>| {
                let answering = InHand::enter(&in_hand);
                let answer = app.clone().call(req.map(Body::new));
                let keep_alive = keep_alive.clone();
                async move {
                    let mut answer = answer.await;
                    drop(answering);
                    if let (Ok(r), Some(v)) = (&mut answer, keep_alive) {
                        r.headers_mut()
                            .entry(http::header::HeaderName::from_static("keep-alive"))
                            .or_insert(v);
                    }
                    answer
                }
            })
        };
        let mut stopping = stopping.clone();
        let held = closed.clone();
        tokio::spawn(async move {
            {
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(head_timeout)
                    .serve_connection(TokioIo::new(stream), service);
                tokio::pin!(conn);
                tokio::select! {
                    _ = conn.as_mut() => {}
                    () = async { drop(stopping.wait_for(|s| *s).await) } => {
                        // Finish the request in hand, then close: at once when idle, after
                        // about a second with nothing in hand — a client still sending a head
                        // would otherwise hold the shutdown until its head timeout.
                        conn.as_mut().graceful_shutdown();
                        loop {
                            let busy = in_hand.load(Ordering::Acquire) > 0;
                            tokio::select! {
                                _ = conn.as_mut() => break,
                                () = tokio::time::sleep(Duration::from_secs(1)) => {
                                    if !busy && in_hand.load(Ordering::Acquire) == 0 {
                                        break;
                                    }
                                }
                            }
                        }
                    }
                }
            }
            // Only once the connection (and its copy of the router) is gone.
            drop(held);
        });
    }
    drop(listener);
    let _ = stopping_tx.send(true);
    drop(closed);
    closed_tx.closed().await;
}

/// Counts a request from the moment hyper hands it over until its answer is ready (also
/// when the connection drops it).
struct InHand(Arc<AtomicUsize>);

impl InHand {
    fn enter(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::AcqRel);
        InHand(Arc::clone(count))
    }
}

impl Drop for InHand {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
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
