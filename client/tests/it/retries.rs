//! Retries: a create whose answer was lost is sent again under the same
//! key and makes one job; a 503 is waited out; a request that must not be
//! repeated is not, once it may have been acted on.

use std::time::Duration;

use std::sync::{Arc, Mutex};

use conveyor_client::types::CreateJob;
use conveyor_client::{Error, Retries};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::Api;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_whose_answer_was_lost_makes_one_job_and_says_so() {
    let api = Api::start().await;
    let client = api.client();
    // The API creates the job; its 201 never reaches the client.
    api.front.lose_next_reply_containing(b"HTTP/1.1 201");
    let created = client
        .create(&CreateJob::new("noop", json!({})))
        .await
        .expect("create");
    assert!(
        created.replayed,
        "the retry found the job the first try made"
    );
    assert_eq!(api.rows().await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_whose_answer_was_lost_makes_each_job_once() {
    let api = Api::start().await;
    let client = api.client();
    api.front.lose_next_reply_containing(b"HTTP/1.1 200");
    let jobs: Vec<CreateJob> = (0..5)
        .map(|n| CreateJob::new("noop", json!({ "n": n })))
        .collect();
    let batch = client.create_batch(&jobs).await.expect("batch");
    assert_eq!((batch.created, batch.replayed), (0, 5));
    assert_eq!(api.rows().await, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_waits_out_a_database_outage() {
    let api = Api::start().await;
    let client = api.client();
    api.postgres.cut();
    let create = tokio::spawn({
        let client = client.clone();
        async move { client.create(&CreateJob::new("noop", json!({}))).await }
    });
    // The API finds PostgreSQL gone (its create answers 503, or waits for
    // a connection); the client goes on trying.
    let probe = conveyor_client::Client::builder(&api.base())
        .retries(Retries::none())
        .build()
        .expect("client");
    testkit::wait_until(
        "the API to find PostgreSQL gone",
        Duration::from_secs(10),
        || async {
            probe
                .ready()
                .await
                .err()
                .filter(|err| err.code() == Some("not_ready"))
        },
    )
    .await;
    api.postgres.restore();
    let created = create
        .await
        .expect("task")
        .expect("created after the outage");
    assert!(!created.replayed);
    assert_eq!(api.rows().await, 1);
}

/// A server that answers each connection's request with the next of
/// `answers` (status, body), recording each request's body.
async fn scripted(answers: Vec<(u16, String)>) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let bodies: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = bodies.clone();
    tokio::spawn(async move {
        for (status, body) in answers {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let request = read_body(&mut socket).await;
            seen.lock().expect("lock").push(request);
            let reply = format!(
                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
                 connection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = socket.write_all(reply.as_bytes()).await;
            let _ = socket.shutdown().await;
        }
    });
    (base, bodies)
}

/// One HTTP/1.1 request's body (as long as its `content-length` says).
async fn read_body(socket: &mut tokio::net::TcpStream) -> String {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    while let Ok(n) = socket.read(&mut chunk).await {
        if n == 0 {
            break;
        }
        buffer.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buffer).to_string();
        let Some(end) = text.find("\r\n\r\n") else {
            continue;
        };
        let length: usize = text[..end]
            .lines()
            .find_map(|line| {
                line.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(|value| value.trim().parse().unwrap_or(0))
            })
            .unwrap_or(0);
        if buffer.len() >= end + 4 + length {
            return text[end + 4..end + 4 + length].to_owned();
        }
    }
    String::new()
}

/// A client of `base` that waits 10 ms before its first retry.
fn quick_client(base: &str, max_tries: u32) -> conveyor_client::Client {
    conveyor_client::Client::builder(base)
        .retries(Retries {
            max_tries,
            base: Duration::from_millis(10),
            ..Retries::default()
        })
        .build()
        .expect("client")
}

fn unavailable() -> (u16, String) {
    let problem = json!({"type": "urn:conveyor:problem:database_unavailable",
        "title": "Service Unavailable", "status": 503,
        "detail": "PostgreSQL is unavailable", "code": "database_unavailable"});
    (503, problem.to_string())
}

#[tokio::test]
async fn a_503_is_retried_with_the_same_body_and_key() {
    let api = Api::start().await;
    // A real job view, for the scripted 201.
    let real = api
        .client()
        .create(&CreateJob::new("noop", json!({})))
        .await
        .expect("create")
        .job;
    let view = serde_json::to_string(&real).expect("encode");
    let (base, bodies) = scripted(vec![unavailable(), unavailable(), (201, view)]).await;
    let client = quick_client(&base, Retries::default().max_tries);
    let created = client
        .create(&CreateJob::new("noop", json!({"n": 1})))
        .await
        .expect("created on the third try");
    assert_eq!(created.job.id, real.id);
    let bodies = bodies.lock().expect("lock").clone();
    assert_eq!(bodies.len(), 3);
    assert!(bodies.iter().all(|body| body == &bodies[0]), "{bodies:?}");
    let sent: serde_json::Value = serde_json::from_str(&bodies[0]).expect("json");
    assert!(
        sent["idempotency_key"]
            .as_str()
            .is_some_and(|key| !key.is_empty())
    );
}

#[tokio::test]
async fn a_503_that_does_not_end_is_returned_as_its_problem() {
    let (base, bodies) = scripted(vec![unavailable(), unavailable()]).await;
    let client = quick_client(&base, 2);
    // A manual retry is repeated after a 503 too: the API did not act on it.
    let err = client
        .retry(uuid::Uuid::now_v7())
        .await
        .expect_err("unavailable");
    assert_eq!(
        (err.status(), err.code()),
        (Some(503), Some("database_unavailable"))
    );
    assert_eq!(bodies.lock().expect("lock").len(), 2);
}

#[tokio::test]
async fn a_request_timeout_is_not_taken_for_a_request_not_carried_out() {
    let timed_out = json!({"type": "urn:conveyor:problem:request_timeout",
        "title": "Service Unavailable", "status": 503,
        "detail": "the request took longer than the server allows", "code": "request_timeout"});
    let (base, bodies) = scripted(vec![
        (503, timed_out.to_string()),
        (503, timed_out.to_string()),
    ])
    .await;
    let client = quick_client(&base, Retries::default().max_tries);
    // A manual retry that ran past the server's time limit may still be
    // carried out: it is not sent again.
    let err = client
        .retry(uuid::Uuid::now_v7())
        .await
        .expect_err("timed out");
    assert_eq!(err.code(), Some("request_timeout"));
    assert_eq!(bodies.lock().expect("lock").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_whose_answer_was_lost_is_not_sent_again() {
    let api = Api::start().await;
    let client = api.client();
    let job = client
        .create(&CreateJob::new("noop", json!({})).delay_seconds(3_600))
        .await
        .expect("create")
        .job;
    // The cancel reaches the API and is carried out; its answer is lost.
    // Sent again, it would be answered 409 (already canceled).
    api.front.lose_next_reply_containing(b"HTTP/1.1 200");
    let lost = client.cancel(job.id).await.expect_err("no answer");
    assert!(matches!(lost, Error::Transport(_)), "{lost:?}");
    assert_eq!(client.job(job.id).await.expect("read").status, "canceled");
    let again = client.cancel(job.id).await.expect_err("already canceled");
    assert_eq!(again.status(), Some(409));
}
