//! `conveyor-migrate` against a real PostgreSQL.

use std::process::Output;

use migration::{Command, migrate_locked};
use sea_orm_migration::sea_orm::ConnectionTrait;
use testkit::TestDb;

async fn run_binary(url: &str, args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_conveyor-migrate"))
        .args(args)
        .env("DATABASE_URL", url)
        .output()
        .await
        .expect("run conveyor-migrate")
}

/// The steps `down` takes to undo `name` and every migration after it.
fn steps_to_undo(name: &str) -> u32 {
    let names = migration::migration_names();
    let at = names
        .iter()
        .position(|each| each == name)
        .unwrap_or_else(|| panic!("no migration {name}"));
    (names.len() - at) as u32
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
        5,
        "primary key, idempotency key, the list by status, waiting and running"
    );
    assert_eq!(
        count(
            &db,
            "SELECT count(*) AS n FROM pg_indexes WHERE tablename = 'job_listing'"
        )
        .await,
        4,
        "newest first: all, by queue, by type, by schedule"
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

/// `job_listing` is filled from the jobs already there when its migration
/// runs, and kept in step by triggers whoever writes `jobs`: inserts
/// (skipped conflicts not included), deletes, an update of a listed column,
/// and `TRUNCATE`.
#[tokio::test]
async fn the_listing_is_filled_from_a_populated_table_and_kept_in_step() {
    let db = TestDb::empty().await;
    migrate_locked(&db.url, Command::Up).await.expect("up");
    migrate_locked(
        &db.url,
        Command::Down {
            steps: steps_to_undo("m20261130_000004_job_listing"),
        },
    )
    .await
    .expect("down to before job_listing");
    assert_eq!(
        count(
            &db,
            "SELECT count(*) AS n FROM pg_tables WHERE tablename = 'job_listing'"
        )
        .await,
        0
    );
    db.execute(
        "INSERT INTO jobs (id, queue, type, payload, schedule_name) \
         SELECT gen_random_uuid(), 'q' || (g % 3), 'noop', '{}', \
         CASE WHEN g % 5 = 0 THEN 'nightly' END FROM generate_series(1, 300) g",
    )
    .await;
    migrate_locked(&db.url, Command::Up)
        .await
        .expect("up again");
    let in_step = "SELECT count(*) AS n FROM jobs j FULL JOIN job_listing l \
                   ON l.id = j.id AND l.created_at = j.created_at AND l.queue = j.queue \
                   AND l.type = j.type AND l.schedule_name IS NOT DISTINCT FROM j.schedule_name \
                   WHERE l.id IS NULL OR j.id IS NULL";
    assert_eq!(
        count(&db, "SELECT count(*) AS n FROM job_listing").await,
        300
    );
    assert_eq!(count(&db, in_step).await, 0, "a job and its listing differ");

    db.execute(
        "INSERT INTO jobs (id, queue, type, payload, idempotency_key) \
         SELECT gen_random_uuid(), 'q9', 'noop', '{}', 'same' FROM generate_series(1, 3) \
         ON CONFLICT DO NOTHING",
    )
    .await;
    db.execute("DELETE FROM jobs WHERE queue = 'q0'").await;
    db.execute("UPDATE jobs SET queue = 'moved', created_at = created_at - interval '1 day' WHERE queue = 'q1'")
        .await;
    db.execute("UPDATE jobs SET status = 'canceled', canceled_at = now() WHERE queue = 'q2'")
        .await;
    assert_eq!(
        count(
            &db,
            "SELECT count(*) AS n FROM job_listing WHERE queue = 'q9'"
        )
        .await,
        1
    );
    assert_eq!(
        count(
            &db,
            "SELECT count(*) AS n FROM job_listing WHERE queue = 'q0'"
        )
        .await,
        0
    );
    assert_eq!(
        count(
            &db,
            "SELECT count(*) AS n FROM job_listing WHERE queue = 'moved'"
        )
        .await,
        100
    );
    assert_eq!(count(&db, in_step).await, 0, "a job and its listing differ");

    // A second listing row for a job is refused (a data-only restore run
    // with the triggers on would otherwise double the lists).
    let copy = db
        .conn
        .execute_unprepared(
            "INSERT INTO job_listing (id, created_at, queue, type) \
             SELECT id, created_at, queue, type FROM jobs LIMIT 1",
        )
        .await;
    assert!(copy.is_err(), "a job listed twice");
    // The triggers find job_listing whatever the session's search_path.
    db.execute(
        "SET search_path = ''; \
         INSERT INTO public.jobs (id, queue, type, payload) \
         VALUES (gen_random_uuid(), 'pathless', 'noop', '{}'); RESET search_path",
    )
    .await;
    assert_eq!(
        count(
            &db,
            "SELECT count(*) AS n FROM job_listing WHERE queue = 'pathless'"
        )
        .await,
        1
    );

    db.execute("TRUNCATE jobs").await;
    assert_eq!(count(&db, "SELECT count(*) AS n FROM job_listing").await, 0);
}

/// An invalid index under the partial key index's name (what a failed
/// `CREATE UNIQUE INDEX CONCURRENTLY` by hand leaves) is built again by the
/// migration, not taken for the real one: uniqueness never lapses.
#[tokio::test]
async fn an_invalid_hand_built_key_index_is_built_again() {
    let db = TestDb::empty().await;
    migrate_locked(&db.url, Command::Up).await.expect("up");
    migrate_locked(
        &db.url,
        Command::Down {
            steps: steps_to_undo("m20261130_000003_partial_idempotency_index"),
        },
    )
    .await
    .expect("down to before the partial key index");
    db.execute(
        "CREATE UNIQUE INDEX jobs_idempotency_key_partial_key ON jobs (idempotency_key) \
         WHERE idempotency_key IS NOT NULL; \
         UPDATE pg_index SET indisvalid = false \
         WHERE indexrelid = 'jobs_idempotency_key_partial_key'::regclass",
    )
    .await;
    migrate_locked(&db.url, Command::Up)
        .await
        .expect("up again");
    assert_eq!(
        count(
            &db,
            "SELECT count(*) AS n FROM pg_index \
             WHERE indexrelid = 'jobs_idempotency_key_partial_key'::regclass \
             AND indisvalid AND indisunique"
        )
        .await,
        1
    );
    db.execute(
        "INSERT INTO jobs (id, payload, idempotency_key) VALUES (gen_random_uuid(), '{}', 'k')",
    )
    .await;
    db.execute(
        "INSERT INTO jobs (id, payload, idempotency_key) VALUES (gen_random_uuid(), '{}', 'k') \
         ON CONFLICT DO NOTHING",
    )
    .await;
    assert_eq!(
        count(
            &db,
            "SELECT count(*) AS n FROM jobs WHERE idempotency_key = 'k'"
        )
        .await,
        1
    );
}
