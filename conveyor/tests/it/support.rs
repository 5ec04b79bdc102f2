use std::time::Duration;

use conveyor::{ClaimToken, Fence, Job, JobId, NewJob, Store, Transition, WorkerId};
use serde_json::json;
use testkit::TestDb;

/// The worker that owns every running job these tests set up.
pub const OWNER: &str = "worker-owner";

pub async fn store() -> (TestDb, Store) {
    let db = TestDb::new().await;
    let store = Store::new(db.conn.clone());
    (db, store)
}

pub fn owner() -> WorkerId {
    WorkerId::new(OWNER)
}

/// The token of the claim that [`job_in`] gives a running job.
pub fn owner_token() -> ClaimToken {
    ClaimToken::from(uuid::Uuid::from_u128(0x0c1a_1a00))
}

/// The fence of the attempt that [`job_in`] gives a running job.
pub fn owner_fence(id: JobId) -> Fence {
    Fence {
        job_id: id,
        token: owner_token(),
        worker_id: owner(),
        attempt: 1,
        settles: true,
    }
}

/// The states a job can be found in, with "running and asked to cancel" as a
/// state of its own because some edges depend on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Queued,
    Running,
    RunningCancelRequested,
    Retrying,
    Completed,
    Failed,
    Canceled,
}

impl State {
    pub const ALL: [State; 7] = [
        State::Queued,
        State::Running,
        State::RunningCancelRequested,
        State::Retrying,
        State::Completed,
        State::Failed,
        State::Canceled,
    ];
}

/// A job put into `state` directly in the table, as if the edges leading
/// there had been taken (attempt 1, held by [`OWNER`] when running).
pub async fn job_in(db: &TestDb, store: &Store, state: State) -> Job {
    let job = store
        .insert(&NewJob::new("demo", json!({"n": 1})))
        .await
        .expect("insert")
        .job()
        .clone();
    let set = match state {
        State::Queued => None,
        State::Running | State::RunningCancelRequested => Some(format!(
            "status = 'running', attempts = 1, worker_id = '{OWNER}', claim_token = '{}', \
             started_at = now(), lease_expires_at = now() + interval '1 minute', cancel_requested = {}",
            owner_token(),
            state == State::RunningCancelRequested
        )),
        State::Retrying => Some(
            "status = 'retrying', attempts = 1, error_message = 'boom', \
             run_at = now() - interval '1 second'"
                .to_owned(),
        ),
        State::Completed => Some(
            "status = 'completed', attempts = 1, result = '{}', completed_at = now()".to_owned(),
        ),
        State::Failed => Some(
            "status = 'failed', attempts = 1, error_message = 'boom', failed_at = now()".to_owned(),
        ),
        State::Canceled => Some("status = 'canceled', canceled_at = now()".to_owned()),
    };
    if let Some(set) = set {
        db.execute(&format!("UPDATE jobs SET {set} WHERE id = '{}'", job.id))
            .await;
    }
    reload(store, &job).await
}

pub async fn reload(store: &Store, job: &Job) -> Job {
    store
        .find(JobId::from(job.id))
        .await
        .expect("find")
        .expect("job exists")
}

pub fn id(job: &Job) -> JobId {
    JobId::from(job.id)
}

/// Claims `job` for `worker` with a new token and a 30 s lease.
pub async fn claim(store: &Store, job: &Job, worker: &WorkerId) -> Transition {
    store
        .claim(id(job), worker, ClaimToken::new(), Duration::from_secs(30))
        .await
        .expect("claim ran")
}

/// [`claim`], which must win; the row after the claim.
pub async fn claimed(store: &Store, job: &Job, worker: &WorkerId) -> Job {
    claim(store, job, worker)
        .await
        .won()
        .expect("the claim wins")
}

/// A broker on this test's Redis (a server or a cluster, as the
/// environment says) and key prefix.
pub fn broker_for(redis: &testkit::TestRedis, pool_size: usize) -> conveyor::Broker {
    let address =
        conveyor::broker::RedisAddress::new(&redis.url, redis.cluster).expect("REDIS_URL");
    conveyor::Broker::connect(&address, &redis.prefix, pool_size).expect("broker")
}
