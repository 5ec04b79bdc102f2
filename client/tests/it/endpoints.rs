//! Every endpoint through the typed client, answered with its own type.

use conveyor_client::types::{
    AttemptState, BulkRequest, ClaimJobs, CompleteJob, CreateJob, CreateSchedule, FailJob,
    Heartbeat, HeldJob, JobStatusName, JobTemplate, ListParams, MissedPolicy, QueuePatch,
    ReleaseJob, UpdateSchedule,
};
use conveyor_client::{Canceled, Error};
use serde_json::json;

use crate::support::Api;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_are_created_read_listed_canceled_and_retried() {
    let api = Api::start().await;
    let client = api.client();

    let created = client
        .create(
            &CreateJob::new("noop", json!({"n": 1}))
                .queue("mail")
                .priority(3),
        )
        .await
        .expect("create");
    assert!(!created.replayed);
    assert_eq!(created.job.queue, "mail");
    assert_eq!(created.job.priority, 3);
    assert!(
        created.job.idempotency_key.is_some(),
        "every create carries a key"
    );
    let again = client.job(created.job.id).await.expect("read");
    assert_eq!(again.id, created.job.id);

    let batch = client
        .create_batch(&[
            CreateJob::new("noop", json!({})),
            CreateJob::new("noop", json!({})).priority(42),
        ])
        .await
        .expect("batch");
    assert_eq!((batch.created, batch.rejected), (1, 1));
    let refused = batch.items[1].error.as_ref().expect("a problem");
    assert_eq!(refused.field.as_deref(), Some("jobs[1].priority"));

    let page = client
        .list(&ListParams::default().queue("mail").limit(10))
        .await
        .expect("list");
    assert_eq!(page.count, 1);
    assert_eq!(page.items[0].id, created.job.id);

    let delayed = client
        .create(&CreateJob::new("noop", json!({})).delay_seconds(3_600))
        .await
        .expect("create");
    let canceled = client.cancel(delayed.job.id).await.expect("cancel");
    assert!(matches!(&canceled, Canceled::Canceled(job) if job.status == "canceled"));
    let retried = client.retry(delayed.job.id).await.expect("retry");
    assert_eq!(retried.status, "queued");
    let result = client.result(delayed.job.id).await.expect("result");
    assert_eq!(result.status, "queued");
    let attempts = client.attempts(delayed.job.id).await.expect("attempts");
    assert!(attempts.items.is_empty());

    let canceled = client
        .cancel_matching(&BulkRequest {
            queue: Some("mail".to_owned()),
            ..BulkRequest::default()
        })
        .await
        .expect("bulk cancel");
    assert_eq!(canceled.changed, 1);
    let retried = client
        .retry_matching(&BulkRequest {
            queue: Some("mail".to_owned()),
            ..BulkRequest::default()
        })
        .await
        .expect("bulk retry");
    assert_eq!(retried.changed, 1);
    let queued = client
        .list(&ListParams::default().status(JobStatusName::Queued))
        .await
        .expect("list");
    assert_eq!(queued.count, 3);

    let summary = client.summary().await.expect("summary");
    assert_eq!(summary.total, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queues_and_schedules_are_operated() {
    let api = Api::start().await;
    let client = api.client();

    let paused = client.pause_queue("mail").await.expect("pause");
    assert!(paused.paused);
    let limited = client
        .configure_queue(
            "mail",
            &QueuePatch {
                concurrency_limit: Some(Some(4)),
                ..QueuePatch::default()
            },
        )
        .await
        .expect("configure");
    assert_eq!(limited.concurrency_limit, Some(4));
    // `Some(None)` is sent as null: back to no limit.
    let unlimited = client
        .configure_queue(
            "mail",
            &QueuePatch {
                concurrency_limit: Some(None),
                ..QueuePatch::default()
            },
        )
        .await
        .expect("configure");
    assert_eq!(unlimited.concurrency_limit, None);
    assert!(unlimited.paused, "fields left out are kept");
    let resumed = client.resume_queue("mail").await.expect("resume");
    assert!(!resumed.paused);
    let queues = client.queues().await.expect("queues");
    assert!(queues.queues.iter().any(|queue| queue.name == "mail"));

    let schedule = client
        .create_schedule(&CreateSchedule {
            name: "nightly".to_owned(),
            cron: "0 3 * * *".to_owned(),
            timezone: Some("Europe/Paris".to_owned()),
            job: JobTemplate {
                task_type: "noop".to_owned(),
                queue: None,
                payload: None,
                priority: None,
                max_attempts: None,
                timeout_seconds: None,
            },
            enabled: None,
            missed: Some(MissedPolicy::Once),
            max_catch_up: None,
        })
        .await
        .expect("create schedule");
    assert_eq!(schedule.missed, MissedPolicy::Once);
    let updated = client
        .update_schedule(
            "nightly",
            &UpdateSchedule {
                cron: Some("0 4 * * *".to_owned()),
                ..UpdateSchedule::default()
            },
        )
        .await
        .expect("update");
    assert_eq!(updated.cron, "0 4 * * *");
    assert!(
        !client
            .pause_schedule("nightly")
            .await
            .expect("pause")
            .enabled
    );
    assert!(
        client
            .resume_schedule("nightly")
            .await
            .expect("resume")
            .enabled
    );
    let fired = client.trigger_schedule("nightly").await.expect("trigger");
    assert_eq!(fired.schedule.as_deref(), Some("nightly"));
    assert_eq!(client.schedules().await.expect("list").items.len(), 1);
    assert_eq!(
        client.schedule("nightly").await.expect("read").name,
        "nightly"
    );
    client.delete_schedule("nightly").await.expect("delete");
    let gone = client.schedule("nightly").await.expect_err("deleted");
    assert_eq!(gone.code(), Some("schedule_not_found"));

    assert_eq!(client.health().await.expect("health").status, "ok");
    assert_eq!(client.ready().await.expect("ready").status, "ready");
    let metrics = client.metrics().await.expect("metrics");
    assert!(metrics.contains("conveyor_"), "{metrics}");
    let document = client.openapi().await.expect("openapi");
    // Every path the document names that is not the dashboard's has a
    // method here; the list below is what this test exercised.
    let paths: Vec<&str> = document["paths"]
        .as_object()
        .expect("paths")
        .keys()
        .map(String::as_str)
        .collect();
    for path in [
        "/jobs",
        "/jobs/batch",
        "/jobs/{id}",
        "/jobs/{id}/cancel",
        "/jobs/{id}/retry",
        "/jobs/{id}/result",
        "/jobs/{id}/attempts",
        "/jobs/retry",
        "/jobs/cancel",
        "/jobs/summary",
        "/jobs/claim",
        "/jobs/heartbeat",
        "/jobs/{id}/complete",
        "/jobs/{id}/fail",
        "/jobs/{id}/release",
        "/queues",
        "/queues/{queue}",
        "/queues/{queue}/pause",
        "/queues/{queue}/resume",
        "/schedules",
        "/schedules/{name}",
        "/schedules/{name}/pause",
        "/schedules/{name}/resume",
        "/schedules/{name}/trigger",
        "/health",
        "/ready",
        "/metrics",
    ] {
        assert!(paths.contains(&path), "{path} is not in the document");
    }
    assert_eq!(
        paths.len(),
        27,
        "the API has an endpoint this client may not cover: {paths:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_claims_heartbeats_and_reports_through_the_client() {
    let api = Api::start().await;
    let client = api.client();
    let none = client
        .claim(&ClaimJobs {
            worker: "rust-remote".to_owned(),
            ..ClaimJobs::default()
        })
        .await
        .expect("claim");
    assert!(none.is_empty(), "an empty queue: 204, no jobs");
    let first = client
        .create(&CreateJob::new("noop", json!({"n": 1})))
        .await
        .expect("create");
    let second = client
        .create(&CreateJob::new("noop", json!({"n": 2})))
        .await
        .expect("create");
    let claimed = client
        .claim(&ClaimJobs {
            worker: "rust-remote".to_owned(),
            max: Some(2),
            ..ClaimJobs::default()
        })
        .await
        .expect("claim");
    let ids: Vec<uuid::Uuid> = claimed.iter().map(|job| job.id).collect();
    assert_eq!(ids, [first.job.id, second.job.id]);

    let beat = client
        .heartbeat(&Heartbeat {
            worker: "rust-remote".to_owned(),
            jobs: claimed
                .iter()
                .map(|job| HeldJob {
                    id: job.id,
                    token: job.token,
                    progress: Some(json!({"done": 0.5})),
                })
                .collect(),
        })
        .await
        .expect("heartbeat");
    assert!(
        beat.jobs
            .iter()
            .all(|job| job.state == AttemptState::Running && job.lease_expires_at.is_some()),
        "{beat:?}"
    );

    let done = client
        .complete_attempt(
            claimed[0].id,
            &CompleteJob {
                worker: "rust-remote".to_owned(),
                token: claimed[0].token,
                result: json!({"ok": true}),
            },
        )
        .await
        .expect("complete");
    assert_eq!(done.status, "completed");
    let failed = client
        .fail_attempt(
            claimed[1].id,
            &FailJob {
                worker: "rust-remote".to_owned(),
                token: claimed[1].token,
                error: "no".to_owned(),
                retry: Some(false),
            },
        )
        .await
        .expect("fail");
    assert_eq!(failed.status, "failed");
    let stale = client
        .complete_attempt(
            claimed[1].id,
            &CompleteJob {
                worker: "rust-remote".to_owned(),
                token: uuid::Uuid::new_v4(),
                result: json!(null),
            },
        )
        .await
        .expect_err("a token of no attempt");
    assert_eq!(stale.status(), Some(409));
    assert_eq!(stale.code(), Some("attempt_lost"));

    // A worker shutting down puts its attempt back, uncounted.
    let third = client
        .create(&CreateJob::new("noop", json!({"n": 3})))
        .await
        .expect("create");
    let claimed = client
        .claim(&ClaimJobs {
            worker: "rust-remote".to_owned(),
            ..ClaimJobs::default()
        })
        .await
        .expect("claim");
    assert_eq!(claimed[0].id, third.job.id);
    let released = client
        .release_attempt(
            third.job.id,
            &ReleaseJob {
                worker: "rust-remote".to_owned(),
                token: claimed[0].token,
            },
        )
        .await
        .expect("release");
    assert_eq!(
        (released.status.as_str(), released.attempt),
        ("retrying", 0)
    );
}

#[tokio::test]
async fn error_answers_are_typed_problems() {
    let api = Api::start().await;
    let client = api.client();
    let missing = client
        .job(uuid::Uuid::now_v7())
        .await
        .expect_err("no such job");
    assert_eq!(missing.status(), Some(404));
    assert_eq!(missing.code(), Some("job_not_found"));

    let invalid = client
        .create(&CreateJob::new("noop", json!({})).priority(10))
        .await
        .expect_err("out of range");
    let Error::Problem(problem) = &invalid else {
        panic!("{invalid:?}")
    };
    assert_eq!(
        (problem.status, problem.field.as_deref()),
        (422, Some("priority"))
    );

    let key = "order-1";
    client
        .create(&CreateJob::new("noop", json!({"a": 1})).idempotency_key(key))
        .await
        .expect("create");
    let conflict = client
        .create(&CreateJob::new("noop", json!({"a": 2})).idempotency_key(key))
        .await
        .expect_err("same key, other request");
    assert_eq!(conflict.code(), Some("idempotency_key_conflict"));
}

#[tokio::test]
async fn an_address_that_is_not_http_is_refused_at_once() {
    for base in ["not a url", "ftp://127.0.0.1/", "mailto:ops@example.com"] {
        assert!(
            matches!(
                conveyor_client::Client::new(base),
                Err(Error::InvalidBase(_))
            ),
            "{base}"
        );
    }
}
