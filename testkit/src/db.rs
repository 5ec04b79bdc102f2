use std::hash::{Hash, Hasher};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbErr, FromQueryResult,
    Statement,
};
use url::Url;

use crate::{DEFAULT_DATABASE_URL, random_suffix};

/// Test databases older than this (by the time in their name) belong to a
/// run that died before dropping them, and are swept.
pub const STALE_AFTER_SECS: u64 = 2 * 60 * 60;

const TEST_DB_PREFIX: &str = "conveyor_test_";
const TEMPLATE_PREFIX: &str = "conveyor_tpl_";
/// Serialises template builds and sweeps across test processes.
const TEMPLATE_LOCK_KEY: i64 = 0x636f_6e76_7465_7374;

/// A database of its own for one test, dropped with it.
#[derive(Debug)]
pub struct TestDb {
    /// URL of this test's database.
    pub url: String,
    /// Its name.
    pub name: String,
    /// A pool connected to it.
    pub conn: DatabaseConnection,
    admin_url: String,
}

impl TestDb {
    /// A fresh database with the current schema.
    pub async fn new() -> TestDb {
        let admin = Admin::connect().await;
        let template = admin.ensure_template().await;
        TestDb::create(admin, Some(&template)).await
    }

    /// A fresh database with no schema at all (for migration tests).
    pub async fn empty() -> TestDb {
        let admin = Admin::connect().await;
        TestDb::create(admin, None).await
    }

