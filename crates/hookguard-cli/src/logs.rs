//! Stderr that never holds up an answer.
//!
//! `serve` logs a line per refused request (INFO by default; one per handled delivery at
//! DEBUG). Written straight to stderr, a stderr nobody drains — a pipe into a stalled
//! consumer, a terminal paused with Ctrl-S, a log collector under back-pressure — blocked the
//! runtime's threads in `write`, and with them every answer: a sender timed out on genuine deliveries because a flood of forged
//! ones filled a pipe. Here every line (tracing's and [`crate::common::write_stderr`]'s) goes
//! through a bounded queue (1 MiB) to one writer thread, which gathers what is queued into one
//! `write`. When the queue is full the line is dropped and counted, and the writer says how
//! many were lost once stderr moves again. Logs are diagnostics: the deliveries' record is
//! stdout's JSON lines, which are never dropped (`serve` answers 503 instead).

use std::io::Write;
use std::sync::mpsc::{self, SyncSender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

/// Bytes queued at most (several thousand log lines).
const CAPACITY: usize = 1024 * 1024;

/// What the writer has not written yet.
#[derive(Default)]
struct Pending {
    bytes: Vec<u8>,
    dropped: u64,
    flushes: Vec<SyncSender<()>>,
    /// The writer waits for work (a producer must wake it).
    idle: bool,
}

#[derive(Default)]
struct Shared {
    pending: Mutex<Pending>,
    work: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        // A panic while holding the lock leaves at worst a cut line: keep logging.
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The process's stderr queue; [`Logs::start`] once, before the first log line.
#[derive(Clone)]
pub struct Logs {
    shared: Arc<Shared>,
}

static LOGS: OnceLock<Logs> = OnceLock::new();

impl Logs {
    /// Starts the writer thread (once per process) and returns the queue; `None` only if the
    /// thread cannot be spawned (callers then write stderr directly).
    pub fn start() -> Option<Logs> {
        if let Some(l) = LOGS.get() {
            return Some(l.clone());
        }
        let logs = Logs { shared: Arc::default() };
        let shared = Arc::clone(&logs.shared);
        std::thread::Builder::new()
            .name("hookguard-stderr".into())
            .spawn(move || write_lines(&shared, &mut std::io::stderr()))
            .ok()?;
        Some(LOGS.get_or_init(|| logs).clone())
    }

    /// The running queue, if [`Logs::start`] was called.
    pub fn running() -> Option<&'static Logs> {
        LOGS.get()
    }

    /// Queues one whole line (with its newline), or drops and counts it when the queue is full.
    /// Never waits for stderr.
    pub fn line(&self, line: &[u8]) {
        let mut p = self.shared.lock();
        if p.bytes.len() + line.len() > CAPACITY {
            // Woken even so: a line too long for an empty queue still gets its notice.
            p.dropped += 1;
        } else {
            p.bytes.extend_from_slice(line);
        }
        self.wake(p);
    }

    fn wake(&self, mut p: MutexGuard<'_, Pending>) {
        if std::mem::take(&mut p.idle) {
            drop(p);
            self.shared.work.notify_one();
        }
    }

    /// Waits, at most `limit`, until every line queued so far is written: before the process
    /// exits. A stalled stderr costs `limit`, never a hang.
    pub fn flush(&self, limit: Duration) {
        let (ack, done) = mpsc::sync_channel(1);
        let mut p = self.shared.lock();
        p.flushes.push(ack);
        self.wake(p);
        let _ = done.recv_timeout(limit);
    }
}

/// One whole line to stderr: through the queue once it runs, else written directly.
pub fn write(line: &[u8]) {
    match Logs::running() {
        Some(queue) => queue.line(line),
        None => {
            let _ = std::io::stderr().write_all(line);
        }
    }
}

/// Flushes the running queue, if any, for at most a second: before the process exits or a
/// panic message is printed.
fn flush_running() {
    if let Some(queue) = Logs::running() {
        queue.flush(Duration::from_secs(1));
    }
}

/// Flushes the queue when dropped — also while a panic unwinds `main`.
pub struct FlushOnExit;

impl Drop for FlushOnExit {
    fn drop(&mut self) {
        flush_running();
    }
}

/// Keeps panic messages after the queued lines: the queue is flushed before the default hook
/// prints the message straight to stderr.
pub fn flush_before_panic_messages() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        flush_running();
        default(info);
    }));
}

/// The longest piece of a command's output queued as one line (with its newline, at most
/// `PIPE_BUF`: a pipe shared with stdout takes it whole, see [`crate::common::piece`]).
const PIECE: usize = crate::common::PIPE_BUF - 1;

