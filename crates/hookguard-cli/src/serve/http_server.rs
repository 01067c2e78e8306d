//! The HTTP/1.1 server under `serve`'s routes: what `axum::serve` does, plus bounds on how
//! long a connection may be held and on how many are open at once.
//!
//! `axum::serve` gives hyper no timer, so hyper's header read timeout never runs: a client that
//! sent half a request head (or nothing at all) held its connection for ever, and graceful
//! shutdown waited for it — one such connection kept `serve` from exiting on SIGTERM. Here
//! each connection has a head timeout (`--header-timeout`, default 30 s): one limit for a
//! kept-alive connection's idle time plus the next request's head, counted from the
//! connection's start or its last answer; bytes arriving do not extend it. When it is over the
//! connection is closed without an answer. One sweep a second (a quarter of the timeout when
//! that is shorter) looks at every connection, instead of hyper's timer, which was set and
//! cleared around every request. The body's own bound is the receiver's (`408 body_read_timeout`). An answer that
//! cannot be written for `--write-timeout` (a client that sends requests and never reads the
//! answers fills the socket's buffers, then every write waits) closes the connection too.
//! At most `--max-connections` are open at once; beyond it new ones wait in the kernel's
//! listen queue (the sender sees a slow connect, not an error answer) until one closes, so a
//! flood of connections cannot take the file descriptors the inbox and `--exec` need. When
//! someone connects while every place is taken, the connection that has had no request in hand
//! and received nothing for longest (a second at least: an idle kept-alive one, a stalled
//! head) is closed to make room, one per half second while someone waits — only then: at the
//! limit with nobody waiting, kept-alive connections stay. On shutdown a connection finishes
//! the request it is answering; one with nothing in hand is closed.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use hookguard_core::clock::Clock as _;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::time::Sleep;
use tower_service::Service;

use crate::common::CoarseClock;

/// How long a connection may be held, and how many may be open.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Idle time of a kept-alive connection plus the time to send the next request head.
    pub head_timeout: Duration,
    /// The longest a write may make no progress (the client does not read).
    pub write_timeout: Duration,
    /// Connections open at once; more wait in the listen queue.
    pub max_connections: usize,
}

impl Limits {
    /// The metrics endpoint's and the inspector's: `serve`'s defaults, and few connections
    /// (one scraper, one browser).
    pub const EXTRAS: Limits = Limits {
        head_timeout: Duration::from_secs(30),
        write_timeout: Duration::from_secs(30),
        max_connections: 64,
    };
}

/// What [`serve`] serves: an axum `Router`, or any service like one (cloned per connection
/// and per request, always ready, never failing).
pub trait App:
    Service<
        http::Request<Body>,
        Response = axum::response::Response,
        Error = std::convert::Infallible,
        Future = Self::Fut,
    > + Clone
    + Send
    + 'static
{
    /// The answer's future.
    type Fut: Future<Output = Result<axum::response::Response, std::convert::Infallible>> + Send + 'static;
}

impl<S> App for S
where
    S: Service<http::Request<Body>, Response = axum::response::Response, Error = std::convert::Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Fut = S::Future;
}

/// A request's share of its connection's place under `--max-connections` and of the wait at
/// a stop, in the request's extensions: an application that goes on with a request after its
/// connection closed (the webhook layer finishes a request whose sender hung up, its handler
/// included) keeps it until it is done, so the limit bounds those requests too (each may hold
/// an `--exec` command's descriptors) and a stop waits for them.
#[derive(Clone)]
pub struct ConnectionShare(#[allow(dead_code)] Arc<(tokio::sync::OwnedSemaphorePermit, watch::Receiver<()>)>);

/// File descriptors kept for everything but connections (the inbox's files, `--exec`'s pipes,
/// the metrics endpoint and the inspector).
const RESERVED_DESCRIPTORS: u64 = 256;

/// The connections the process's open-file limit has room for: what it leaves after
/// [`RESERVED_DESCRIPTORS`] and `reserved` more, each connection taking `per_connection`;
/// `None` where the limit cannot be read (or is unlimited). A `--max-connections` above it is
/// refused: accepts would fail for want of descriptors, and idle connections would not be
/// closed to make room (they are only when the limit is full).
pub fn descriptor_room(per_connection: u64, reserved: u64) -> Option<u64> {
    #[cfg(target_os = "linux")]
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile).current;
    #[cfg(not(target_os = "linux"))]
    let limit: Option<u64> = None;
    limit.map(|l| l.saturating_sub(RESERVED_DESCRIPTORS + reserved) / per_connection.max(1))
}

