use std::net::SocketAddr;

use api::state::api_pool;
use api::{AppState, Settings};
use conveyor::{Broker, Store};
use redis::Commands;
use serde_json::Value;
use testkit::{TestDb, TestRedis};
use tokio::sync::oneshot;

/// A closed port: nothing listens on TCP port 9 (discard) here.
pub const CLOSED_REDIS_URL: &str = "redis://127.0.0.1:9";
pub const CLOSED_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:9/nowhere";

/// The API serving one test's database and Redis prefix.
pub struct TestApp {
    pub db: TestDb,
    pub redis: TestRedis,
    pub base: String,
    pub client: reqwest::Client,
    /// The proxy between the API and PostgreSQL, with `postgres_proxy`.
    pub postgres_proxy: Option<testkit::Proxy>,
    /// The proxy between the API's reads and PostgreSQL, with `read_proxy`.
    pub read_proxy: Option<testkit::Proxy>,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

#[derive(Default)]
pub struct Options {
    pub settings: Settings,
    pub redis_down: bool,
    pub postgres_down: bool,
    /// Reach PostgreSQL through a proxy the test can slow down or cut
    /// (`TestApp::postgres_proxy`).
    pub postgres_proxy: bool,
    /// Reads (only) reach PostgreSQL through a proxy, on their own pool as
    /// in `conveyor-api` (`TestApp::read_proxy`).
    pub read_proxy: bool,
    /// Spans for enqueued jobs (tests give an in-memory exporter's).
    pub traces: conveyor::trace::Traces,
    /// The writes' pool, connected directly with these settings.
    pub write_pool: Option<conveyor::store::PoolSettings>,
    /// How remote workers' attempts run (leases, retry backoff).
    pub remote: Option<conveyor::remote::Settings>,
}

impl TestApp {
    pub async fn start() -> TestApp {
        TestApp::with(Options::default()).await
    }

    /// The API with `CONVEYOR_API_TOKEN` set to `token`.
    pub async fn with_token(token: &str) -> TestApp {
        TestApp::with(Options {
            settings: Settings {
                api_token: Some(token.to_owned()),
                ..Settings::default()
            },
            ..Options::default()
        })
        .await
    }

