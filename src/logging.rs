//! A buffered log sink whose lines are never behind the acks.
//!
//! Writing each log line with its own `write(2)` costs a worker about a third of its CPU per
//! job (two lines per job). [`LogBuffer`] collects lines in memory instead, and they are
//! written in one call per batch:
//!
//! - by a writer thread, at most [`WRITE_WINDOW`] after the first line of a batch;
//! - before every ack request the worker sends, so a line such as `job.succeeded` is always on
//!   its way to the log before the message it reports is acked: a worker killed with SIGKILL
//!   loses the lines of jobs that are not acked yet (and so will run again), never the lines
//!   of jobs that are done;
//! - at once, with everything before it, for a line marked urgent (warnings and errors);
//! - at once when more than [`MAX_BUFFERED`] bytes are waiting;
//! - when [`flush`] is called (the `worker` binary calls it before it exits, and from its
//!   panic hook).
//!
//! Lines keep their order. Nothing is buffered until [`install_stderr`] is called, and
//! [`flush`] is then a no-op: a worker that does not use the buffer pays nothing.
//!
//! ```no_run
//! use std::io::Write;
//! // In a `tracing_subscriber::fmt::MakeWriter`, one writer per event:
//! let buffer = pubsub_jobs::logging::install_stderr();
//! let mut line = buffer.writer(false);
//! line.write_all(b"job started\n").unwrap();
//! ```

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

/// How long the writer thread lets lines gather before it writes them.
pub const WRITE_WINDOW: Duration = Duration::from_millis(10);

/// Bytes that may wait in memory; a line that goes over them is written at once.
pub const MAX_BUFFERED: usize = 1 << 20;

/// Log lines waiting to be written to one output, in order.
pub struct LogBuffer {
    pending: Mutex<Vec<u8>>,
    /// Held while a batch is taken and written, so batches reach the output in order.
    out: Mutex<Box<dyn Write + Send>>,
    wake: Condvar,
    /// Set when no writer thread could be started: then nothing may wait.
    unbuffered: AtomicBool,
}

impl std::fmt::Debug for LogBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogBuffer")
            .field("pending_bytes", &lock(&self.pending).len())
            .finish_non_exhaustive()
    }
}

static STDERR: OnceLock<&'static LogBuffer> = OnceLock::new();

/// The process's buffer for standard error, started (with its writer thread) on first call.
pub fn install_stderr() -> &'static LogBuffer {
    STDERR.get_or_init(|| {
        let buffer: &'static LogBuffer = Box::leak(Box::new(LogBuffer::new(std::io::stderr())));
        let spawned = std::thread::Builder::new()
            .name("pubsub-jobs-log".into())
            .spawn(move || buffer.run_writer());
        if spawned.is_err() {
            // No thread: every line is written as it comes, as without a buffer.
            buffer.unbuffered.store(true, Ordering::Relaxed);
        }
        buffer
    })
}

/// Writes every buffered line of [`install_stderr`]'s buffer now. A no-op when it was never
/// installed.
pub fn flush() {
    if let Some(buffer) = STDERR.get() {
        buffer.flush();
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl LogBuffer {
    /// A buffer in front of `out`. Its lines are written by [`LogBuffer::flush`] (and by a
    /// writer thread only for the buffer of [`install_stderr`]).
    pub fn new(out: impl Write + Send + 'static) -> Self {
        Self {
            pending: Mutex::new(Vec::with_capacity(64 * 1024)),
            out: Mutex::new(Box::new(out)),
            wake: Condvar::new(),
            unbuffered: AtomicBool::new(false),
        }
    }

    fn limit(&self) -> usize {
        if self.unbuffered.load(Ordering::Relaxed) {
            0
        } else {
            MAX_BUFFERED
        }
    }

    /// A writer for one line (or a few): its bytes join the buffer; an `urgent` writer flushes
    /// the buffer, its own bytes included, when it is dropped.
    pub fn writer(&self, urgent: bool) -> LineWriter<'_> {
        LineWriter {
            buffer: self,
            urgent,
        }
    }

    /// Appends bytes; returns whether the buffer should now be written.
    fn append(&self, bytes: &[u8]) -> bool {
        let mut pending = lock(&self.pending);
        let was_empty = pending.is_empty();
        pending.extend_from_slice(bytes);
        let full = pending.len() > self.limit();
        drop(pending);
        if was_empty {
            self.wake.notify_one();
        }
        full
    }

    /// Writes every line buffered so far, in order, before returning.
    pub fn flush(&self) {
        let mut out = lock(&self.out);
        let batch = {
            let mut pending = lock(&self.pending);
            if pending.is_empty() {
                return;
            }
            let capacity = pending.capacity();
            std::mem::replace(
                &mut *pending,
                Vec::with_capacity(capacity.min(MAX_BUFFERED)),
            )
        };
        // A log that cannot be written is not a reason to stop a worker.
        let _ = out.write_all(&batch);
        let _ = out.flush();
    }

    fn run_writer(&self) {
        loop {
            {
                let mut pending = lock(&self.pending);
                while pending.is_empty() {
                    pending = self
                        .wake
                        .wait(pending)
                        .unwrap_or_else(PoisonError::into_inner);
                }
            }
            std::thread::sleep(WRITE_WINDOW);
            self.flush();
        }
    }
}

/// The writer [`LogBuffer::writer`] returns.
#[derive(Debug)]
pub struct LineWriter<'a> {
    buffer: &'a LogBuffer,
    urgent: bool,
}

impl Write for LineWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        if self.buffer.append(bytes) {
            self.buffer.flush();
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LineWriter<'_> {
    fn drop(&mut self) {
        if self.urgent {
            self.buffer.flush();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            lock(&self.0).extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_wait_until_a_flush_or_an_urgent_line_and_keep_their_order() {
        let out = Shared::default();
        let buffer = LogBuffer::new(out.clone());
        buffer.writer(false).write_all(b"one\n").unwrap();
        buffer.writer(false).write_all(b"two\n").unwrap();
        assert!(lock(&out.0).is_empty(), "nothing written before a flush");
        buffer.flush();
        assert_eq!(&*lock(&out.0), b"one\ntwo\n");
        buffer.writer(false).write_all(b"three\n").unwrap();
        buffer.writer(true).write_all(b"warn\n").unwrap();
        assert_eq!(&*lock(&out.0), b"one\ntwo\nthree\nwarn\n");
    }

    #[test]
    fn more_than_the_limit_is_written_at_once() {
        let out = Shared::default();
        let buffer = LogBuffer::new(out.clone());
        let line = vec![b'x'; MAX_BUFFERED / 2 + 1];
        buffer.writer(false).write_all(&line).unwrap();
        assert!(lock(&out.0).is_empty());
        buffer.writer(false).write_all(&line).unwrap();
        assert_eq!(lock(&out.0).len(), 2 * line.len());
    }
}
