//! The handler API: what a task is given and what it returns.
//!
//! A handler is an async function from a typed payload and a [`Context`] to
//! a serializable result or a [`JobError`]. The error's kind alone decides
//! what happens next: [`JobError::Retryable`] schedules another attempt (while
//! attempts remain), [`JobError::Permanent`] fails the job at once.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use conveyor::JobId;
use futures::future::BoxFuture;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

/// Why an attempt did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobError {
    /// Worth trying again later (a timeout, a dependency that was down).
    #[error("{0}")]
    Retryable(String),
    /// Trying again cannot help (bad input, a refused request).
    #[error("{0}")]
    Permanent(String),
}

impl JobError {
    pub fn retryable(message: impl std::fmt::Display) -> Self {
        JobError::Retryable(message.to_string())
    }

    pub fn permanent(message: impl std::fmt::Display) -> Self {
        JobError::Permanent(message.to_string())
    }
}

/// What a handler knows about the attempt it is running.
#[derive(Debug, Clone)]
pub struct Context {
    pub job_id: JobId,
    /// 1 for the first attempt.
    pub attempt: i32,
    pub max_attempts: i32,
    pub task_type: String,
    pub queue: String,
    /// The trace context of this attempt: its span's when trace export is
    /// on, the job's otherwise. Send it on (as a `traceparent` header) with
    /// the requests the handler makes, to join their spans to the job's.
    pub traceparent: conveyor::trace::TraceParent,
    cancel: CancellationToken,
    progress: Progress,
}

/// Largest progress report, serialized.
pub const MAX_PROGRESS_BYTES: usize = 64 * 1024;

/// Why a progress report was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProgressError {
    #[error("progress is not representable as JSON: {0}")]
    NotJson(String),
    #[error("progress is {bytes} bytes as JSON; at most {MAX_PROGRESS_BYTES} are kept")]
    TooLarge { bytes: usize },
    #[error("progress contains a NUL character, which PostgreSQL cannot store")]
    Unstorable,
    #[error("progress nests deeper than {MAX_PROGRESS_DEPTH} levels")]
    TooDeep,
}

/// The latest progress an attempt's handler reported, until the next
/// heartbeat writes it.
#[derive(Debug, Clone, Default)]
pub struct Progress(Arc<Mutex<Option<serde_json::Value>>>);

impl Progress {
    /// The report waiting to be written, if any.
    pub fn take(&self) -> Option<serde_json::Value> {
        self.0.lock().ok().and_then(|mut slot| slot.take())
    }

    /// Puts back a report a heartbeat could not write, unless a newer one
    /// arrived meanwhile.
    pub fn restore(&self, value: serde_json::Value) {
        if let Ok(mut slot) = self.0.lock() {
            slot.get_or_insert(value);
        }
    }

    fn set(&self, value: serde_json::Value) {
        if let Ok(mut slot) = self.0.lock() {
            *slot = Some(value);
        }
    }
}

impl Context {
    pub(crate) fn new(
        job: &conveyor::Job,
        traceparent: conveyor::trace::TraceParent,
        cancel: CancellationToken,
        progress: Progress,
    ) -> Self {
        Context {
            traceparent,
            job_id: JobId::from(job.id),
            attempt: job.attempts,
            max_attempts: job.max_attempts,
            task_type: job.task_type.clone(),
            queue: job.queue.clone(),
            cancel,
            progress,
        }
    }

    /// Reports how far the attempt has come (any JSON value, at most
    /// [`MAX_PROGRESS_BYTES`]); `GET /jobs/{id}` shows it as `progress`.
    /// Costs no write of its own: the latest report is written with the
    /// worker's next heartbeat, so call it as often as you like. A report
    /// made less than a heartbeat before the attempt ends may not be
    /// written.
    pub fn progress(&self, progress: impl Serialize) -> Result<(), ProgressError> {
        let value = serde_json::to_value(progress)
            .map_err(|err| ProgressError::NotJson(err.to_string()))?;
        let text = value.to_string();
        if text.len() > MAX_PROGRESS_BYTES {
            return Err(ProgressError::TooLarge { bytes: text.len() });
        }
        storable(&value, 0)?;
        self.progress.set(value);
        Ok(())
    }

