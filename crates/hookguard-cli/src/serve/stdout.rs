//! The writer of `serve`'s JSON lines to stdout.
//!
//! Every line is written and flushed before its delivery is answered 2xx (inline) or its item
//! marked done (inbox), so the writer sits on the path of every answer. Two ways to write:
//!
//! - **stdout is a pipe** (`serve | consumer`, the usual pipeline; Linux): the pipe is opened
//!   again through `/proc/self/fd/1`, which gives this process a description of its own that
//!   can be non-blocking without touching the one the shell and the reader share, and a task on
//!   the runtime writes it. A write that would block waits for the pipe to drain like any
//!   socket, never blocking the runtime; the lines of every handler that ran meanwhile go out in
//!   one write, and their waiters are told on the same thread (no thread wakes, no context
//!   switches per batch).
//! - **otherwise** (a file, a terminal, a socket, or a pipe that cannot be opened again): a
//!   thread of its own makes blocking writes, never the async workers.
//!
//! Lines are written in [`piece`](crate::common::piece)s: a pipe takes each whole or not at
//! all, so with stdout and stderr one pipe (`2>&1`) a log line never lands inside a JSON line
//! (of at most `PIPE_BUF` bytes, as every line of a usual delivery is).

use std::io::{self, Write};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::common::{failed, write_pieces, CliResult};

/// One JSON line for the stdout writer. `written`, when set, is told once the line is written
/// and flushed (an inline delivery is answered 2xx, and an inbox item marked done, only then);
/// a line whose waiter gave up before the writer reached it is not written (its delivery was
/// answered 503, or its item given back: the retry prints it).
pub struct Line {
    pub(super) text: String,
    pub(super) written: Option<oneshot::Sender<()>>,
}

/// The writer thread's `nice` increment (see `StdoutWriter::thread`).
#[cfg(target_os = "linux")]
const WRITER_NICE: i32 = 10;

/// The most lines taken into one batch.
const BATCH_LINES: usize = 1024;

/// Writes the queued JSON lines to stdout (see the module's documentation).
pub struct StdoutWriter {
    thread: Option<std::thread::JoinHandle<()>>,
    done: oneshot::Receiver<()>,
}

/// A batch of lines taken from the queue, and the waiters to tell once it is out.
#[derive(Default)]
struct Batch {
    text: String,
    acks: Vec<oneshot::Sender<()>>,
    /// Lines taken from the queue (also those skipped).
    taken: usize,
}

impl Batch {
    /// Takes `first` and whatever else is queued (at most [`BATCH_LINES`]).
    fn gather(&mut self, first: Line, rx: &mut mpsc::Receiver<Line>) {
        self.text.clear();
        self.acks.clear();
        self.taken = 0;
        let mut next = Some(first);
        while let Some(Line { text, written }) = next.take() {
            // Its waiter gave up (answered 503 / gave the item back): the retry prints it, so
            // it is not printed now.
            if !written.as_ref().is_some_and(oneshot::Sender::is_closed) {
                self.text.push_str(&text);
                self.text.push('\n');
                self.acks.extend(written);
            }
            self.taken += 1;
            if self.taken < BATCH_LINES {
                next = rx.try_recv().ok();
            }
        }
    }

    /// Someone waits for these lines (the inbox worker marks an item done only once its line
    /// is out): pausing would only stall them. Otherwise (lines with `--exec`) a short pause
    /// after a small batch lets lines gather: at most ~1,000 writes a second instead of one
    /// per delivery (≤ 1 ms more latency).
    fn pause_after(&self) -> bool {
        self.taken < 64 && self.acks.is_empty()
    }

    /// The write failed (the reader went away): dropping the acknowledgements tells this
    /// batch's waiters, closing the queue every later one's, and `closed` stops `serve`.
    fn failed(&mut self, rx: &mut mpsc::Receiver<Line>, closed: oneshot::Sender<io::Error>, e: io::Error) {
        self.acks.clear();
        rx.close();
        let _ = closed.send(e);
    }
}

impl StdoutWriter {
    /// Starts the writer with a queue of `capacity` lines. `closed` fires if stdout fails
    /// (its reader went away); the queue is then closed, so deliveries get 503, not a 2xx.
    /// Called within the Tokio runtime that serves (the pipe's writer is a task there).
    pub fn start(capacity: usize, closed: oneshot::Sender<io::Error>) -> CliResult<(Self, mpsc::Sender<Line>)> {
        let (tx, rx) = mpsc::channel::<Line>(capacity);
        let (done_tx, done) = oneshot::channel();
        #[cfg(target_os = "linux")]
        if let Some(pipe) = pipe::reopen_stdout() {
            tokio::spawn(async move {
                pipe::write(pipe, rx, closed).await;
                let _ = done_tx.send(());
            });
            return Ok((Self { thread: None, done }, tx));
        }
        let thread = Self::thread(rx, closed, done_tx)?;
        Ok((
            Self {
                thread: Some(thread),
                done,
            },
            tx,
        ))
    }