    pub async fn with(options: Options) -> TestApp {
        let db = TestDb::new().await;
        let redis = TestRedis::new();
        let postgres_proxy = if options.postgres_proxy {
            Some(testkit::Proxy::start(testkit::proxy::target_of(&db.url)).await)
        } else {
            None
        };
        let store = match &postgres_proxy {
            _ if options.postgres_down => Store::connect_with(CLOSED_DATABASE_URL, &api_pool(2))
                .await
                .expect("lazy pool"),
            Some(proxy) => Store::connect_with(&proxy.url_through(&db.url), &api_pool(4))
                .await
                .expect("lazy pool"),
            None => match &options.write_pool {
                Some(settings) => Store::connect_with(&db.url, settings)
                    .await
                    .expect("lazy pool"),
                None => Store::new(db.conn.clone()),
            },
        };
        let read_proxy = if options.read_proxy {
            Some(testkit::Proxy::start(testkit::proxy::target_of(&db.url)).await)
        } else {
            None
        };
        let broker = if options.redis_down {
            let closed = conveyor::broker::RedisAddress::Single(CLOSED_REDIS_URL.to_owned());
            Broker::connect(&closed, &redis.prefix, 4).expect("broker")
        } else {
            broker_for(&redis, 4)
        };
        let mut state = AppState::new(store, broker, options.settings).with_traces(options.traces);
        if let Some(remote) = options.remote {
            state = state.with_remote(remote);
        }
        if let Some(proxy) = &read_proxy {
            let reads = Store::connect_with(&proxy.url_through(&db.url), &api_pool(8))
                .await
                .expect("lazy pool");
            state = state.with_reads(reads);
        }
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let (shutdown, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(api::serve(listener, state, async move {
            let _ = stopped.await;
        }));
        TestApp {
            db,
            redis,
            base,
            client: reqwest::Client::new(),
            postgres_proxy,
            read_proxy,
            shutdown: Some(shutdown),
            server: Some(server),
        }
    }

    /// The server's address, for raw connections.
    pub fn addr(&self) -> SocketAddr {
        self.base
            .trim_start_matches("http://")
            .parse()
            .expect("address")
    }

    /// Asks the server to shut down; answers when `serve` has returned.
    pub async fn stop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.expect("server task").expect("serve");
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> (u16, Value) {
        let response = self
            .client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("send");
        into_parts(response).await
    }

    /// `POST /jobs` with a multipart form.
    pub async fn post_form(&self, form: reqwest::multipart::Form) -> (u16, Value) {
        let response = self
            .client
            .post(self.url("/jobs"))
            .multipart(form)
            .send()
            .await
            .expect("send");
        into_parts(response).await
    }

    pub async fn post(&self, path: &str) -> (u16, Value) {
        let response = self.client.post(self.url(path)).send().await.expect("send");
        into_parts(response).await
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let response = self.client.get(self.url(path)).send().await.expect("send");
        into_parts(response).await
    }

    /// Creates a job and returns its JSON.
    pub async fn create(&self, body: Value) -> Value {
        let (status, job) = self.post_json("/jobs", &body).await;
        assert_eq!(status, 201, "create failed: {job}");
        job
    }

    /// Runs one attempt of job `id` as worker `w1` would and fails it
    /// retryably with `error`, due again at once (the last allowed attempt
    /// fails the job), as a worker would leave it.
    pub async fn fail_attempt(&self, id: conveyor::JobId, error: &str) {
        let store = conveyor::Store::new(self.db.conn.clone());
        let worker = conveyor::WorkerId::new("worker-a");
        let running = store
            .claim(
                id,
                &worker,
                conveyor::ClaimToken::new(),
                std::time::Duration::from_secs(30),
            )
            .await
            .expect("claim")
            .won()
            .expect("claimed");
        store
            .schedule_retry(
                &conveyor::Fence::of(&running, &worker),
                error,
                std::time::Duration::ZERO,
            )
            .await
            .expect("fail the attempt");
    }

    pub fn redis_conn(&self) -> testkit::RedisConnection {
        self.redis.connection().expect("redis connection")
    }

    /// Ids in one ready lane of a queue, oldest first.
    pub fn ready_ids(&self, queue: &str, priority: i16) -> Vec<String> {
        let key = conveyor::Keys::new(&self.redis.prefix).ready(queue, priority);
        let mut ids: Vec<String> = self.redis_conn().lrange(key, 0, -1).expect("lrange");
        ids.reverse();
        ids
    }

    pub fn delayed_ids(&self, queue: &str) -> Vec<String> {
        let key = conveyor::Keys::new(&self.redis.prefix).delayed(queue);
        let members: Vec<String> = self.redis_conn().zrange(key, 0, -1).expect("zrange");
        members
            .iter()
            .map(|member| conveyor::broker::delayed_member_id(member).to_owned())
            .collect()
    }

    /// Rows in `jobs`.
    pub async fn row_count(&self) -> i64 {
        use sea_orm::ConnectionTrait;
        self.db
            .conn
            .query_one_raw(sea_orm::Statement::from_string(
                sea_orm::DbBackend::Postgres,
                "SELECT count(*) AS n FROM jobs",
            ))
            .await
            .expect("count")
            .expect("row")
            .try_get::<i64>("", "n")
            .expect("n")
    }
}

pub async fn into_parts(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, body)
}

/// Asserts a problem document with `status` and `code`.
pub fn assert_problem(status: u16, body: &Value, want_status: u16, want_code: &str) {
    assert_eq!(status, want_status, "{body}");
    assert_eq!(body["status"], want_status, "{body}");
    assert_eq!(body["code"], want_code, "{body}");
    assert_eq!(
        body["type"],
        format!("urn:conveyor:problem:{want_code}"),
        "{body}"
    );
    assert!(
        body["title"].is_string() && body["detail"].is_string(),
        "{body}"
    );
}

/// A broker on this test's Redis (a server or a cluster, as the
/// environment says) and key prefix.
pub fn broker_for(redis: &TestRedis, pool_size: usize) -> Broker {
    let address =
        conveyor::broker::RedisAddress::new(&redis.url, redis.cluster).expect("REDIS_URL");
    Broker::connect(&address, &redis.prefix, pool_size).expect("broker")
}
