//! Every request's work is bounded: slow or many clients, a slow or hung
//! database, and shutdown with clients that never finish.

use std::time::{Duration, Instant};

use api::Settings;
use api::serve::Limits;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{Options, TestApp, assert_problem};

/// Far longer than any bound under test, far shorter than a hang.
const DEADLINE: Duration = Duration::from_secs(10);

fn with_limits(limits: Limits) -> Options {
    Options {
        settings: Settings {
            limits,
            ..Settings::default()
        },
        ..Options::default()
    }
}

/// A client that opens a new connection for every request: the server
/// closes idle pooled ones after the header timeout, and a pooled one could
/// be reused just as it closes.
fn fresh_client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(DEADLINE)
        .build()
        .expect("client")
}

/// Opens a connection and sends a `POST /jobs` whose body (100 bytes
/// announced) stops after `started`: a request whose handler waits.
async fn stalled_post(app: &TestApp, started: &str) -> TcpStream {
    let mut stream = TcpStream::connect(app.addr()).await.expect("connect");
    let head = "POST /jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
                Content-Length: 100\r\n\r\n";
    stream
        .write_all(format!("{head}{started}").as_bytes())
        .await
        .expect("write");
    stream
}

/// Reads what the server sends until it closes the connection (or the
/// deadline passes, which fails the test).
async fn read_to_close(stream: &mut TcpStream) -> String {
    let mut received = Vec::new();
    tokio::time::timeout(DEADLINE, stream.read_to_end(&mut received))
        .await
        .expect("the server closes the connection")
        .ok();
    String::from_utf8_lossy(&received).into_owned()
}

