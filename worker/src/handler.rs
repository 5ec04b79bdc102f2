//! The handler API: what a task is given and what it returns.
//!
//! A handler is an async function from a typed payload and a [`Context`] to
//! a serializable result or a [`JobError`]. The error's kind alone decides
//! what happens next: [`JobError::Retryable`] schedules another attempt (while
//! attempts remain), [`JobError::Permanent`] fails the job at once.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

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
    cancel: CancellationToken,
}

impl Context {
    pub(crate) fn new(job: &conveyor::Job, cancel: CancellationToken) -> Self {
        Context {
            job_id: JobId::from(job.id),
            attempt: job.attempts,
            max_attempts: job.max_attempts,
            task_type: job.task_type.clone(),
            queue: job.queue.clone(),
            cancel,
        }
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
