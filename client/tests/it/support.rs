use std::net::SocketAddr;
use std::time::Duration;

use api::{AppState, Settings};
use conveyor::{Broker, Store};
use conveyor_client::{Client, Retries};
use testkit::{TestDb, TestRedis};
use tokio::sync::oneshot;

/// The API serving one test's database and Redis prefix, reached through a
/// proxy the test can make lose replies or slow them down; PostgreSQL
/// reached through another, which the test can cut.
pub struct Api {
    pub db: TestDb,
    #[allow(dead_code)]
    pub redis: TestRedis,
    /// Between the client and the API.
    pub front: testkit::Proxy,
    /// Between the API and PostgreSQL.
    pub postgres: testkit::Proxy,
    shutdown: Option<oneshot::Sender<()>>,
}

impl Api {
    pub async fn start() -> Api {
        let db = TestDb::new().await;
        let redis = TestRedis::new();
        let postgres = testkit::Proxy::start(testkit::proxy::target_of(&db.url)).await;
        let writes = Store::connect_with(&postgres.url_through(&db.url), &api::state::api_pool(4))
            .await
            .expect("lazy pool");
        let address =
            conveyor::broker::RedisAddress::new(&redis.url, redis.cluster).expect("REDIS_URL");
        let broker = Broker::connect(&address, &redis.prefix, 4).expect("broker");
        let state = AppState::new(writes, broker, Settings::default());
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (shutdown, stopped) = oneshot::channel::<()>();
        tokio::spawn(api::serve(listener, state, async move {
            let _ = stopped.await;
        }));
        let front = testkit::Proxy::start(addr).await;
        Api {
            db,
            redis,
            front,
            postgres,
            shutdown: Some(shutdown),
        }
    }

    /// The API's address through the front proxy.
    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.front.addr.port())
    }

    /// A client with quick retries, so that tests of them are quick.
    pub fn client(&self) -> Client {
        self.client_with(Duration::from_secs(10))
    }

    pub fn client_with(&self, timeout: Duration) -> Client {
        Client::builder(&self.base())
            .timeout(timeout)
            .retries(Retries {
                max_tries: 50,
                base: Duration::from_millis(20),
                max_delay: Duration::from_millis(200),
                give_up_after: Duration::from_secs(20),
            })
            .build()
            .expect("client")
    }

    pub async fn rows(&self) -> i64 {
        self.db.count("SELECT count(*) AS n FROM jobs").await
    }
}

impl Drop for Api {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}
