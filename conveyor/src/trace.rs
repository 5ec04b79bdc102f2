//! Traces: the W3C trace context a job carries from the request that made
//! it to the attempts that run it, and their optional export over OTLP.
//!
//! Every job has a [`TraceParent`]. One given when the job is created
//! (`POST /jobs`'s `traceparent` header, or [`NewJob::traceparent`](crate::NewJob))
//! is stored with it; a job created without one belongs to a trace named
//! after its own id ([`TraceParent::for_job`]), which costs no storage. The
//! worker's span for the first attempt is a child of that context; each
//! later attempt starts a trace of its own, linked to it, so a job retried
//! for hours does not stretch one trace over all of them.
//!
//! Spans are made only when export is on ([`Traces::from_env`]: the
//! standard `OTEL_EXPORTER_OTLP_ENDPOINT` or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set); otherwise [`Traces`] is
//! off and nothing here costs more than carrying the context along.

use std::fmt;

use opentelemetry::trace::{
    Link, Span as _, SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId,
    TraceState, Tracer as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::{SdkTracerProvider, Tracer};

use crate::job::{Job, JobId, NewJob};
use crate::store::{Inserted, StoreError};

/// The request header (and the job's field) that carries the context.
pub const TRACEPARENT_HEADER: &str = "traceparent";

/// Which trace a job belongs to, and the span it hangs from: a W3C
/// `traceparent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    trace_id: TraceId,
    span_id: SpanId,
    flags: TraceFlags,
}

impl TraceParent {
    /// Parses a `traceparent` value by the W3C Trace Context rules: `None`
    /// for anything they reject (a field of the wrong length, upper-case
    /// hex, an all-zero id, version `ff`, extra fields after version 00).
    /// Written out here because OpenTelemetry's propagator accepts ids
    /// shorter than the specification allows.
    pub fn parse(value: &str) -> Option<Self> {
        let mut fields = value.split('-');
        let version = fields.next()?;
        let trace = fields.next()?;
        let span = fields.next()?;
        let flags = fields.next()?;
        let rest = fields.next();
        let hex = |field: &str, len: usize| {
            field.len() == len
                && field
                    .bytes()
                    .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        };
        // A later version may add fields after these four; version 00 may not.
        if !hex(version, 2) || version == "ff" || (version == "00" && rest.is_some()) {
            return None;
        }
        if !hex(trace, 32) || !hex(span, 16) || !hex(flags, 2) {
            return None;
        }
        let trace_id = TraceId::from_hex(trace).ok()?;
        let span_id = SpanId::from_hex(span).ok()?;
        let flags = u8::from_str_radix(flags, 16).ok()?;
        (trace_id != TraceId::INVALID && span_id != SpanId::INVALID).then_some(TraceParent {
            trace_id,
            span_id,
            // Only the sampled bit is defined; the others are not passed on.
            flags: TraceFlags::new(flags) & TraceFlags::SAMPLED,
        })
    }

    /// The context of a job made without one: the trace is named by the
    /// job's id (16 bytes, as a trace id is), the parent span by the id's
    /// last eight bytes; sampled. (An id a caller chose with zeros there,
    /// which no generated id has, gets ones instead: an all-zero id is not
    /// a valid context.)
    pub fn for_job(id: JobId) -> Self {
        let whole = id.as_uuid().as_u128();
        let trace = if whole == 0 { 1 } else { whole };
        let span = match whole as u64 {
            0 => 1,
            low => low,
        };
        TraceParent {
            trace_id: TraceId::from(trace),
            span_id: SpanId::from(span),
            flags: TraceFlags::SAMPLED,
        }
    }

    /// The context `job` runs under: the one it was given, or else
    /// [`TraceParent::for_job`].
    pub fn of_job(job: &Job) -> Self {
        job.traceparent
            .as_deref()
            .and_then(Self::parse)
            .unwrap_or_else(|| Self::for_job(JobId::from(job.id)))
    }

