//! A person watching the dashboard through every fault: its pages, one
//! after another (as its script polls: never two at once), and the page of
//! a job seen on the list. Every answer must be a whole page, 2xx, or a
//! 503 page while a dependency is down; never another 5xx, never a hang
//! past the API's own request timeout.

use std::time::Duration;

use tokio::time::Instant;

/// The pages cycled through.
const PAGES: [&str; 7] = [
    "/ui",
    "/ui/queues",
    "/ui/jobs",
    "/ui/jobs?status=running",
    "/ui/failed",
    "/ui/schedules",
    "/ui/workers",
];
/// Between two loads (the script's period is two seconds; a busy viewer
/// clicks faster).
const PERIOD: Duration = Duration::from_millis(300);
/// Longer than the API's request timeout (30 s): an answer later than this
/// is a hang.
const HANG: Duration = Duration::from_secs(35);

/// What the viewer saw.
#[derive(Debug, Default)]
pub struct Findings {
    /// Pages answered 2xx.
    pub loaded: usize,
    /// 5xx other than 503, broken pages, hangs.
    pub problems: Vec<String>,
}

/// The first job page linked from `html`.
fn first_job_link(html: &str) -> Option<String> {
    let start = html.find("href=\"/ui/jobs/")? + "href=\"".len();
    let rest = &html[start..];
    let end = rest.find('"')?;
    Some(rest[..end].to_owned())
}

pub async fn run(api: String, until: Instant) -> Findings {
    let http = reqwest::Client::builder()
        .timeout(HANG)
        .build()
        .unwrap_or_default();
    let mut findings = Findings::default();
    let mut job_page: Option<String> = None;
    let mut next = 0;
    while Instant::now() < until {
        let path = match (&job_page, next % (PAGES.len() + 1)) {
            (Some(job), n) if n == PAGES.len() => job.clone(),
            (_, n) => PAGES[n % PAGES.len()].to_owned(),
        };
        next += 1;
        let started = Instant::now();
        match http.get(format!("{api}{path}")).send().await {
            Ok(response) => {
                let status = response.status();
                let html = match response.text().await {
                    Ok(html) => html,
                    // Cut off by an API restart; a timeout is a hang.
                    Err(err) if !err.is_timeout() => {
                        tokio::time::sleep(PERIOD).await;
                        continue;
                    }
                    Err(err) => {
                        findings.problems.push(format!(
                            "dashboard GET {path}: the page stopped after {:.1} s: {err}",
                            started.elapsed().as_secs_f64()
                        ));
                        continue;
                    }
                };
                let whole = html.trim_end().ends_with("</html>");
                if status.is_success() && whole {
                    findings.loaded += 1;
                    if path == "/ui/jobs" {
                        job_page = first_job_link(&html).or(job_page.take());
                    }
                } else if status == reqwest::StatusCode::SERVICE_UNAVAILABLE && whole {
                    // A dependency is down: a page saying so is right.
                } else {
                    let start: String = html.chars().take(200).collect();
                    findings
                        .problems
                        .push(format!("dashboard GET {path}: {status}: {start}"));
                }
            }
            // The API restarting: nothing answers, which is not a fault
            // of the dashboard's.
            Err(err) if err.is_connect() || err.is_request() && !err.is_timeout() => {}
            Err(err) => findings.problems.push(format!(
                "dashboard GET {path}: no answer after {:.1} s: {err}",
                started.elapsed().as_secs_f64()
            )),
        }
        tokio::time::sleep(PERIOD).await;
    }
    findings
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_job_link_is_found() {
        let html =
            r#"<a href="/ui/jobs?queue=a">a</a><a class="mono" href="/ui/jobs/0193-ab" title="x">"#;
        // The filter link comes first but is not a job's page.
        assert_eq!(first_job_link(html), Some("/ui/jobs/0193-ab".to_owned()));
        assert_eq!(first_job_link("<p>none</p>"), None);
    }
}
