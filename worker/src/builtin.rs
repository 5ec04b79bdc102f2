//! The task types the `conveyor-worker` binary registers.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::handler::{Context, JobError, Registry};

/// Longest `sleep` job: one hour.
pub const MAX_SLEEP_MS: u64 = 3_600_000;

/// Adds `demo`, `char_count`, `sleep` and `noop` to `registry`.
pub fn register(registry: &mut Registry) -> &mut Registry {
    registry
        .register("demo", demo)
        .register("char_count", char_count)
        .register("sleep", sleep)
        .register("noop", noop)
}

/// `{"fail": true}` fails permanently, `{"transient_fail": true}` fails
/// retryably every time; anything else succeeds with the payload's size.
async fn demo(
    payload: serde_json::Map<String, Value>,
    _context: Context,
) -> Result<Value, JobError> {
    if payload.get("fail") == Some(&Value::Bool(true)) {
        return Err(JobError::permanent("Forced failure requested by payload"));
    }
    if payload.get("transient_fail") == Some(&Value::Bool(true)) {
        return Err(JobError::retryable(
            "Transient failure requested by payload",
        ));
    }
    let input_size = Value::Object(payload).to_string().len();
    Ok(json!({
        "processed": true,
        "input_size": input_size,
        "message": format!("processed a payload of {input_size} bytes"),
    }))
}

#[derive(Debug, Deserialize)]
struct CharCount {
    text: String,
}

#[derive(Debug, Serialize)]
struct CharCountResult {
    characters: usize,
}

/// Counts Unicode scalar values.
async fn char_count(payload: CharCount, _context: Context) -> Result<CharCountResult, JobError> {
    Ok(CharCountResult {
        characters: payload.text.chars().count(),
    })
}

#[derive(Debug, Deserialize)]
struct Sleep {
    ms: u64,
}

/// Sleeps `ms` milliseconds. It deliberately ignores cancellation, so tests
/// can show that the worker stops a handler that does not cooperate.
async fn sleep(payload: Sleep, _context: Context) -> Result<Value, JobError> {
    if payload.ms > MAX_SLEEP_MS {
        return Err(JobError::permanent(format!(
            "ms must be at most {MAX_SLEEP_MS} (got {})",
            payload.ms
        )));
    }
    tokio::time::sleep(Duration::from_millis(payload.ms)).await;
    Ok(json!({ "slept_ms": payload.ms }))
}

/// Returns `{}` at once.
async fn noop(_payload: Value, _context: Context) -> Result<Value, JobError> {
    Ok(json!({}))
}