/// Copies a child process's output (`serve --exec`) into the queue line by line: the
/// command's output never blocks on a stderr nobody reads (that would hold up its delivery's
/// answer) and never lands inside a log line.
/// At most [`MAX_FORWARDED`] bytes of one stream of one run are forwarded; the rest is read
/// and dropped (the command never blocks), and a line says how much of which `stream`
/// (`stdout`, `stderr`).
pub async fn forward(from: impl tokio::io::AsyncRead + Unpin, stream: &'static str) {
    let dropped = forward_to(from, MAX_FORWARDED, write).await;
    if dropped > 0 {
        write(
            format!(
                "hookguard: --exec: {dropped} more bytes of the command's {stream} were dropped (at most {MAX_FORWARDED} bytes of each stream per run reach the log)\n"
            )
            .as_bytes(),
        );
    }
}

/// The most of one output stream of one `--exec` run that reaches the log: a command that
/// prints without end (200 MB in a tryout) must not fill the disk the log, and often the
/// inbox, are on.
pub const MAX_FORWARDED: usize = 1 << 20;

/// [`forward`]'s reading: whole lines, a line longer than [`PIECE`] in pieces, each with its
/// newline, until `limit` bytes were read; the rest is read and counted. Returns the bytes
/// dropped.
async fn forward_to(mut from: impl tokio::io::AsyncRead + Unpin, limit: usize, mut emit: impl FnMut(&[u8])) -> u64 {
    use tokio::io::AsyncReadExt;
    let mut pending = Vec::with_capacity(PIECE);
    let mut chunk = [0u8; 4096];
    let (mut read, mut dropped) = (0usize, 0u64);
    loop {
        let n = match from.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let kept = n.min(limit.saturating_sub(read));
        read += kept;
        dropped += (n - kept) as u64;
        if kept == 0 {
            continue;
        }
        pending.extend_from_slice(&chunk[..kept]);
        // What was emitted is dropped once per read (a drain per line moved the rest of the
        // buffer for each short line).
        let mut start = 0;
        loop {
            let rest = &pending[start..];
            let window = &rest[..rest.len().min(PIECE)];
            if let Some(end) = window.iter().position(|&b| b == b'\n') {
                emit(&rest[..=end]);
                start += end + 1;
            } else if rest.len() >= PIECE {
                let mut piece = Vec::with_capacity(PIECE + 1);
                piece.extend_from_slice(&rest[..PIECE]);
                piece.push(b'\n');
                emit(&piece);
                start += PIECE;
            } else {
                break;
            }
        }
        pending.drain(..start);
    }
    if !pending.is_empty() {
        pending.push(b'\n');
        emit(&pending);
    }
    dropped
}