/// [`descriptor_room`] for a default: at least 64 and at most 65,536 (the limit taken as 1,024
/// where it cannot be read).
pub fn descriptor_max_connections(per_connection: u64, reserved: u64) -> usize {
    let open = descriptor_room(per_connection, reserved)
        .unwrap_or_else(|| 1_024u64.saturating_sub(RESERVED_DESCRIPTORS + reserved) / per_connection.max(1));
    usize::try_from(open.clamp(64, 65_536)).unwrap_or(65_536)
}

/// The most connections `--max-connections` allows by default, whatever the descriptors allow:
/// each may hold a head (up to [`MAX_HEAD_BUFFER`]) and a body (up to `--max-body`) in memory,
/// so memory is bounded by this many of both (a tryout held 2.8 GB with 2,000 connections
/// each sending a 1 MiB body slowly, under a default of 19,744 connections).
pub const DEFAULT_MAX_CONNECTIONS: usize = 1_024;

/// `--max-connections`' default: [`descriptor_max_connections`], at most
/// [`DEFAULT_MAX_CONNECTIONS`].
pub fn default_max_connections(per_connection: u64, reserved: u64) -> usize {
    descriptor_max_connections(per_connection, reserved).min(DEFAULT_MAX_CONNECTIONS)
}

/// The most a connection's read buffer holds (hyper's default is ~400 KB): a request head
/// that does not fit is refused `431`. Webhook heads are a few KB; 1,000 connections sending
/// heads that never end held 400 MB.
pub const MAX_HEAD_BUFFER: usize = 64 * 1024;

