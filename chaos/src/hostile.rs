//! The hostile prober: while the faults run, sends input the API must
//! refuse (with the 4xx it documents, or 503 during an outage, never
//! another 5xx) and opens connections that trickle their headers, which the
//! API must cut off on its own. What the API takes or mishandles is
//! counted; every count must be 0.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinSet;
use tokio::time::Instant;

/// How long a trickling client keeps sending: well past the API's header
/// timeout (10 s by default), so a connection still open then was not cut.
const TRICKLE_FOR: Duration = Duration::from_secs(25);
/// Trickling clients open at once.
const MAX_TRICKLING: usize = 20;

/// What the prober saw.
#[derive(Debug, Default)]
pub struct Findings {
    pub probes: usize,
    pub server_errors: Vec<String>,
    pub mishandled: Vec<String>,
    pub slow_clients_closed: usize,
}

/// One request and the answers it may get (besides 503).
struct Probe {
    name: &'static str,
    method: reqwest::Method,
    path: &'static str,
    body: Option<Value>,
    expect: &'static [u16],
    /// For a batch: the status its first item must have.
    item: Option<u16>,
    /// A form body (`application/x-www-form-urlencoded`) instead of JSON.
    form: Option<&'static str>,
}

fn probes() -> Vec<Probe> {
    let post = |name, body: Value, expect| Probe {
        name,
        method: reqwest::Method::POST,
        path: "/jobs",
        body: Some(body),
        expect,
        item: None,
        form: None,
    };
    let get = |name, path, expect| Probe {
        name,
        method: reqwest::Method::GET,
        path,
        body: None,
        expect,
        item: None,
        form: None,
    };
    vec![
        post(
            "NUL in a payload",
            json!({"payload": {"t": "a\u{0}b"}}),
            &[422],
        ),
        post(
            "NUL in a key",
            json!({"payload": {}, "idempotency_key": "k\u{0}"}),
            &[422],
        ),
        post(
            "run_at in year 0",
            json!({"payload": {}, "run_at": "0000-06-01T00:00:00Z"}),
            &[422],
        ),
        post(
            "run_at past year 9999",
            json!({"payload": {}, "run_at": "9999-12-31T23:59:59-23:59"}),
            &[422],
        ),
        post(
            "a payload that is not an object",
            json!({"payload": [1]}),
            &[422],
        ),
        get("NUL as a queue filter", "/jobs?queue=%00", &[422]),
        get("NUL as a type filter", "/jobs?type=%00", &[422]),
        get("a path id that is not UTF-8", "/jobs/%FF", &[422]),
        get("a cursor not from a page", "/jobs?after=nonsense", &[422]),
        get("an offset past the cap", "/jobs?offset=10001", &[422]),
        get("a full page with its total", "/jobs?limit=100", &[200]),
        Probe {
            name: "a batch with a bad item",
            method: reqwest::Method::POST,
            path: "/jobs/batch",
            body: Some(json!({"jobs": [{"payload": {"t": "\u{0}"}}]})),
            expect: &[200],
            item: Some(422),
            form: None,
        },
        // The dashboard: bad input is a 4xx page, and an action without
        // this browser's form token (here: no cookie at all) changes
        // nothing (a 303 would mean it paused the operator's queue).
        get(
            "a dashboard filter that is no status",
            "/ui/jobs?status=bogus",
            &[422],
        ),
        get(
            "a dashboard filter given twice",
            "/ui/failed?queue=a&queue=b",
            &[400],
        ),
        get("a dashboard job id not UTF-8", "/ui/jobs/%FF", &[422]),
        get("a dashboard search for NUL", "/ui/find?q=%00", &[404]),
        Probe {
            name: "a dashboard action without a form token",
            method: reqwest::Method::POST,
            path: "/ui/queues/pausable/pause",
            body: None,
            expect: &[403],
            item: None,
            form: Some("csrf=0000000000000000000000000000000000000000000000000000000000000000"),
        },
    ]
}

