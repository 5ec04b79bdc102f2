//! A real browser for the dashboard tests: Debian's `chromium`, driven
//! through `chromedriver` (WebDriver) by fantoccini, headless, one
//! browser per test.
//!
//! Where the packages are missing, tests skip with a warning, unless
//! `CONVEYOR_REQUIRE_BROWSER=1` (CI sets it), which makes that a failure.
//! `CONVEYOR_SCREENSHOTS=<dir>` saves each page's screenshot there
//! (relative paths from the repository root): that is how
//! `docs/images/dashboard-*.png` are made.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use tokio::process::{Child, Command};
use tokio::time::Instant;

/// How long a condition may take to hold in the browser. Page loads
/// here take tens of milliseconds; the live refresh runs every two
/// seconds and the overview's counts are up to five seconds old.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// The first of `names` found on PATH.
fn on_path(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    names.iter().find_map(|name| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    })
}

/// `chromedriver` and the browser binary, or why they cannot be used.
fn binaries() -> Result<(PathBuf, PathBuf), String> {
    let driver = std::env::var_os("CONVEYOR_CHROMEDRIVER")
        .map(PathBuf::from)
        .or_else(|| on_path(&["chromedriver"]))
        .ok_or("chromedriver is not installed (Debian: apt-get install chromium-driver)")?;
    let browser = std::env::var_os("CONVEYOR_CHROMIUM")
        .map(PathBuf::from)
        .or_else(|| on_path(&["chromium", "chromium-browser", "google-chrome"]))
        .ok_or("chromium is not installed (Debian: apt-get install chromium)")?;
    Ok((driver, browser))
}

/// A headless browser session and the chromedriver behind it (killed on
/// drop).
pub struct Browser {
    pub client: Client,
    base: String,
    _driver: Child,
}

impl Browser {
    /// A browser pointed at `base` (the API under test), or `None` (with a
    /// warning) where the packages are missing and not required.
    pub async fn start(base: &str) -> Option<Browser> {
        let (driver_path, browser_path) = match binaries() {
            Ok(found) => found,
            Err(missing) => {
                assert!(
                    std::env::var("CONVEYOR_REQUIRE_BROWSER").as_deref() != Ok("1"),
                    "browser tests are required (CONVEYOR_REQUIRE_BROWSER=1) but {missing}"
                );
                eprintln!("warning: skipping a browser test: {missing}");
                return None;
            }
        };
        let port = free_port();
        let mut driver = Command::new(&driver_path)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|err| panic!("cannot run {}: {err}", driver_path.display()));
        let webdriver = format!("http://127.0.0.1:{port}");
        wait_for_driver(&webdriver, &mut driver).await;
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": browser_path,
                // Root (as CI runs) needs --no-sandbox; /dev/shm is small
                // in containers.
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1280,900",
                         "--hide-scrollbars", "--force-device-scale-factor=1"],
            },
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!("a JSON object")
        };
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities)
            .connect(&webdriver)
            .await
            .unwrap_or_else(|err| panic!("chromedriver did not start a session: {err}"));
        Some(Browser {
            client,
            base: base.to_owned(),
            _driver: driver,
        })
    }

    pub async fn open(&self, path: &str) {
        self.client
            .goto(&format!("{}{path}", self.base))
            .await
            .unwrap_or_else(|err| panic!("open {path}: {err}"));
    }

    /// The path and query of the page shown.
    pub async fn path(&self) -> String {
        let url = self.client.current_url().await.expect("current url");
        match url.query() {
            Some(query) => format!("{}?{query}", url.path()),
            None => url.path().to_owned(),
        }
    }

    pub async fn find(&self, css: &str) -> fantoccini::elements::Element {
        match self.client.find(Locator::Css(css)).await {
            Ok(element) => element,
            Err(err) => panic!("no element {css:?} on {}: {err}", self.path().await),
        }
    }

    /// Clicks element `css`. Finding and clicking are two round trips, and
    /// a live refresh may replace the element between them (a stale
    /// element): it is then found again, as a person would look again.
    pub async fn click(&self, css: &str) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            match self.find(css).await.click().await {
                Ok(()) => return,
                Err(err) if is_stale(&err) && Instant::now() < deadline => {}
                Err(err) => panic!("click {css:?}: {err}"),
            }
        }
    }

    /// The text of element `css` (found again if a refresh replaced it).
    pub async fn text(&self, css: &str) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            match self.find(css).await.text().await {
                Ok(text) => return text,
                Err(err) if is_stale(&err) && Instant::now() < deadline => {}
                Err(err) => panic!("text of {css:?}: {err}"),
            }
        }
    }

    /// Runs `script` in the page and returns its value.
    pub async fn eval(&self, script: &str) -> Value {
        self.client
            .execute(script, Vec::new())
            .await
            .unwrap_or_else(|err| panic!("script {script:?}: {err}"))
    }

    /// Waits until `check` (given the page's text) holds, or panics with
    /// `what` and the text last seen.
    pub async fn wait_for_text(&self, what: &str, check: impl Fn(&str) -> bool) -> String {
        self.wait_until(what, "body", check).await
    }

    /// Waits until the text of element `css` satisfies `check`; returns it.
    pub async fn wait_for(&self, css: &str, check: impl Fn(&str) -> bool) -> String {
        self.wait_until(css, css, check).await
    }

    /// Waits until the text of element `css` satisfies `check`, or panics
    /// naming `what` with the text last seen.
    async fn wait_until(&self, what: &str, css: &str, check: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            // The element may be between two refreshes: a failed read is
            // read again.
            let text = match self.client.find(Locator::Css(css)).await {
                Ok(element) => element.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            if check(&text) {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "waited {PATIENCE:?} for {what}; {css:?} said {text:?} on {}",
                self.path().await
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the page shown is at `path` (and query).
    pub async fn wait_for_path(&self, check: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let path = self.path().await;
            if check(&path) {
                return path;
            }
            assert!(
                Instant::now() < deadline,
                "still at {path} after {PATIENCE:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn resize(&self, width: u32, height: u32) {
        self.client
            .set_window_size(width, height)
            .await
            .expect("resize");
    }

    /// Saves a screenshot of the page as `<name>.png` under
    /// `CONVEYOR_SCREENSHOTS`, when that is set.
    pub async fn screenshot(&self, name: &str) {
        let Some(dir) = std::env::var_os("CONVEYOR_SCREENSHOTS") else {
            return;
        };
        let png = self.client.screenshot().await.expect("screenshot");
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let dir = root.join(dir);
        std::fs::create_dir_all(&dir).expect("screenshot directory");
        std::fs::write(dir.join(format!("{name}.png")), png).expect("write screenshot");
    }

    pub async fn close(self) {
        let _ = self.client.close().await;
    }
}

/// Whether WebDriver says the element was replaced since it was found.
fn is_stale(err: &fantoccini::error::CmdError) -> bool {
    matches!(err, fantoccini::error::CmdError::Standard(e)
        if e.error == fantoccini::error::ErrorStatus::StaleElementReference)
}

/// A port nothing listens on now (the kernel's choice, released at once
/// for chromedriver to bind).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free port")
}

/// Waits until chromedriver answers `/status`.
async fn wait_for_driver(webdriver: &str, driver: &mut Child) {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Ok(response) = client.get(format!("{webdriver}/status")).send().await
            && response.status().is_success()
        {
            return;
        }
        if let Ok(Some(status)) = driver.try_wait() {
            panic!("chromedriver exited at start ({status})");
        }
        assert!(
            Instant::now() < deadline,
            "chromedriver did not answer within {PATIENCE:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