/// Serves `app` on `listener` until `stop` completes; then stops accepting, lets each
/// connection finish the request it is answering, closes the others, and returns once all
/// are closed.
pub async fn serve<A: App>(listener: TcpListener, app: A, stop: impl Future<Output = ()>, limits: Limits) {
    let Limits {
        head_timeout,
        write_timeout,
        max_connections,
    } = limits;
    let slots = Arc::new(Semaphore::new(max_connections.max(1)));
    let mut warned_at: Option<Instant> = None;
    // The open connections, so that one waiting for a place can have the one idle longest
    // closed: idle kept-alive connections (or stalled heads) do not keep a sender out.
    let live = Arc::new(Live::default());
    // Told to clients that read it (Node's undici, for one), a second short of the real bound:
    // they stop reusing an idle connection before the server closes it under a new request.
    let keep_alive = (head_timeout >= Duration::from_secs(2))
        .then(|| http::HeaderValue::from_str(&format!("timeout={}", head_timeout.as_secs() - 1)).ok())
        .flatten();
    let (stopping_tx, stopping) = watch::channel(false);
    // Every connection's task holds a receiver; all dropped means all closed.
    let (closed_tx, closed) = watch::channel(());
    // Stopped with this future, also when it is dropped (the metrics endpoint and the
    // inspector serve until their task is aborted).
    let _sweeper = AbortOnDrop(tokio::spawn(sweep_heads(Arc::clone(&live), head_timeout)));
    tokio::pin!(stop);
    loop {
        let free = Arc::clone(&slots).try_acquire_owned().ok();
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
        // A place may have freed up while the loop waited for this connection.
        let slot = match free.or_else(|| Arc::clone(&slots).try_acquire_owned().ok()) {
            Some(slot) => slot,
            None => {
                // Someone is connecting and every place is taken: it waits here (the next ones
                // in the listen queue) while connections idle for a second are asked to close.
                if warned_at.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
                    warned_at = Some(Instant::now());
                    tracing::warn!(
                        max_connections,
                        "connection limit reached; idle connections are closed to make room, new ones wait (--max-connections)"
                    );
                }
                let waited = async {
                    loop {
                        if let Ok(slot) = Arc::clone(&slots).try_acquire_owned() {
                            return Some(slot);
                        }
                        // One place for one waiter: the connection idle longest, if a second.
                        live.make_room();
                        tokio::select! {
                            slot = Arc::clone(&slots).acquire_owned() => return slot.ok(),
                            () = tokio::time::sleep(SHED_IDLE / 2) => {}
                        }
                    }
                };
                tokio::select! {
                    biased;
                    () = &mut stop => break,
                    slot = waited => match slot {
                        Some(slot) => slot,
                        None => break,
                    },
                }
            }
        };
        let activity = Activity::new();
        let registered = live.add(&activity);
        // The connection's place, and its hold on the stop's wait, shared with its requests.
        let share = ConnectionShare(Arc::new((slot, closed.clone())));
        let service = {
            let app = app.clone();
            let activity = Arc::clone(&activity);
            let keep_alive = keep_alive.clone();
            let share = share.clone();
            hyper::service::service_fn(move |mut req: http::Request<Incoming>| {
                let answering = InHand::enter(&activity);
                req.extensions_mut().insert(share.clone());
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
        tokio::spawn(async move {
            {
                let conn = hyper::server::conn::http1::Builder::new()
                    .max_buf_size(MAX_HEAD_BUFFER)
                    .serve_connection(
                        TokioIo::new(WriteBound::new(stream, write_timeout, Arc::clone(&activity))),
                        service,
                    );
                tokio::pin!(conn);
                loop {
                    tokio::select! {
                        // The connection first: a head that is in is handed over (and counted in
                        // hand) before a stop or a request to make room is looked at.
                        biased;
                        _ = conn.as_mut() => break,
                        () = async { drop(stopping.wait_for(|s| *s).await) } => {}
                        () = activity.make_room.notified() => {
                            if activity.head_expired.load(Ordering::Acquire) {
                                if !activity.waited_for_head(head_timeout) {
                                    // A head came in meanwhile (the connection is polled first).
                                    activity.head_expired.store(false, Ordering::Release);
                                    continue;
                                }
                            } else if !activity.idle_for(SHED_IDLE) {
                                // Not idle any more (a request came meanwhile): another is asked.
                                continue;
                            }
                        }
                    }
                    // Finish the request in hand, then close: at once when idle, after about a
                    // second with nothing in hand — a client still sending a head would
                    // otherwise hold the shutdown (or its slot) until its head timeout.
                    activity.closing.store(true, Ordering::Release);
                    if activity.head_expired.load(Ordering::Acquire) && activity.waited_for_head(head_timeout) {
                        // Past the head timeout with nothing in hand: no grace.
                        break;
                    }
                    conn.as_mut().graceful_shutdown();
                    loop {
                        let busy = activity.in_hand() > 0;
                        tokio::select! {
                            biased;
                            _ = conn.as_mut() => break,
                            () = tokio::time::sleep(Duration::from_secs(1)) => {
                                if !busy && activity.in_hand() == 0 {
                                    break;
                                }
                            }
                        }
                    }
                    break;
                }
            }
            // Only once the connection (and its copy of the router) is gone; a request that
            // goes on without it holds its own share.
            drop(registered);
            drop(share);
        });
    }
    drop(listener);
    let _ = stopping_tx.send(true);
    drop(closed);
    closed_tx.closed().await;
}

/// Aborts its task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Closes the connections that have waited for a request head longer than `head_timeout`
/// (since they opened or gave their last answer, with nothing in hand), every second or every
/// quarter of the timeout when that is shorter.
async fn sweep_heads(live: Arc<Live>, head_timeout: Duration) {
    let every = (head_timeout / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        live.expire_heads(head_timeout);
    }
}

/// A connection's socket whose writes fail with `TimedOut` once one has made no progress for
/// the limit: hyper then closes the connection.
///
/// Reads are told to the connection's [`Activity`]: a client sending a head is not idle.
struct WriteBound {
    io: TcpStream,
    limit: Duration,
    /// Armed when a write first waits, dropped when one makes progress.
    stalled: Option<Pin<Box<Sleep>>>,
    activity: Arc<Activity>,
}

impl WriteBound {
    fn new(io: TcpStream, limit: Duration, activity: Arc<Activity>) -> Self {
        WriteBound {
            io,
            limit,
            stalled: None,
            activity,
        }
    }

    /// `progress`: a write that is ready moved bytes (a flush or shutdown that is ready says
    /// nothing about the client: the socket's are no-ops).
    fn bound<T>(&mut self, cx: &mut Context<'_>, polled: Poll<io::Result<T>>, progress: bool) -> Poll<io::Result<T>> {
        if polled.is_ready() {
            if progress {
                self.stalled = None;
                // An answer being read, however slowly, is not a wait for the next head.
                self.activity.wrote();
            }
            return polled;
        }
        let limit = self.limit;
        if self.stalled.is_none() {
            self.activity.write_waiting.store(true, Ordering::Release);
        }
        let stalled = self.stalled.get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        ready!(stalled.as_mut().poll(cx));
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the client read nothing of the answer within the write timeout",
        )))
    }
}