/// Probes the API at `api` until `until`; then waits for the trickling
/// clients to be cut off or give up.
pub async fn run(api: String, until: Instant) -> Findings {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap_or_default();
    let mut findings = Findings::default();
    let mut trickling = JoinSet::new();
    let probes = probes();
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    let mut n = 0usize;
    while Instant::now() < until {
        tick.tick().await;
        n += 1;
        if n.is_multiple_of(10) {
            // A cross-site browser form: refused whatever else it holds.
            let form = reqwest::multipart::Form::new().part(
                "file",
                reqwest::multipart::Part::text("hi").file_name("a.txt"),
            );
            let sent = http
                .post(format!("{api}/jobs"))
                .header("origin", "https://elsewhere.example")
                .multipart(form)
                .send()
                .await;
            judge(&mut findings, "a cross-site form", sent, &[403], None).await;
        }
        if n % 10 == 5
            && trickling.len() < MAX_TRICKLING
            && Instant::now() + TRICKLE_FOR < until + Duration::from_secs(5)
        {
            trickling.spawn(trickle(api.clone()));
        }
        let probe = &probes[n % probes.len()];
        let mut request = http.request(probe.method.clone(), format!("{api}{}", probe.path));
        if let Some(body) = &probe.body {
            request = request.json(body);
        }
        if let Some(form) = probe.form {
            request = request
                .header("content-type", "application/x-www-form-urlencoded")
                .body(form);
        }
        let sent = request.send().await;
        judge(&mut findings, probe.name, sent, probe.expect, probe.item).await;
    }
    while let Some(closed) = trickling.join_next().await {
        match closed {
            Ok(true) => findings.slow_clients_closed += 1,
            Ok(false) => findings.mishandled.push(format!(
                "a client trickling its headers was still connected after {TRICKLE_FOR:?}"
            )),
            Err(_) => {}
        }
    }
    findings
}

async fn judge(
    findings: &mut Findings,
    name: &str,
    sent: Result<reqwest::Response, reqwest::Error>,
    expect: &[u16],
    item: Option<u16>,
) {
    findings.probes += 1;
    // A connection error is what an outage or a restart looks like.
    let Ok(response) = sent else {
        return;
    };
    let status = response.status().as_u16();
    if status == 503 {
        return;
    }
    if expect.contains(&status) {
        if let Some(want) = item {
            let body: Value = response.json().await.unwrap_or_default();
            let got = body["items"][0]["status"].as_u64();
            if got != Some(u64::from(want)) {
                let record = if got.is_some_and(|got| got >= 500 && got != 503) {
                    &mut findings.server_errors
                } else {
                    &mut findings.mishandled
                };
                record.push(format!(
                    "{name}: its item was answered {got:?}, expected {want}"
                ));
            }
        }
        return;
    }
    let text = response.text().await.unwrap_or_default();
    let text: String = text.chars().take(300).collect();
    if status >= 500 {
        findings
            .server_errors
            .push(format!("{name}: {status}: {text}"));
    } else {
        findings.mishandled.push(format!(
            "{name}: answered {status}, expected one of {expect:?}: {text}"
        ));
    }
}

/// Sends a request's headers a byte a second; true when the API closed the
/// connection before [`TRICKLE_FOR`].
async fn trickle(api: String) -> bool {
    let addr = api.trim_start_matches("http://").to_owned();
    let Ok(mut socket) = tokio::net::TcpStream::connect(&addr).await else {
        // Not accepted at all (an API restart): nothing held open.
        return true;
    };
    let started = Instant::now();
    if socket
        .write_all(b"GET /health HTTP/1.1\r\nHost: chaos\r\nX-Slow: ")
        .await
        .is_err()
    {
        return true;
    }
    let mut buffer = [0u8; 256];
    while started.elapsed() < TRICKLE_FOR {
        if socket.write_all(b"a").await.is_err() {
            return true;
        }
        match tokio::time::timeout(Duration::from_secs(1), socket.read(&mut buffer)).await {
            // Closed, or an answer (a 408) and then closed: cut off.
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
            Err(_) => {}
        }
    }
    false
}
