//! The client: submits jobs at a steady rate, each with its own idempotency
//! key, retrying a submission with the same key and body after any
//! connection error, timeout or 5xx, as a careful production client would;
//! and cancels some jobs after submitting them.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;
use uuid::Uuid;

/// The job mix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Kind {
    /// `noop`: completes.
    Noop,
    /// `sleep` of 50-300 ms: completes.
    Sleep,
    /// `sleep` of 3 s: completes; often running when a worker is killed,
    /// stopped or told to shut down.
    LongSleep,
    /// `demo` failing permanently: failed after one attempt.
    Fail,
    /// `demo` failing retryably: failed after `max_attempts`.
    TransientFail,
    /// `noop` due in a minute, canceled while it waits: canceled.
    CancelWaiting,
    /// `sleep` of 8 s, canceled after about a second: canceled, or
    /// completed when the cancel found it finished.
    CancelRunning,
    /// `noop` sent by a client that hangs up right after sending: if the
    /// API took it, it completes, and soon (the report shows how soon).
    HangUp,
    /// `noop` whose first completion PostgreSQL refuses (a trigger the
    /// harness installs): completed on a later attempt.
    RefuseOnce,
    /// `sleep` of 4 s with one attempt: when its worker is paused past its
    /// lease it fails, the harness retries it by hand while the worker is
    /// still paused, and the resumed worker's late outcome must be refused.
    /// Completed, or failed by a lost lease.
    RetryAfterLoss,
    /// `noop` whose payload holds numbers at the edges of the float range:
    /// completes, and reads back exactly as sent.
    EdgeFloats,
    /// `noop` in the queue the operator pauses and resumes: completes, and
    /// never starts inside a pause.
    Paused,
    /// `sleep` of 50-300 ms in the queue under concurrency and rate
    /// limits: completes.
    Limited,
}

impl Kind {
    /// Attempts allowed: enough that a job rarely loses them all to
    /// killed workers, and few for the jobs that fail on purpose.
    pub fn max_attempts(self) -> i32 {
        match self {
            Kind::TransientFail => 3,
            Kind::RetryAfterLoss => 1,
            _ => 5,
        }
    }

    fn pick(rng: &mut impl Rng) -> Kind {
        match rng.random_range(0..100) {
            0..29 => Kind::Noop,
            29..33 => Kind::Paused,
            33..37 => Kind::Limited,
            37..40 => Kind::EdgeFloats,
            40..58 => Kind::Sleep,
            58..63 => Kind::LongSleep,
            63..70 => Kind::Fail,
            70..79 => Kind::TransientFail,
            79..85 => Kind::CancelWaiting,
            85..91 => Kind::CancelRunning,
            91..94 => Kind::HangUp,
            94..97 => Kind::RefuseOnce,
            _ => Kind::RetryAfterLoss,
        }
    }

    fn body(self, n: u64, key: &str) -> Value {
        let queue = match self {
            Kind::Paused => crate::queue_ops::PAUSABLE,
            Kind::Limited => crate::queue_ops::LIMITED,
            _ => "default",
        };
        let (task_type, payload, delay) = match self {
            Kind::Noop => ("noop", json!({ "n": n }), 0),
            Kind::Sleep => ("sleep", json!({ "ms": 50 + n % 250 }), 0),
            Kind::LongSleep => ("sleep", json!({ "ms": 3_000 }), 0),
            Kind::Fail => ("demo", json!({ "fail": true, "n": n }), 0),
            Kind::TransientFail => ("demo", json!({ "transient_fail": true, "n": n }), 0),
            Kind::CancelWaiting => ("noop", json!({ "n": n }), 60),
            Kind::CancelRunning => ("sleep", json!({ "ms": 8_000 }), 0),
            Kind::HangUp => ("noop", json!({ "n": n, "hang_up": true }), 0),
            Kind::RefuseOnce => ("noop", json!({ "n": n, REFUSE_ONCE: true }), 0),
            Kind::RetryAfterLoss => ("sleep", json!({ "ms": 4_000, RETRY_AFTER_LOSS: true }), 0),
            Kind::EdgeFloats => ("noop", edge_floats(n), 0),
            Kind::Paused => ("noop", json!({ "n": n }), 0),
            Kind::Limited => ("sleep", json!({ "ms": 50 + n % 250 }), 0),
        };
        json!({
            "queue": queue,
            "type": task_type,
            "payload": payload,
            "max_attempts": self.max_attempts(),
            "delay_seconds": delay,
            "idempotency_key": key,
        })
    }
}

/// A payload of numbers PostgreSQL stores as `numeric` and writes back in
/// full: they must read back as the same numbers.
fn edge_floats(n: u64) -> Value {
    json!({ "n": n, "max": f64::MAX, "min": f64::MIN, "tiny": f64::MIN_POSITIVE,
            "subnormal": 5e-324, "third": 1.0 / 3.0, "big": u64::MAX, "small": i64::MIN })
}

/// The payload field that makes the harness's trigger refuse a job's first
/// completion.
pub const REFUSE_ONCE: &str = "refuse_once";
/// The payload field of the jobs the harness retries by hand after a loss.
pub const RETRY_AFTER_LOSS: &str = "retry_after_loss";

