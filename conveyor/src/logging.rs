//! The process-wide `tracing` subscriber: human-readable or one JSON object
//! per line, levels from `RUST_LOG` (default `info`).

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the subscriber. Call once, first thing in `main`.
pub fn init(format: LogFormat) {
    install(format, "info", std::io::stdout);
}

/// The operator CLI's logging: on standard error (its answers are on
/// standard out), warnings only unless `RUST_LOG` says otherwise.
pub fn init_for_cli(format: LogFormat) {
    install(format, "warn", std::io::stderr);
}

fn install<W>(format: LogFormat, default: &str, writer: W)
where
    W: for<'a> tracing_subscriber::fmt::MakeWriter<'a> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
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