/// The writer thread: everything queued in one write; a failed write (a closed stderr) is
/// ignored so the queue keeps draining.
fn write_lines(shared: &Shared, out: &mut impl Write) {
    let mut batch = Vec::new();
    loop {
        let (lost, flushes) = {
            let mut p = shared.lock();
            while p.bytes.is_empty() && p.flushes.is_empty() && p.dropped == 0 {
                p.idle = true;
                p = shared.work.wait(p).unwrap_or_else(|e| e.into_inner());
            }
            p.idle = false;
            std::mem::swap(&mut p.bytes, &mut batch);
            (std::mem::take(&mut p.dropped), std::mem::take(&mut p.flushes))
        };
        if lost > 0 {
            // One line of the batch (formatted into stderr directly, it was three writes).
            let _ = writeln!(
                batch,
                "hookguard: {lost} log lines dropped: stderr was not read fast enough"
            );
        }
        // Whole lines in pieces a pipe takes whole: with stderr and stdout one pipe (`2>&1`),
        // a JSON line never lands inside a log line, nor a log line inside a JSON line (lines
        // of at most `PIPE_BUF` bytes: every line but a pathological one).
        let _ = crate::common::write_pieces(out, &batch).and_then(|()| out.flush());
        let small = batch.len() < 8 * 1024;
        batch.clear();
        if batch.capacity() > CAPACITY {
            batch = Vec::new();
        }
        let awaited = !flushes.is_empty();
        for f in flushes {
            let _ = f.try_send(());
        }
        // A short pause after a small batch lets lines gather: a line per request would
        // otherwise wake this thread once per request (a futex wake and a context switch on
        // the request's core). At most ~1,000 writes a second, each line ≤ 1 ms later.
        if small && !awaited {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// Tracing's writer for one event: tracing formats the event first and hands it over in one
/// `write_all`, which this queues as one line.
pub struct LineWriter<'a> {
    logs: &'a Logs,
}

impl Write for LineWriter<'_> {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.logs.line(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Logs {
    type Writer = LineWriter<'a>;
    fn make_writer(&'a self) -> LineWriter<'a> {
        LineWriter { logs: self }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::Receiver;

    /// A sink whose first write says it started, then blocks until the test releases it.
    struct Stalled {
        written: Arc<Mutex<Vec<u8>>>,
        started: mpsc::Sender<()>,
        release: Receiver<()>,
        open: bool,
    }

    impl Write for Stalled {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            if !self.open {
                let _ = self.started.send(());
                let _ = self.release.recv();
                self.open = true;
            }
            self.written.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_stalled_stderr_never_blocks_a_logger_and_says_what_it_lost() {
        let logs = Logs { shared: Arc::default() };
        let written = Arc::new(Mutex::new(Vec::new()));
        let (release, gate) = mpsc::channel();
        let (started, stalled) = mpsc::channel();
        let mut sink = Stalled {
            written: Arc::clone(&written),
            started,
            release: gate,
            open: false,
        };
        let shared = Arc::clone(&logs.shared);
        std::thread::spawn(move || write_lines(&shared, &mut sink));
        // The writer takes the first line and blocks in `write`.
        logs.line(b"first\n");
        stalled.recv_timeout(Duration::from_secs(60)).expect("the writer wrote");

        // The queue then fills and every further line is dropped. Logging must finish while
        // the sink is still blocked: a logger that waited would never finish, and the test
        // fails instead of hanging.
        let total = 300_000u64;
        let (finished, logged) = mpsc::channel();
        let logger = {
            let logs = logs.clone();
            std::thread::spawn(move || {
                for i in 0..total {
                    logs.line(format!("line {i}\n").as_bytes());
                }
                finished.send(()).unwrap();
            })
        };
        assert!(
            logged.recv_timeout(Duration::from_secs(60)).is_ok(),
            "logging waited on a stalled stderr"
        );
        logger.join().unwrap();
        let lost = logs.shared.lock().dropped;
        assert!(lost > 0 && lost < total, "{lost}");

        release.send(()).unwrap();
        logs.flush(Duration::from_secs(10));
        let out = String::from_utf8(written.lock().unwrap().clone()).unwrap();
        let numbers: Vec<u64> = out
            .lines()
            .filter_map(|l| l.strip_prefix("line ")?.parse().ok())
            .collect();
        assert_eq!(numbers.len() as u64 + lost, total, "every line is written or counted");
        assert!(out.starts_with("first\n"), "{}", &out[..20]);
        assert!(numbers.windows(2).all(|w| w[0] < w[1]), "whole lines, in order");
        assert!(out.contains(&format!("hookguard: {lost} log lines dropped")), "{out}");
    }

    #[test]
    fn flush_gives_up_after_its_limit() {
        // No writer at all: the flush is never answered.
        let logs = Logs { shared: Arc::default() };
        logs.line(b"never written\n");
        let (done, waited) = mpsc::channel();
        std::thread::spawn(move || {
            logs.flush(Duration::from_millis(200));
            done.send(()).unwrap();
        });
        // Far above the limit, far below "waited for a writer".
        assert!(
            waited.recv_timeout(Duration::from_secs(5)).is_ok(),
            "flush ignored its limit"
        );
    }

    /// A command printing without end (a tryout's 200 MB) put all of it in the log: at most
    /// the limit is forwarded, the rest read and counted.
    #[test]
    fn a_commands_output_is_forwarded_up_to_the_limit_and_the_rest_counted() {
        let output = b"12345\n".repeat(10_000);
        let mut forwarded = 0;
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let dropped = rt.block_on(forward_to(&output[..], 6_003, |l| forwarded += l.len()));
        assert_eq!(dropped, 60_000 - 6_003);
        // 1,000 whole lines, and the three bytes after them as a last line of their own.
        assert_eq!(forwarded, 6_000 + 4);
    }

    #[test]
    fn a_commands_output_is_queued_in_whole_lines_and_bounded_pieces() {
        let mut output = b"one\n\ntwo\n".to_vec();
        output.extend(std::iter::repeat_n(b'x', 2 * PIECE + 10));
        output.extend_from_slice(b"\nlast without newline");
        let mut lines = Vec::new();
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let dropped = rt.block_on(forward_to(&output[..], usize::MAX, |l| lines.push(l.to_vec())));
        assert_eq!(dropped, 0);
        let piece = [vec![b'x'; PIECE], b"\n".to_vec()].concat();
        let tail = [vec![b'x'; 10], b"\n".to_vec()].concat();
        let expected: Vec<&[u8]> = vec![
            b"one\n",
            b"\n",
            b"two\n",
            &piece,
            &piece,
            &tail,
            b"last without newline\n",
        ];
        let lens = |v: &[&[u8]]| v.iter().map(|l| l.len()).collect::<Vec<_>>();
        let got: Vec<&[u8]> = lines.iter().map(Vec::as_slice).collect();
        assert_eq!(lens(&got), lens(&expected));
        assert_eq!(got, expected);
    }
}