    /// The context of a live or remote span.
    pub fn of_span(span: &SpanContext) -> Self {
        TraceParent {
            trace_id: span.trace_id(),
            span_id: span.span_id(),
            flags: span.trace_flags(),
        }
    }

    pub fn trace_id(&self) -> TraceId {
        self.trace_id
    }

    pub fn span_id(&self) -> SpanId {
        self.span_id
    }

    pub fn is_sampled(&self) -> bool {
        self.flags.is_sampled()
    }

    /// As a remote parent for a span of this process.
    pub fn span_context(&self) -> SpanContext {
        SpanContext::new(
            self.trace_id,
            self.span_id,
            self.flags,
            true,
            TraceState::default(),
        )
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{:032x}-{:016x}-{:02x}",
            self.trace_id,
            self.span_id,
            self.flags.to_u8()
        )
    }
}

/// Why export could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("setting up OTLP trace export: {0}")]
pub struct TraceSetupError(String);

/// A process's spans: made and exported when a tracer is set, skipped
/// otherwise. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Traces {
    tracer: Option<Tracer>,
}

impl Traces {
    /// No spans.
    pub fn off() -> Self {
        Traces::default()
    }

    /// Spans through `provider` (tests give one with an in-memory exporter).
    pub fn with_provider(provider: &SdkTracerProvider) -> Self {
        use opentelemetry::trace::TracerProvider as _;
        Traces {
            tracer: Some(provider.tracer("conveyor")),
        }
    }

    /// OTLP export over HTTP when `OTEL_EXPORTER_OTLP_ENDPOINT` (or
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, with every other
    /// standard `OTEL_*` setting honoured; `service` names the process
    /// unless `OTEL_SERVICE_NAME` does. Off otherwise. Keep the provider
    /// and shut it down on exit, which sends what is still buffered.
    pub fn from_env(service: &str) -> Result<(Traces, Option<SdkTracerProvider>), TraceSetupError> {
        let set = |name: &str| std::env::var(name).is_ok_and(|value| !value.trim().is_empty());
        if !set("OTEL_EXPORTER_OTLP_ENDPOINT") && !set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
            return Ok((Traces::off(), None));
        }
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .build()
            .map_err(|err| TraceSetupError(err.to_string()))?;
        let mut resource = opentelemetry_sdk::Resource::builder();
        if !set("OTEL_SERVICE_NAME") {
            resource = resource.with_service_name(service.to_owned());
        }
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource.build())
            .build();
        Ok((Traces::with_provider(&provider), Some(provider)))
    }

    /// Sends what `provider` still buffers and stops it, off the async
    /// threads (the exporter blocks).
    pub async fn shut_down(provider: Option<SdkTracerProvider>) {
        let Some(provider) = provider else { return };
        match tokio::task::spawn_blocking(move || provider.shutdown()).await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => tracing::warn!(error = %err, "trace export did not shut down cleanly"),
            Err(err) => tracing::warn!(error = %err, "trace export did not shut down cleanly"),
        }
    }

    /// Starts the span that enqueues `job`, a child of `parent` (the
    /// caller's context) or the root of a new trace. Its context is what
    /// the job should carry. `None` when spans are off.
    pub fn enqueue(&self, job: &NewJob, parent: Option<TraceParent>) -> Option<JobSpan> {
        let tracer = self.tracer.as_ref()?;
        let parent = parent.map_or_else(Context::new, |parent| {
            Context::new().with_remote_span_context(parent.span_context())
        });
        let span = tracer
            .span_builder(format!("enqueue {}", job.queue))
            .with_kind(SpanKind::Producer)
            .with_attributes(job_attributes(
                JobId::from(job.id.as_uuid()),
                &job.queue,
                &job.task_type,
                "send",
            ))
            .start_with_context(tracer, &parent);
        Some(JobSpan { span })
    }

    /// Starts the span of `job`'s current attempt: the first is a child of
    /// its context, a later one the root of a trace linked to it. `None`
    /// when spans are off.
    pub fn attempt(&self, job: &Job) -> Option<JobSpan> {
        let tracer = self.tracer.as_ref()?;
        let origin = TraceParent::of_job(job);
        let mut attributes =
            job_attributes(JobId::from(job.id), &job.queue, &job.task_type, "process");
        attributes.push(KeyValue::new(
            "conveyor.job.attempt",
            i64::from(job.attempts),
        ));
        let builder = tracer
            .span_builder(format!("process {}", job.queue))
            .with_kind(SpanKind::Consumer)
            .with_attributes(attributes);
        let span = if job.attempts <= 1 {
            builder.start_with_context(
                tracer,
                &Context::new().with_remote_span_context(origin.span_context()),
            )
        } else {
            builder
                .with_links(vec![Link::with_context(origin.span_context())])
                .start_with_context(tracer, &Context::new())
        };
        Some(JobSpan { span })
    }
}