impl AsyncRead for WriteBound {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl AsyncWrite for WriteBound {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write(cx, buf);
        self.bound(cx, polled, true)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.bound(cx, polled, true)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.io).poll_flush(cx);
        self.bound(cx, polled, false)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.io).poll_shutdown(cx);
        self.bound(cx, polled, false)
    }
}

/// How long a connection must have had nothing in hand before the connection limit closes
/// it: a sender that just connected has its request on the way.
const SHED_IDLE: Duration = Duration::from_secs(1);

/// What a connection is doing: requests in hand, and since when it has had none and received
/// nothing.
struct Activity {
    /// The connection's start on [`CoarseClock`]'s monotonic time (a tick's resolution: these
    /// bounds are seconds, and the clock is read twice per request).
    epoch: Duration,
    in_hand: AtomicUsize,
    /// Milliseconds after `epoch`.
    idle_since: AtomicU64,
    /// Milliseconds after `epoch` of the last answer or write of one (0: the connection's
    /// start): the head timeout counts from here, whatever arrives meanwhile.
    answered_at: AtomicU64,
    /// A write of an answer is waiting for the client to read: the write timeout bounds that
    /// stretch, not the head timeout.
    write_waiting: AtomicBool,
    /// Waited for a head longer than the head timeout: told to close (through `make_room`).
    head_expired: AtomicBool,
    /// Told to close to make room for a connection waiting for a place.
    make_room: tokio::sync::Notify,
    /// Closing already (a stop, or asked to make room): not asked again.
    closing: AtomicBool,
}

impl Activity {
    fn new() -> Arc<Self> {
        Arc::new(Activity {
            epoch: CoarseClock.monotonic(),
            in_hand: AtomicUsize::new(0),
            idle_since: AtomicU64::new(0),
            answered_at: AtomicU64::new(0),
            write_waiting: AtomicBool::new(false),
            head_expired: AtomicBool::new(false),
            make_room: tokio::sync::Notify::new(),
            closing: AtomicBool::new(false),
        })
    }

    /// Milliseconds it has been idle (nothing in hand, nothing received); `None` when busy.
    fn idle_ms(&self) -> Option<u64> {
        (self.in_hand() == 0).then(|| self.now_ms().saturating_sub(self.idle_since.load(Ordering::Acquire)))
    }

    fn in_hand(&self) -> usize {
        self.in_hand.load(Ordering::Acquire)
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(CoarseClock.monotonic().saturating_sub(self.epoch).as_millis()).unwrap_or(u64::MAX)
    }

    /// Bytes arrived: idle from now.
    fn touch(&self) {
        self.idle_since.store(self.now_ms(), Ordering::Release);
    }

    /// Nothing in hand and no answer waiting to be written since the start or the last
    /// answer, for at least `d`.
    fn waited_for_head(&self, d: Duration) -> bool {
        let limit = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        self.in_hand() == 0
            && !self.write_waiting.load(Ordering::Acquire)
            && self.now_ms().saturating_sub(self.answered_at.load(Ordering::Acquire)) >= limit
    }

    /// Bytes of an answer went out: the wait for the next head starts again.
    fn wrote(&self) {
        self.answered_at.store(self.now_ms(), Ordering::Release);
        self.write_waiting.store(false, Ordering::Release);
    }

    /// An answer was given: idle, and waiting for the next head, from now.
    fn answered(&self) {
        let now = self.now_ms();
        self.idle_since.store(now, Ordering::Release);
        self.answered_at.store(now, Ordering::Release);
    }