    async fn create(admin: Admin, template: Option<&str>) -> TestDb {
        let name = format!("{TEST_DB_PREFIX}{}_{}", unix_secs(), random_suffix());
        let sql = match template {
            Some(template) => format!(r#"CREATE DATABASE "{name}" TEMPLATE "{template}""#),
            None => format!(r#"CREATE DATABASE "{name}""#),
        };
        admin.execute(&sql).await.expect("create test database");
        admin.close().await;

        let url = admin.url_for(&name);
        let conn = connect(&url, 10).await.expect("connect to test database");
        TestDb {
            url,
            name,
            conn,
            admin_url: admin.url.to_string(),
        }
    }

    /// Runs a statement against this database, for setting up states that
    /// the public API cannot reach directly.
    pub async fn execute(&self, sql: &str) {
        self.conn
            .execute_unprepared(sql)
            .await
            .unwrap_or_else(|err| panic!("{sql}: {err}"));
    }
}

impl TestDb {
    /// The `n` column of the one row `sql` returns: `SELECT count(*) AS n ...`.
    pub async fn count(&self, sql: &str) -> i64 {
        use sea_orm::ConnectionTrait;
        self.conn
            .query_one_raw(sea_orm::Statement::from_string(
                sea_orm::DbBackend::Postgres,
                sql,
            ))
            .await
            .unwrap_or_else(|err| panic!("{sql}: {err}"))
            .unwrap_or_else(|| panic!("{sql}: no row"))
            .try_get::<i64>("", "n")
            .unwrap_or_else(|err| panic!("{sql}: {err}"))
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // Drop may run inside a runtime (or while unwinding from a panic), so
        // the async cleanup gets a thread and a runtime of its own.
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("cleanup runtime");
            runtime.block_on(async move {
                let admin = connect(&admin_url, 1).await?;
                admin
                    .execute_unprepared(&format!(
                        r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#
                    ))
                    .await?;
                admin.close().await
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!(
                "testkit: could not drop {}; a later run sweeps it",
                self.name
            );
        }
    }
}

/// A connection to the server's maintenance database.
struct Admin {
    url: Url,
    conn: DatabaseConnection,
}

impl Admin {
    async fn connect() -> Admin {
        let configured =
            std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_DATABASE_URL.to_owned());
        let mut url = Url::parse(&configured).expect("DATABASE_URL is a URL");
        url.set_path("/postgres");
        let conn = connect(url.as_str(), 1)
            .await
            .unwrap_or_else(|err| panic!("PostgreSQL at DATABASE_URL is not reachable: {err}"));
        Admin { url, conn }
    }

    fn url_for(&self, database: &str) -> String {
        let mut url = self.url.clone();
        url.set_path(&format!("/{database}"));
        url.to_string()
    }

    async fn execute(&self, sql: &str) -> Result<(), DbErr> {
        self.conn.execute_unprepared(sql).await.map(|_| ())
    }

    async fn close(&self) {
        let _ = self.conn.clone().close().await;
    }

    /// The name of a complete, migrated template, building it if needed, and
    /// sweeping what crashed runs left behind. Test processes take turns here
    /// under an advisory lock.
    async fn ensure_template(&self) -> String {
        let template = format!("{TEMPLATE_PREFIX}{:016x}", schema_hash());
        self.execute(&format!("SELECT pg_advisory_lock({TEMPLATE_LOCK_KEY})"))
            .await
            .expect("take template lock");
        let built = self.build_template_if_missing(&template).await;
        let swept = self.sweep(&template).await;
        self.execute(&format!("SELECT pg_advisory_unlock({TEMPLATE_LOCK_KEY})"))
            .await
            .expect("release template lock");
        built.expect("build template database");
        swept.expect("sweep stale test databases");
        template
    }

    async fn build_template_if_missing(&self, template: &str) -> Result<(), DbErr> {
        // A template is complete once it refuses connections: that is the
        // last step of building it. One that accepts them was left half-built.
        let complete = self
            .databases()
            .await?
            .into_iter()
            .find(|db| db.datname == template)
            .map(|db| !db.datallowconn);
        match complete {
            Some(true) => return Ok(()),
            Some(false) => self.drop_database(template).await?,
            None => {}
        }
        self.execute(&format!(r#"CREATE DATABASE "{template}""#))
            .await?;
        migration::migrate_locked(&self.url_for(template), migration::Command::Up).await?;
        self.execute(&format!(
            r#"ALTER DATABASE "{template}" WITH IS_TEMPLATE true ALLOW_CONNECTIONS false"#
        ))
        .await
    }

    async fn sweep(&self, current_template: &str) -> Result<(), DbErr> {
        let stale_before = unix_secs().saturating_sub(STALE_AFTER_SECS);
        for db in self.databases().await? {
            let stale_test = db
                .datname
                .strip_prefix(TEST_DB_PREFIX)
                .and_then(|rest| rest.split('_').next())
                .and_then(|secs| secs.parse::<u64>().ok())
                .is_some_and(|created| created < stale_before);
            let old_template =
                db.datname.starts_with(TEMPLATE_PREFIX) && db.datname != current_template;
            if stale_test || old_template {
                self.drop_database(&db.datname).await?;
            }
        }
        Ok(())
    }

    async fn drop_database(&self, name: &str) -> Result<(), DbErr> {
        self.execute(&format!(
            r#"ALTER DATABASE "{name}" WITH IS_TEMPLATE false"#
        ))
        .await?;
        self.execute(&format!(r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#))
            .await
    }

    async fn databases(&self) -> Result<Vec<DatabaseRow>, DbErr> {
        DatabaseRow::find_by_statement(Statement::from_string(
            self.conn.get_database_backend(),
            format!(
                "SELECT datname, datallowconn FROM pg_database \
                 WHERE datname LIKE '{TEST_DB_PREFIX}%' OR datname LIKE '{TEMPLATE_PREFIX}%'"
            ),
        ))
        .all(&self.conn)
        .await
    }
}

#[derive(Debug, FromQueryResult)]
struct DatabaseRow {
    datname: String,
    datallowconn: bool,
}

async fn connect(url: &str, max_connections: u32) -> Result<DatabaseConnection, DbErr> {
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .max_connections(max_connections)
        .min_connections(0)
        .connect_timeout(Duration::from_secs(10))
        .acquire_timeout(Duration::from_secs(30))
        .sqlx_logging(false);
    Database::connect(options).await
}

/// Identifies the schema a template was built with.
fn schema_hash() -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    migration::migration_names().hash(&mut hasher);
    hasher.finish()
}

fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or_default()
}