/// The attributes every job span carries (OpenTelemetry's messaging
/// conventions, and the job's type).
fn job_attributes(
    id: JobId,
    queue: &str,
    task_type: &str,
    operation: &'static str,
) -> Vec<KeyValue> {
    vec![
        KeyValue::new("messaging.system", "conveyor"),
        KeyValue::new("messaging.operation.type", operation),
        KeyValue::new("messaging.destination.name", queue.to_owned()),
        KeyValue::new("messaging.message.id", id.to_string()),
        KeyValue::new("conveyor.job.type", task_type.to_owned()),
    ]
}

/// A span about one job: an enqueue or an attempt.
#[derive(Debug)]
pub struct JobSpan {
    span: opentelemetry_sdk::trace::Span,
}

impl JobSpan {
    /// This span's context, to hand on.
    pub fn traceparent(&self) -> TraceParent {
        TraceParent::of_span(self.span.span_context())
    }

    /// Ends the span as succeeded.
    pub fn succeed(mut self) {
        self.span.set_status(Status::Ok);
        self.span.end();
    }

    /// Ends the span as failed, saying why.
    pub fn fail(mut self, why: impl Into<String>) {
        self.span.set_status(Status::error(why.into()));
        self.span.end();
    }

    /// Ends the span with its status unset: neither a success nor a
    /// failure (an attempt interrupted by a shutdown, a job replayed).
    pub fn end(mut self) {
        self.span.end();
    }

    /// Ends an enqueue span by what the insert did: a job created
    /// succeeded, a replay or a conflict is neither, an error failed.
    pub fn end_enqueue(self, outcome: Result<&Inserted, &StoreError>) {
        match outcome {
            Ok(Inserted::Created(_)) => self.succeed(),
            Ok(_) => self.end(),
            Err(err) => self.fail(err.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIVEN: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_traceparent_reads_back_as_written() {
        let parsed = TraceParent::parse(GIVEN).expect("valid");
        assert_eq!(parsed.to_string(), GIVEN);
        assert!(parsed.is_sampled());
        let unsampled = TraceParent::parse(&GIVEN.replace("-01", "-00")).expect("valid");
        assert!(!unsampled.is_sampled());
        // A later version's extra fields are skipped; it is written back as 00.
        let later =
            TraceParent::parse(&format!("01{}-what-comes-next", &GIVEN[2..])).expect("valid");
        assert_eq!(later.to_string(), GIVEN);
    }

    #[test]
    fn what_the_w3c_rules_reject_is_not_a_traceparent() {
        for bad in [
            "",
            "hello",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn an_id_of_zeros_still_gets_a_valid_context() {
        for id in [uuid::Uuid::nil(), uuid::Uuid::from_u128(7 << 64)] {
            let derived = TraceParent::for_job(JobId::from(id));
            assert_eq!(TraceParent::parse(&derived.to_string()), Some(derived));
        }
    }

    #[test]
    fn a_job_without_a_context_gets_one_named_by_its_id() {
        let id = JobId::new();
        let derived = TraceParent::for_job(id);
        assert_eq!(
            format!("{:032x}", derived.trace_id()),
            id.as_uuid().simple().to_string()
        );
        assert_eq!(TraceParent::parse(&derived.to_string()), Some(derived));
        assert!(derived.is_sampled());
    }
}
