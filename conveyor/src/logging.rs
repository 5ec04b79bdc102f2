//! The process-wide `tracing` subscriber: human-readable or one JSON object
//! per line, levels from `RUST_LOG` (default `info`).
//!
//! The services write through a buffer on a thread of their own
//! (`tracing-appender`'s non-blocking writer, told never to drop a line):
//! at `info` a worker logs two lines per job, and written one `write` call
//! at a time to a pipe they cost a default deployment a sixth of its
//! throughput. Lines still leave within the moment it takes that thread to
//! wake; [`Logs`] (and [`flush`], before `std::process::exit`) writes out
//! what is left.

use std::io::IsTerminal;
use std::sync::Mutex;

use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Lines waiting for the writer thread, at most (a few hundred KB).
const MAX_BUFFERED_LINES: usize = 2_048;

/// The writer thread's guard: dropping it writes out every buffered line.
static WRITER: Mutex<Option<WorkerGuard>> = Mutex::new(None);

/// Holds the log writer open; dropped at the end of `main`, it writes out
/// the lines still buffered.
#[must_use = "logs still buffered are lost unless this lives until the end of main"]
#[derive(Debug)]
pub struct Logs(());

impl Drop for Logs {
    fn drop(&mut self) {
        flush();
    }
}

/// Installs the subscriber. Call once, first thing in `main`, and keep
/// what it returns until the end.
pub fn init(format: LogFormat) -> Logs {
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(false)
        // Bounds the memory a burst can take; past it a caller waits for
        // the thread, as it would for a blocking write.
        .buffered_lines_limit(MAX_BUFFERED_LINES)
        .thread_name("conveyor-logs")
        // The thread flushes whenever it has written everything it was
        // sent: under load many lines leave in one `write`, and a lone line
        // leaves at once.
        .finish(std::io::BufWriter::new(std::io::stdout()));
    if let Ok(mut slot) = WRITER.lock() {
        *slot = Some(guard);
    }
    install(format, "info", writer, colour(&std::io::stdout()));
    Logs(())
}

/// Writes out the lines still buffered; later lines are not written. For
/// a process about to call `std::process::exit`, which skips destructors.
pub fn flush() {
    let guard = WRITER.lock().ok().and_then(|mut slot| slot.take());
    drop(guard);
}

/// The operator CLI's logging: on standard error (its answers are on
/// standard out), warnings only unless `RUST_LOG` says otherwise.
pub fn init_for_cli(format: LogFormat) {
    install(format, "warn", std::io::stderr, colour(&std::io::stderr()));
}

/// Colours (ANSI escapes) only on a terminal, and not when `NO_COLOR` is
/// set (no-color.org): a pipe or a file is read by a log collector, which
/// would keep the escapes as text, and writing them costs time on every
/// line.
fn colour(output: &impl IsTerminal) -> bool {
    output.is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty())
}

fn install<W>(format: LogFormat, default: &str, writer: W, colour: bool)
where
    W: for<'a> tracing_subscriber::fmt::MakeWriter<'a> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(writer);
    // Ignore the error of a second call (tests): the first subscriber stays.
    let _ = match format {
        LogFormat::Pretty => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
    };
}