    /// Nothing in hand and nothing received, for at least `d`.
    fn idle_for(&self, d: Duration) -> bool {
        self.idle_ms().is_some_and(|ms| ms >= d.as_millis() as u64)
    }
}

/// The open connections' [`Activity`], by a number of their own.
#[derive(Default)]
struct Live {
    next: AtomicU64,
    all: std::sync::Mutex<std::collections::HashMap<u64, Arc<Activity>>>,
}

impl Live {
    fn add(self: &Arc<Self>, activity: &Arc<Activity>) -> Registered {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(id, Arc::clone(activity));
        Registered(Arc::clone(self), id)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<u64, Arc<Activity>>> {
        // Every update is one insert or remove: nothing is left half-done by a panic.
        self.all.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Asks the connection idle longest (a second at least, not closing already) to close.
    fn make_room(&self) {
        let all = self.lock();
        let idlest = all
            .values()
            .filter(|a| !a.closing.load(Ordering::Acquire))
            .filter_map(|a| Some((a.idle_ms()?, a)))
            .filter(|(ms, _)| *ms >= SHED_IDLE.as_millis() as u64)
            .max_by_key(|(ms, _)| *ms);
        if let Some((_, a)) = idlest {
            a.make_room.notify_one();
        }
    }

    /// Tells every connection that has had nothing in hand for `limit` since its start or its
    /// last answer to close.
    fn expire_heads(&self, limit: Duration) {
        let all = self.lock();
        for a in all.values() {
            if !a.closing.load(Ordering::Acquire) && a.waited_for_head(limit) {
                a.head_expired.store(true, Ordering::Release);
                a.make_room.notify_one();
            }
        }
    }
}

/// Removes a connection from [`Live`] when dropped.
struct Registered(Arc<Live>, u64);

impl Drop for Registered {
    fn drop(&mut self) {
        self.0.lock().remove(&self.1);
    }
}

/// Counts a request from the moment hyper hands it over until its answer is ready (also
/// when the connection drops it).
struct InHand(Arc<Activity>);

impl InHand {
    fn enter(activity: &Arc<Activity>) -> Self {
        activity.in_hand.fetch_add(1, Ordering::AcqRel);
        InHand(Arc::clone(activity))
    }
}

impl Drop for InHand {
    fn drop(&mut self) {
        self.0.answered();
        self.0.in_hand.fetch_sub(1, Ordering::AcqRel);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_connection_limit_leaves_descriptors_for_the_rest() {
        // At most DEFAULT_MAX_CONNECTIONS by default, whatever the descriptors allow.
        assert!(default_max_connections(1, 0) <= DEFAULT_MAX_CONNECTIONS);
        assert_eq!(
            default_max_connections(1, 0),
            descriptor_max_connections(1, 0).min(DEFAULT_MAX_CONNECTIONS)
        );
        let n = descriptor_max_connections(1, 0) as u64;
        assert!((64..=65_536).contains(&n), "{n}");
        let with_exec = descriptor_max_connections(5, 0) as u64;
        let with_workers = descriptor_max_connections(1, 400) as u64;
        #[cfg(target_os = "linux")]
        if let Some(limit) = rustix::process::getrlimit(rustix::process::Resource::Nofile).current {
            if (5 * 64 + RESERVED_DESCRIPTORS + 400..=65_536).contains(&limit) {
                assert_eq!(n + RESERVED_DESCRIPTORS, limit);
                assert_eq!(with_exec, (limit - RESERVED_DESCRIPTORS) / 5);
                assert_eq!(with_workers + RESERVED_DESCRIPTORS + 400, limit);
            }
        }
        assert!(with_exec <= n && with_workers <= n, "{n} {with_exec} {with_workers}");
        // The refusal's room is not clamped: a large limit allows more than the default's
        // 65,536 (a review: `ulimit -n 1048576` refused 100,000).
        #[cfg(target_os = "linux")]
        if let Some(limit) = rustix::process::getrlimit(rustix::process::Resource::Nofile).current {
            assert_eq!(descriptor_room(1, 0), Some(limit.saturating_sub(RESERVED_DESCRIPTORS)));
        }
    }
}