#[tokio::test]
async fn clients_trickling_their_headers_neither_block_others_nor_stay_open() {
    let app = TestApp::with(with_limits(Limits {
        header_timeout: Duration::from_millis(500),
        ..Limits::default()
    }))
    .await;
    let mut slow = Vec::new();
    for _ in 0..200 {
        let mut stream = TcpStream::connect(app.addr()).await.expect("connect");
        stream
            .write_all(b"GET /jobs HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            .await
            .expect("write");
        slow.push(stream);
    }
    let (status, _) = app.get("/health").await;
    assert_eq!(status, 200, "served while 200 clients trickle");
    let started = Instant::now();
    for stream in &mut slow {
        read_to_close(stream).await;
    }
    assert!(
        started.elapsed() < DEADLINE,
        "every trickling connection was closed"
    );
    // A fresh connection: the server also closes idle pooled ones after
    // the header timeout, and a pooled one could be reused just as it
    // closes.
    let fresh = fresh_client();
    let response = fresh.get(app.url("/health")).send().await.expect("send");
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn silent_and_idle_connections_are_closed_after_the_header_timeout() {
    let app = TestApp::with(with_limits(Limits {
        header_timeout: Duration::from_millis(300),
        max_connections: 4,
        ..Limits::default()
    }))
    .await;
    // Connected, never a byte sent.
    let mut silent = Vec::new();
    for _ in 0..4 {
        silent.push(TcpStream::connect(app.addr()).await.expect("connect"));
    }
    for stream in &mut silent {
        read_to_close(stream).await;
    }
    // One request, then idle on a kept-alive connection.
    let mut idle = TcpStream::connect(app.addr()).await.expect("connect");
    idle.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let answer = read_to_close(&mut idle).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // Every slot is free again.
    let fresh = fresh_client();
    let response = fresh.get(app.url("/health")).send().await.expect("send");
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn a_client_that_stops_reading_its_response_is_cut_off() {
    let app = TestApp::with(with_limits(Limits {
        body_timeout: Duration::from_millis(300),
        max_connections: 1,
        ..Limits::default()
    }))
    .await;
    // A page of 100 jobs of 200 kB each: 20 MB, more than the kernel's
    // socket buffers on both sides hold.
    app.db
        .execute(
            "INSERT INTO jobs (id, payload) SELECT gen_random_uuid(), \
             jsonb_build_object('pad', repeat('x', 200000)) FROM generate_series(1, 100)",
        )
        .await;
    let mut reader = TcpStream::connect(app.addr()).await.expect("connect");
    reader
        .write_all(b"GET /jobs?limit=100 HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    // It never reads; it holds the only connection until it is cut off.
    let fresh = fresh_client();
    let response = fresh.get(app.url("/health")).send().await.expect("served");
    assert_eq!(response.status(), 200);
    drop(reader);
}

#[tokio::test]
async fn a_body_that_stops_arriving_is_answered_408() {
    let app = TestApp::with(with_limits(Limits {
        body_timeout: Duration::from_millis(300),
        ..Limits::default()
    }))
    .await;
    let mut stream = stalled_post(&app, "{\"payload\": ").await;
    let answer = read_to_close(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("application/problem+json"), "{answer}");
    assert!(answer.contains("body_timeout"), "{answer}");
    assert_eq!(app.row_count().await, 0);
}

#[tokio::test]
async fn requests_over_the_in_flight_limit_are_503_at_once() {
    let app = TestApp::with(with_limits(Limits {
        max_in_flight: 1,
        ..Limits::default()
    }))
    .await;
    // This one holds the only slot: its handler waits for the body.
    let holder = stalled_post(&app, "{").await;
    let (status, problem) = testkit::wait_until("the slot to be taken", DEADLINE, || async {
        let (status, problem) = app.get("/health").await;
        (status == 503).then_some((status, problem))
    })
    .await;
    assert_problem(status, &problem, 503, "overloaded");
    drop(holder);
    testkit::wait_until("the slot to be free again", DEADLINE, || async {
        (app.get("/health").await.0 == 200).then_some(())
    })
    .await;
}

#[tokio::test]
async fn connections_over_the_limit_wait_until_one_closes() {
    let app = TestApp::with(with_limits(Limits {
        max_connections: 2,
        ..Limits::default()
    }))
    .await;
    let first = TcpStream::connect(app.addr()).await.expect("connect");
    let mut second = TcpStream::connect(app.addr()).await.expect("connect");
    second
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let mut answer = [0u8; 12];
    second
        .read_exact(&mut answer)
        .await
        .expect("second is served");
    assert_eq!(&answer, b"HTTP/1.1 200");
    // The third is connected by the kernel but not taken by the server.
    let mut third = TcpStream::connect(app.addr()).await.expect("connect");
    third
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let early = tokio::time::timeout(Duration::from_millis(300), third.read(&mut answer)).await;
    assert!(early.is_err(), "a third connection waits: {early:?}");
    drop(first);
    let answer = read_to_close(&mut third).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test]
async fn shutdown_does_not_wait_for_a_client_that_never_finishes() {
    let mut app = TestApp::with(with_limits(Limits {
        shutdown_grace: Duration::from_millis(300),
        max_in_flight: 1,
        // Far past the deadline below: only the grace period can end it.
        body_timeout: Duration::from_secs(600),
        request_timeout: Duration::from_secs(600),
        ..Limits::default()
    }))
    .await;
    let mut stuck = stalled_post(&app, "{").await;
    // The request is in flight (its handler waits for the body) once it
    // holds the only slot.
    testkit::wait_until("the stuck request to be in flight", DEADLINE, || async {
        (app.get("/health").await.0 == 503).then_some(())
    })
    .await;
    tokio::time::timeout(DEADLINE, app.stop())
        .await
        .expect("serve returns after the grace period");
    read_to_close(&mut stuck).await;
}

#[tokio::test]
async fn postgres_down_is_503_within_about_a_second() {
    let app = TestApp::with(Options {
        postgres_down: true,
        ..Options::default()
    })
    .await;
    let started = Instant::now();
    let (status, problem) = app.post_json("/jobs", &json!({"payload": {}})).await;
    assert_problem(status, &problem, 503, "database_unavailable");
    // The pool waits one second for a connection (it used to wait five).
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "503 after {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_hung_database_ends_requests_at_the_request_timeout() {
    let app = TestApp::with(Options {
        postgres_proxy: true,
        settings: Settings {
            limits: Limits {
                request_timeout: Duration::from_millis(500),
                ..Limits::default()
            },
            ..Settings::default()
        },
        ..Options::default()
    })
    .await;
    let proxy = app.postgres_proxy.as_ref().expect("proxy");
    // Warm a connection, then hold every reply far past the timeout.
    assert_eq!(app.get("/jobs").await.0, 200);
    proxy.delay_replies(Duration::from_secs(60));
    let id = uuid::Uuid::now_v7();
    let (status, problem) = app.get(&format!("/jobs/{id}")).await;
    assert_problem(status, &problem, 503, "request_timeout");
}

#[tokio::test]
async fn slow_reads_do_not_hold_up_job_creation() {
    let app = TestApp::with(Options {
        read_proxy: true,
        ..Options::default()
    })
    .await;
    let proxy = app.read_proxy.as_ref().expect("proxy");
    assert_eq!(app.get("/jobs").await.0, 200);
    proxy.delay_replies(Duration::from_secs(2));
    let lists: Vec<_> = (0..30)
        .map(|_| {
            let client = app.client.clone();
            let url = app.url("/jobs?limit=100");
            tokio::spawn(async move { client.get(url).send().await.map(|r| r.status()) })
        })
        .collect();
    for n in 0..5 {
        let (status, job) = app.post_json("/jobs", &json!({"payload": {"n": n}})).await;
        assert_eq!(status, 201, "created while 30 lists wait: {job}");
    }
    for list in lists {
        let status = list.await.expect("task").expect("answered");
        assert!(
            status == 200 || status == 503,
            "a list is answered, or refused as unavailable: {status}"
        );
    }
}