    /// The blocking writer on a thread of its own.
    fn thread(
        mut rx: mpsc::Receiver<Line>,
        closed: oneshot::Sender<io::Error>,
        done_tx: oneshot::Sender<()>,
    ) -> CliResult<std::thread::JoinHandle<()>> {
        // A batch's acknowledgements go to a task on the runtime in one message, which tells
        // each waiter there. Told one by one from this thread, every waiter's wake-up could
        // wake the sleeping server thread, which (at a higher priority) preempts this one
        // before it tells the next: up to a context switch pair per line instead of per batch.
        // If the task is gone (the runtime is stopping) the acknowledgements are dropped and
        // their waiters learn the line's fate as "not written" (a 503, never a wrong 2xx).
        let (acked, mut to_ack) = mpsc::unbounded_channel::<Vec<oneshot::Sender<()>>>();
        tokio::spawn(async move {
            while let Some(batch) = to_ack.recv().await {
                for w in batch {
                    let _ = w.send(());
                }
            }
        });
        std::thread::Builder::new()
            .name("hookguard-stdout".into())
            .spawn(move || {
                // A lower priority than the server's threads: every 2xx waits for its line, and
                // a writer that woke at once for each line (preempting the thread that answers)
                // would write one line per syscall, with two context switches per delivery on a
                // busy core. Yielding to the server lets lines gather into one write; on an idle
                // core it still runs at once. (Linux: `nice` is per thread; errors are ignored.)
                #[cfg(target_os = "linux")]
                let _ = rustix::process::nice(WRITER_NICE);
                let stdout = io::stdout();
                let mut batch = Batch::default();
                while let Some(first) = rx.blocking_recv() {
                    // Take everything queued into one write: under load one syscall carries
                    // many lines, and the thread wakes far less often than once per line.
                    batch.gather(first, &mut rx);
                    let mut out = stdout.lock();
                    if let Err(e) = write_pieces(&mut out, batch.text.as_bytes()).and_then(|()| out.flush()) {
                        batch.failed(&mut rx, closed, e);
                        break;
                    }
                    drop(out);
                    let pause = batch.pause_after();
                    if !batch.acks.is_empty() {
                        let _ = acked.send(std::mem::take(&mut batch.acks));
                    }
                    if pause {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
                let _ = done_tx.send(());
            })
            .map_err(|e| failed(format!("cannot start the stdout writer: {e}")))
    }

    /// Waits (at most `limit`) for the queued lines to be written, once every sender is gone.
    /// Returns whether the writer finished.
    pub async fn finish(self, limit: Duration) -> bool {
        let finished = matches!(tokio::time::timeout(limit, self.done).await, Ok(Ok(())));
        if finished {
            if let Some(thread) = self.thread {
                let _ = thread.join();
            }
        }
        finished
    }
}

/// stdout as a non-blocking pipe written by a task (Linux).
#[cfg(target_os = "linux")]
mod pipe {
    use std::io;
    use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
    use std::time::Duration;

    use tokio::net::unix::pipe::Sender;
    use tokio::sync::{mpsc, oneshot};

    use super::{Batch, Line};
    use crate::common::piece;

    /// stdout's pipe opened again, non-blocking, when stdout is a pipe (`None` otherwise, or
    /// when it cannot be: no `/proc`, no reader left, not registrable with the runtime).
    pub(super) fn reopen_stdout() -> Option<Sender> {
        const STDOUT: &str = "/proc/self/fd/1";
        let before = std::fs::metadata(STDOUT).ok()?;
        if !before.file_type().is_fifo() {
            return None;
        }
        // Non-blocking from the open on: opening a pipe for writing waits for a reader.
        let file = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(STDOUT)
            .ok()?;
        // The same pipe as stdout (opening a pipe gives a new description of the same pipe).
        let after = file.metadata().ok()?;
        if (after.dev(), after.ino()) != (before.dev(), before.ino()) {
            return None;
        }
        Sender::from_file(file).ok()
    }

    /// Writes `data` to the pipe in [`piece`]s, waiting for room without blocking the runtime.
    async fn write_all(pipe: &Sender, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            match pipe.try_write(&data[..piece(data)]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(wrote) => data = &data[wrote..],
                // Full: wait for the reader to make room.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => pipe.writable().await?,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// The writer task: until the queue closes and is empty, or the pipe fails.
    pub(super) async fn write(pipe: Sender, mut rx: mpsc::Receiver<Line>, closed: oneshot::Sender<io::Error>) {
        let mut batch = Batch::default();
        while let Some(first) = rx.recv().await {
            // Let the handlers that are ready run first and queue their lines: one write
            // carries them all (the yield defers this task until the runtime next looks for
            // I/O, after every task already woken).
            tokio::task::yield_now().await;
            batch.gather(first, &mut rx);
            if let Err(e) = write_all(&pipe, batch.text.as_bytes()).await {
                batch.failed(&mut rx, closed, e);
                return;
            }
            let pause = batch.pause_after();
            for w in batch.acks.drain(..) {
                let _ = w.send(());
            }
            if pause {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    }
}
