//! The client: submits jobs at a steady rate through the typed client
//! (`conveyor-client`), each with its own idempotency key, which it sends
//! again with the same key and body after any connection error, timeout or
//! 503, as it promises; goes on after a 5xx the typed client does not
//! retry (and counts it: each is a bug); and cancels some jobs after
//! submitting them.

use std::sync::Arc;
use std::time::Duration;

use conveyor_client::types::CreateJob;
use conveyor_client::{Canceled, Client, Error, Retries};
use rand::Rng;
use sea_orm::{DatabaseConnection, TransactionTrait};
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
    /// `noop` enqueued inside a transaction of the harness's own on the
    /// stack's PostgreSQL (`conveyor::enqueue_in`), which commits: it
    /// completes, published by the leader's commit listener (or, when the
    /// leader was killed, by the next one from the outbox).
    InTransaction,
    /// The same, but the transaction rolls back: no job exists under its key.
    RolledBack,
    /// `py.echo` in the queue only the Python example workers serve, over
    /// the worker protocol: completes.
    RemoteEcho,
    /// `py.sleep` of 200-2,700 ms there, longer than a heartbeat period:
    /// completes.
    RemoteSleep,
    /// `py.reject` there, failing permanently: failed after one attempt.
    RemoteReject,
    /// `py.flaky` there, failing every attempt retryably: failed after
    /// `max_attempts`.
    RemoteFlaky,
    /// `py.sleep` of 8 s there, canceled after about a second: canceled
    /// (the next heartbeat ends it), or completed when the cancel found it
    /// finished.
    RemoteCancel,
}

impl Kind {
    /// Attempts allowed: enough that a job rarely loses them all to
    /// killed workers, and few for the jobs that fail on purpose.
    pub fn max_attempts(self) -> i32 {
        match self {
            Kind::TransientFail | Kind::RemoteFlaky => 3,
            Kind::RetryAfterLoss => 1,
            _ => 5,
        }
    }

    fn pick(rng: &mut impl Rng) -> Kind {
        match rng.random_range(0..100) {
            0..19 => Kind::Noop,
            19..22 => Kind::InTransaction,
            22..23 => Kind::RolledBack,
            23..27 => Kind::Paused,
            27..31 => Kind::Limited,
            31..34 => Kind::EdgeFloats,
            34..49 => Kind::Sleep,
            49..54 => Kind::LongSleep,
            54..61 => Kind::Fail,
            61..70 => Kind::TransientFail,
            70..76 => Kind::CancelWaiting,
            76..82 => Kind::CancelRunning,
            82..85 => Kind::HangUp,
            85..88 => Kind::RefuseOnce,
            88..91 => Kind::RetryAfterLoss,
            91..94 => Kind::RemoteEcho,
            94..97 => Kind::RemoteSleep,
            97..98 => Kind::RemoteReject,
            98..99 => Kind::RemoteFlaky,
            _ => Kind::RemoteCancel,
        }
    }

    /// Run by the Python example workers, over the worker protocol.
    pub fn is_remote(self) -> bool {
        matches!(
            self,
            Kind::RemoteEcho
                | Kind::RemoteSleep
                | Kind::RemoteReject
                | Kind::RemoteFlaky
                | Kind::RemoteCancel
        )
    }

    fn job(self, n: u64, key: &str) -> CreateJob {
        let queue = match self {
            Kind::Paused => crate::queue_ops::PAUSABLE,
            Kind::Limited => crate::queue_ops::LIMITED,
            kind if kind.is_remote() => REMOTE_QUEUE,
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
            Kind::InTransaction | Kind::RolledBack => ("noop", json!({ "n": n }), 0),
            Kind::RemoteEcho => ("py.echo", json!({ "n": n }), 0),
            Kind::RemoteSleep => ("py.sleep", json!({ "ms": 200 + n % 2_500 }), 0),
            Kind::RemoteReject => ("py.reject", json!({ "n": n }), 0),
            Kind::RemoteFlaky => ("py.flaky", json!({ "n": n }), 0),
            Kind::RemoteCancel => ("py.sleep", json!({ "ms": 8_000 }), 0),
        };
        CreateJob::new(task_type, payload)
            .queue(queue)
            .max_attempts(i64::from(self.max_attempts()))
            .delay_seconds(delay)
            .idempotency_key(key)
    }
}

/// A payload of numbers PostgreSQL stores as `numeric` and writes back in
/// full: they must read back as the same numbers.
fn edge_floats(n: u64) -> Value {
    json!({ "n": n, "max": f64::MAX, "min": f64::MIN, "tiny": f64::MIN_POSITIVE,
            "subnormal": 5e-324, "third": 1.0 / 3.0, "big": u64::MAX, "small": i64::MIN })
}

/// The queue only the Python example workers serve.
pub const REMOTE_QUEUE: &str = "remote";

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

impl Submission {
    /// A submission not yet sent.
    fn new(key: String, kind: Kind) -> Self {
        Submission {
            key,
            kind,
            accepted: None,
            rejected: None,
            tries: 0,
            cancel_answers: Vec::new(),
            hung_up: false,
            server_errors: Vec::new(),
            read_back: None,
        }
    }
}

