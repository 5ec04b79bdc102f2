//! `conveyor-migrate` against a real PostgreSQL.

use std::process::Output;

use migration::{Command, migrate_locked};
use testkit::TestDb;

async fn run_binary(url: &str, args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_conveyor-migrate"))
        .args(args)
        .env("DATABASE_URL", url)
        .output()
        .await
        .expect("run conveyor-migrate")
}

async fn count(db: &TestDb, sql: &str) -> i64 {
    db.count(sql).await
}

#[tokio::test]
async fn concurrent_migrations_of_an_empty_database_all_succeed_once() {
    let db = TestDb::empty().await;
    // Two processes and two in-process runs, started together.
    let (a, b, c, d) = tokio::join!(
        run_binary(&db.url, &["up"]),
        run_binary(&db.url, &["up"]),
        migrate_locked(&db.url, Command::Up),
        migrate_locked(&db.url, Command::Up),
    );
    for output in [&a, &b] {
        assert!(
            output.status.success(),
            "conveyor-migrate up failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    for states in [c.expect("in-process up"), d.expect("in-process up")] {
        assert!(states.iter().all(|state| state.applied));
    }
    assert_eq!(
        count(&db, "SELECT count(*) AS n FROM seaql_migrations").await,
        migration::migration_names().len() as i64
    );
    assert_eq!(
        count(
            &db,
            "SELECT count(*) AS n FROM pg_indexes WHERE tablename = 'jobs'"
        )
        .await,
        9,
        "primary key, idempotency key, six query indexes and the schedule index"
    );
    assert_eq!(
        count(
            &db,
            "SELECT count(*) AS n FROM pg_constraint \
             WHERE conrelid = 'jobs'::regclass AND contype = 'c'"
        )
        .await,
        10
    );
}

#[tokio::test]
async fn status_down_and_fresh_report_what_they_did() {
    let db = TestDb::empty().await;
    let status = run_binary(&db.url, &["status"]).await;
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(status.status.success());
    assert!(
        text.contains("pending  m20260101_000001_create_jobs"),
        "{text}"
    );

    assert!(run_binary(&db.url, &["up"]).await.status.success());
    let all = migration::migration_names().len();
    let down = run_binary(&db.url, &["down", "-n", &all.to_string()]).await;
    assert!(String::from_utf8_lossy(&down.stdout).contains(&format!("0 applied, {all} pending")));
    assert_eq!(
        count(
            &db,
            "SELECT count(*) AS n FROM pg_tables WHERE tablename = 'jobs'"
        )
        .await,
        0
    );

    let fresh = run_binary(&db.url, &["fresh"]).await;
    assert!(String::from_utf8_lossy(&fresh.stdout).contains(&format!("{all} applied, 0 pending")));
}

#[tokio::test]
async fn an_unreachable_database_fails_with_a_clear_message() {
    let output = run_binary("postgres://postgres@127.0.0.1:9/nowhere", &["up"]).await;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("migration failed"), "{stderr}");
}