    /// True once the job was canceled, timed out, or the worker is shutting
    /// down past its grace period. A handler that notices should return
    /// promptly; one that does not is stopped anyway.
    pub fn is_canceled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// Completes when [`Context::is_canceled`] becomes true.
    pub async fn canceled(&self) {
        self.cancel.cancelled().await;
    }
}

/// Deepest nesting of a progress report: PostgreSQL's parser, like any,
/// has a stack limit, and a report it refused would be dropped.
pub const MAX_PROGRESS_DEPTH: usize = 32;

/// Refuses what PostgreSQL's `jsonb` cannot take: a NUL character in a
/// string or key, nesting past [`MAX_PROGRESS_DEPTH`].
fn storable(value: &serde_json::Value, depth: usize) -> Result<(), ProgressError> {
    if depth > MAX_PROGRESS_DEPTH {
        return Err(ProgressError::TooDeep);
    }
    match value {
        serde_json::Value::String(text) if text.contains('\0') => Err(ProgressError::Unstorable),
        serde_json::Value::Array(items) => {
            items.iter().try_for_each(|item| storable(item, depth + 1))
        }
        serde_json::Value::Object(map) => map.iter().try_for_each(|(key, value)| {
            if key.contains('\0') {
                return Err(ProgressError::Unstorable);
            }
            storable(value, depth + 1)
        }),
        _ => Ok(()),
    }
}

/// What the worker gets back from a handler: a JSON result or an error.
pub type HandlerResult = Result<serde_json::Value, JobError>;

/// A handler with its payload type erased, as the registry stores it.
pub trait Handler: Send + Sync + 'static {
    fn call(
        &self,
        payload: serde_json::Value,
        context: Context,
    ) -> BoxFuture<'static, HandlerResult>;
}

struct Typed<F, P> {
    task_type: String,
    function: F,
    _payload: std::marker::PhantomData<fn(P)>,
}

impl<F, P, R, Fut> Handler for Typed<F, P>
where
    F: Fn(P, Context) -> Fut + Send + Sync + 'static,
    P: DeserializeOwned + Send + 'static,
    R: Serialize,
    Fut: Future<Output = Result<R, JobError>> + Send + 'static,
{
    fn call(
        &self,
        payload: serde_json::Value,
        context: Context,
    ) -> BoxFuture<'static, HandlerResult> {
        let payload = match serde_json::from_value::<P>(payload) {
            Ok(payload) => payload,
            Err(err) => {
                let message = format!("payload does not fit task type {}: {err}", self.task_type);
                return Box::pin(async move { Err(JobError::Permanent(message)) });
            }
        };
        let future = (self.function)(payload, context);
        Box::pin(async move {
            let output = future.await?;
            serde_json::to_value(output).map_err(|err| {
                JobError::Permanent(format!("result is not representable as JSON: {err}"))
            })
        })
    }
}

/// Handlers by task type.
#[derive(Clone, Default)]
pub struct Registry {
    handlers: HashMap<String, Arc<dyn Handler>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names: Vec<_> = self.handlers.keys().collect();
        names.sort();
        f.debug_struct("Registry")
            .field("task_types", &names)
            .finish()
    }
}

impl Registry {
    pub fn new() -> Self {
        Registry::default()
    }

    /// Registers `function` for jobs of `task_type`. Its payload is
    /// deserialized into `P`; a payload that does not fit fails the job
    /// permanently, naming the task type. Registering a type again replaces
    /// the earlier handler.
    pub fn register<P, R, F, Fut>(&mut self, task_type: &str, function: F) -> &mut Self
    where
        F: Fn(P, Context) -> Fut + Send + Sync + 'static,
        P: DeserializeOwned + Send + 'static,
        R: Serialize + 'static,
        Fut: Future<Output = Result<R, JobError>> + Send + 'static,
    {
        self.handlers.insert(
            task_type.to_owned(),
            Arc::new(Typed {
                task_type: task_type.to_owned(),
                function,
                _payload: std::marker::PhantomData,
            }),
        );
        self
    }

    pub fn get(&self, task_type: &str) -> Option<Arc<dyn Handler>> {
        self.handlers.get(task_type).cloned()
    }

    pub fn task_types(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.handlers.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }
}