/// Submits about `rate` jobs a second until `until`; returns every
/// submission once each has been accepted, rejected, or given up on.
pub async fn run(
    api: String,
    db: DatabaseConnection,
    rate: u32,
    until: Instant,
    seed: u64,
) -> Vec<Submission> {
    let client = match Client::builder(&api)
        .timeout(Duration::from_secs(5))
        .retries(Retries {
            max_tries: u32::MAX,
            base: Duration::from_millis(50),
            max_delay: Duration::from_secs(1),
            give_up_after: GIVE_UP_AFTER,
        })
        .build()
    {
        Ok(client) => client,
        Err(err) => {
            eprintln!("chaos: no client for {api}: {err}");
            return Vec::new();
        }
    };
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
        let (client, api, db) = (client.clone(), api.clone(), db.clone());
        tasks.spawn(async move {
            let submission = match kind {
                Kind::InTransaction | Kind::RolledBack => in_transaction(&db, n, kind).await,
                _ => submit(&client, &api, n, kind).await,
            };
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

async fn submit(client: &Client, api: &str, n: u64, kind: Kind) -> Submission {
    let key = format!("chaos-{n}");
    let job = kind.job(n, &key);
    let mut submission = Submission::new(key, kind);
    if kind == Kind::HangUp {
        submission.tries = 1;
        submission.hung_up = true;
        hang_up(api, &job).await;
        return submission;
    }
    let deadline = Instant::now() + GIVE_UP_AFTER;
    while Instant::now() < deadline {
        submission.tries += 1;
        match client.create(&job).await {
            Ok(created) => {
                submission.accepted = Some(created.job.id);
                break;
            }
            // A 5xx the typed client does not retry (it retries 503s) is
            // a bug to report; the submission goes on.
            Err(err) if err.status().is_some_and(|status| status >= 500) => {
                if err.status() != Some(503) {
                    submission.server_errors.push(format!("POST /jobs: {err}"));
                }
            }
            Err(err @ (Error::Problem(_) | Error::Unexpected { .. })) => {
                submission.rejected = Some(err.to_string());
                return submission;
            }
            // No answer within the typed client's patience, or an answer
            // cut short: asked again, under the same key.
            Err(_) => {}
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let Some(id) = submission.accepted else {
        return submission;
    };
    if kind == Kind::EdgeFloats {
        let sent = job.payload.clone().unwrap_or_default();
        submission.read_back = read_back(client, id, &sent).await;
    }
    let wait = match kind {
        Kind::CancelWaiting => Duration::from_millis(300),
        Kind::CancelRunning | Kind::RemoteCancel => Duration::from_millis(1_200),
        _ => return submission,
    };
    tokio::time::sleep(wait).await;
    submission.cancel_answers = cancel(client, id).await;
    submission
}

/// Enqueues a job inside a transaction of its own, as an application
/// would, and commits it (or rolls it back); a transaction that failed
/// (PostgreSQL killed, a commit whose answer was lost) is run again under
/// the same key, which finds the job if the commit did happen.
async fn in_transaction(db: &DatabaseConnection, n: u64, kind: Kind) -> Submission {
    let key = format!("chaos-{n}");
    let mut submission = Submission::new(key.clone(), kind);
    let deadline = Instant::now() + GIVE_UP_AFTER;
    while Instant::now() < deadline {
        submission.tries += 1;
        let mut job = conveyor::NewJob::new("noop", json!({ "n": n }));
        job.max_attempts = kind.max_attempts();
        job.idempotency_key = Some(key.clone());
        let attempt = async {
            let txn = db.begin().await?;
            let inserted = conveyor::enqueue_in(&txn, job)
                .await
                .map_err(|err| sea_orm::DbErr::Custom(err.to_string()))?;
            if kind == Kind::RolledBack {
                txn.rollback().await?;
            } else {
                txn.commit().await?;
            }
            Ok::<_, sea_orm::DbErr>(inserted)
        };
        match attempt.await {
            Ok(_) if kind == Kind::RolledBack => break,
            Ok(conveyor::Inserted::Created(job) | conveyor::Inserted::Replayed(job)) => {
                submission.accepted = Some(job.id);
                break;
            }
            Ok(conveyor::Inserted::Conflict(job)) => {
                submission.rejected = Some(format!("key taken by job {}", job.id));
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    submission
}

/// Whether `GET /jobs/{id}` gives back `payload` (the typed client retries
/// through outages); `None` if no answer came.
async fn read_back(client: &Client, id: Uuid, payload: &Value) -> Option<bool> {
    let deadline = Instant::now() + GIVE_UP_AFTER;
    while Instant::now() < deadline {
        if let Ok(job) = client.job(id).await {
            return Some(&job.payload == payload);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    None
}

/// Sends `POST /jobs` with `body` and hangs up at once, without reading the
/// answer: a client whose timeout fired, or a load balancer that gave up.
async fn hang_up(api: &str, job: &CreateJob) {
    use tokio::io::AsyncWriteExt;
    let addr = api.trim_start_matches("http://");
    let body = serde_json::to_string(job).unwrap_or_default();
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

/// Cancels `id`, going on after errors and 5xx; returns every status seen
/// (0 for no answer).
async fn cancel(client: &Client, id: Uuid) -> Vec<u16> {
    let mut answers = Vec::new();
    let deadline = Instant::now() + GIVE_UP_AFTER;
    let mut pause = Duration::from_millis(50);
    while Instant::now() < deadline {
        let status = match client.cancel(id).await {
            Ok(Canceled::Canceled(_)) => 200,
            Ok(Canceled::Requested(_)) => 202,
            Err(err) => err.status().unwrap_or(0),
        };
        answers.push(status);
        if (1..500).contains(&status) {
            break;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(1));
    }
    answers
}