/// What happened to one submission.
#[derive(Debug, Clone)]
pub struct Submission {
    pub key: String,
    pub kind: Kind,
    /// The job id, once an answer 200 or 201 named it.
    pub accepted: Option<Uuid>,
    /// A 4xx answer other than the ones retried: a bug.
    pub rejected: Option<String>,
    /// Requests sent for this submission (more than one after errors).
    pub tries: u32,
    /// The statuses the cancel requests got, in order.
    pub cancel_answers: Vec<u16>,
    /// Sent by a client that hung up without reading the answer: accepted
    /// if the table holds its key.
    pub hung_up: bool,
    /// Answers 5xx other than 503 (unavailable): each is a bug.
    pub server_errors: Vec<String>,
    /// For payloads that must read back exactly: whether `GET /jobs/{id}`
    /// gave the payload sent.
    pub read_back: Option<bool>,
}

/// Submits about `rate` jobs a second until `until`; returns every
/// submission once each has been accepted, rejected, or given up on.
pub async fn run(api: String, rate: u32, until: Instant, seed: u64) -> Vec<Submission> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .pool_max_idle_per_host(64)
        .build()
        .unwrap_or_default();
    let mut rng: rand::rngs::StdRng = rand::SeedableRng::seed_from_u64(seed);
    let in_flight = Arc::new(Semaphore::new(256));
    let mut tasks = JoinSet::new();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate.max(1))));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut n = 0u64;
    while Instant::now() < until {
        tick.tick().await;
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            break;
        };
        n += 1;
        let kind = Kind::pick(&mut rng);
        let (http, api) = (http.clone(), api.clone());
        tasks.spawn(async move {
            let submission = submit(&http, &api, n, kind).await;
            drop(permit);
            submission
        });
    }
    let mut submissions = Vec::with_capacity(n as usize);
    while let Some(done) = tasks.join_next().await {
        if let Ok(submission) = done {
            submissions.push(submission);
        }
    }
    submissions
}

/// How long one submission (or one cancel) keeps retrying.
const GIVE_UP_AFTER: Duration = Duration::from_secs(90);

async fn submit(http: &reqwest::Client, api: &str, n: u64, kind: Kind) -> Submission {
    let key = format!("chaos-{n}");
    let body = kind.body(n, &key);
    let mut submission = Submission {
        key,
        kind,
        accepted: None,
        rejected: None,
        tries: 0,
        cancel_answers: Vec::new(),
        hung_up: false,
        server_errors: Vec::new(),
        read_back: None,
    };
    if kind == Kind::HangUp {
        submission.tries = 1;
        submission.hung_up = true;
        hang_up(api, &body).await;
        return submission;
    }
    let deadline = Instant::now() + GIVE_UP_AFTER;
    let mut pause = Duration::from_millis(50);
    while Instant::now() < deadline {
        submission.tries += 1;
        match http.post(format!("{api}/jobs")).json(&body).send().await {
            Ok(response) if response.status().is_success() => {
                let answer: Value = response.json().await.unwrap_or_default();
                // An answer cut short is asked again.
                if let Some(id) = answer["id"].as_str().and_then(|id| id.parse().ok()) {
                    submission.accepted = Some(id);
                    break;
                }
            }
            Ok(response) if response.status().is_server_error() => {
                if response.status() != reqwest::StatusCode::SERVICE_UNAVAILABLE {
                    let status = response.status();
                    let text = response.text().await.unwrap_or_default();
                    submission
                        .server_errors
                        .push(format!("POST /jobs: {status}: {text}"));
                }
            }
            Ok(response) => {
                let status = response.status();
                let text = response.text().await.unwrap_or_default();
                submission.rejected = Some(format!("{status}: {text}"));
                return submission;
            }
            Err(_) => {}
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(1));
    }
    let Some(id) = submission.accepted else {
        return submission;
    };
    if kind == Kind::EdgeFloats {
        submission.read_back = read_back(http, api, id, &body["payload"]).await;
    }
    let wait = match kind {
        Kind::CancelWaiting => Duration::from_millis(300),
        Kind::CancelRunning => Duration::from_millis(1_200),
        _ => return submission,
    };
    tokio::time::sleep(wait).await;
    submission.cancel_answers = cancel(http, api, id).await;
    submission
}

/// Whether `GET /jobs/{id}` gives back `payload`, retrying through outages;
/// `None` if no answer came.
async fn read_back(http: &reqwest::Client, api: &str, id: Uuid, payload: &Value) -> Option<bool> {
    let deadline = Instant::now() + GIVE_UP_AFTER;
    while Instant::now() < deadline {
        if let Ok(response) = http.get(format!("{api}/jobs/{id}")).send().await
            && response.status().is_success()
            && let Ok(job) = response.json::<Value>().await
        {
            return Some(&job["payload"] == payload);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    None
}

/// Sends `POST /jobs` with `body` and hangs up at once, without reading the
/// answer: a client whose timeout fired, or a load balancer that gave up.
async fn hang_up(api: &str, body: &Value) {
    use tokio::io::AsyncWriteExt;
    let addr = api.trim_start_matches("http://");
    let body = body.to_string();
    let request = format!(
        "POST /jobs HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\n\
         content-length: {}\r\n\r\n{body}",
        body.len()
    );
    if let Ok(mut socket) = tokio::net::TcpStream::connect(addr).await {
        let _ = socket.write_all(request.as_bytes()).await;
        let _ = socket.shutdown().await;
    }
}

/// Cancels `id`, retrying after errors and 5xx; returns every status seen.
async fn cancel(http: &reqwest::Client, api: &str, id: Uuid) -> Vec<u16> {
    let mut answers = Vec::new();
    let deadline = Instant::now() + GIVE_UP_AFTER;
    let mut pause = Duration::from_millis(50);
    while Instant::now() < deadline {
        match http.post(format!("{api}/jobs/{id}/cancel")).send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                answers.push(status);
                if status < 500 {
                    break;
                }
            }
            Err(_) => answers.push(0),
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(1));
    }
    answers
}
