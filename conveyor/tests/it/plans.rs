//! The statements that find jobs by id reach them by primary key, even when
//! the planner's statistics are out of date.

use std::collections::HashMap;
use std::time::Duration;

use conveyor::{ClaimToken, JobId, Store, WorkerId};
use sea_orm::{ConnectOptions, ConnectionTrait, Database};
use testkit::TestDb;

const LEASE: Duration = Duration::from_secs(30);

/// How many scans each index of `jobs` has started, and (as `updates`)
/// how many rows of it were updated, as the statistics collector last
/// heard.
async fn index_scans(db: &TestDb) -> HashMap<String, i64> {
    let rows = db
        .conn
        .query_all_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT indexrelname AS name, idx_scan AS n FROM pg_stat_user_indexes \
             WHERE relname = 'jobs' \
             UNION ALL SELECT 'updates', n_tup_upd FROM pg_stat_user_tables WHERE relname = 'jobs'",
        ))
        .await
        .expect("statistics");
    rows.iter()
        .map(|row| {
            (
                row.try_get::<String>("", "name").expect("name"),
                row.try_get::<i64>("", "n").expect("count"),
            )
        })
        .collect()
}

/// A store on one connection of its own, so that the test can ask that
/// connection to report its statistics.
async fn one_connection(db: &TestDb) -> (sea_orm::DatabaseConnection, Store) {
    let mut options = ConnectOptions::new(db.url.clone());
    options
        .max_connections(1)
        .min_connections(1)
        .sqlx_logging(false);
    let conn = Database::connect(options).await.expect("connect");
    let store = Store::new(conn.clone());
    (conn, store)
}

/// Inserts `n` waiting jobs under ids chosen here, so that the test knows
/// them without reading the table: a read's index scans would be flushed
/// to the statistics whenever its backend gets to it, perhaps after the
/// test took its "before".
async fn waiting_jobs(db: &TestDb, n: usize) -> Vec<JobId> {
    let ids: Vec<JobId> = (0..n).map(|_| JobId::new()).collect();
    let values: Vec<String> = ids
        .iter()
        .map(|id| format!("('{id}'::uuid, 'noop', '{{}}'::jsonb)"))
        .collect();
    db.execute(&format!(
        "INSERT INTO jobs (id, type, payload) VALUES {}",
        values.join(", ")
    ))
    .await;
    ids
}

/// The usual way statistics go stale: the table was analysed while every
/// job in it had finished, and a backlog arrived since (autovacuum analyses
/// it up to a minute later; here, never). Walking the waiting jobs' partial
/// index then looks nearly free to the planner, and a guard written
/// `status IN ('queued', 'retrying')` lets it: each claim would read the
/// whole backlog.
#[tokio::test]
async fn transitions_by_id_use_the_primary_key_while_statistics_are_stale() {
    let db = TestDb::new().await;
    db.execute("ALTER TABLE jobs SET (autovacuum_enabled = false)")
        .await;
    db.execute(
        "INSERT INTO jobs (id, type, payload, status, attempts, started_at, completed_at) \
         SELECT gen_random_uuid(), 'noop', '{}'::jsonb, 'completed', 1, now(), now() \
         FROM generate_series(1, 20000)",
    )
    .await;
    db.execute("ANALYZE jobs").await;
    db.execute(
        "INSERT INTO jobs (id, type, payload) \
         SELECT gen_random_uuid(), 'noop', '{}'::jsonb FROM generate_series(1, 19930)",
    )
    .await;
    let ids = waiting_jobs(&db, 70).await;
    let (conn, store) = one_connection(&db).await;
    let before = index_scans(&db).await;

    let worker = WorkerId::new("plans");
    let batch: Vec<(JobId, ClaimToken)> = ids[..64]
        .iter()
        .map(|id| (*id, ClaimToken::new()))
        .collect();
    let won = store
        .claim_many(&batch, &worker, LEASE)
        .await
        .expect("claim many");
    assert_eq!(won.len(), 64);
    let claimed = store
        .claim(ids[64], &worker, ClaimToken::new(), LEASE)
        .await
        .expect("claim");
    assert!(
        matches!(claimed, conveyor::Transition::Won(_)),
        "{claimed:?}"
    );
    let canceled = store.cancel(ids[65]).await.expect("cancel");
    assert!(
        matches!(canceled, conveyor::Transition::Won(_)),
        "{canceled:?}"
    );
    let retried = store.requeue(ids[65]).await.expect("manual retry");
    assert!(
        matches!(retried, conveyor::Transition::Won(_)),
        "{retried:?}"
    );
    let due: Vec<String> = ids[66..].iter().map(ToString::to_string).collect();
    assert_eq!(store.longest_due(&due).await.expect("longest due").len(), 1);

    conn.execute_unprepared("SELECT pg_stat_force_next_flush()")
        .await
        .expect("flush statistics");
    let after = testkit::wait_until(
        "the statistics of the store's connection",
        Duration::from_secs(10),
        || async {
            let now = index_scans(&db).await;
            // 64 + 1 claims, a cancel and a manual retry.
            (now["updates"] >= before["updates"] + 67).then_some(now)
        },
    )
    .await;
    for index in after
        .keys()
        .filter(|index| !["jobs_pkey", "updates"].contains(&index.as_str()))
    {
        assert_eq!(
            after[index], before[index],
            "{index} was scanned: a transition by id walked it instead of the primary key"
        );
    }
}

/// The idempotency key's unique index holds only jobs with a key: keyless
/// jobs (and every update of one) leave it alone, yet a replayed key is
/// still found through it, by the insert's lookup and by `find_by_key`.
#[tokio::test]
async fn the_key_index_skips_keyless_jobs_and_still_answers_lookups_by_key() {
    let db = TestDb::new().await;
    let definition = db
        .conn
        .query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT pg_get_indexdef(indexrelid) AS def FROM pg_index \
             WHERE indrelid = 'jobs'::regclass AND indisunique AND NOT indisprimary",
        ))
        .await
        .expect("index definition")
        .expect("one unique index besides the primary key");
    let definition: String = definition.try_get("", "def").expect("def");
    assert!(
        definition.ends_with("(idempotency_key) WHERE (idempotency_key IS NOT NULL)"),
        "{definition}"
    );

    let (conn, store) = one_connection(&db).await;
    for _ in 0..3 {
        let keyless = conveyor::NewJob::new("noop", serde_json::json!({}));
        assert!(matches!(
            store.insert(&keyless).await.expect("keyless insert"),
            conveyor::Inserted::Created(_)
        ));
    }
    let keyed = || conveyor::NewJob {
        idempotency_key: Some("order-7".into()),
        ..conveyor::NewJob::new("noop", serde_json::json!({"order": 7}))
    };
    let first = match store.insert(&keyed()).await.expect("keyed insert") {
        conveyor::Inserted::Created(job) => job,
        other => panic!("{other:?}"),
    };
    let before = index_scans(&db).await;
    match store.insert(&keyed()).await.expect("replay") {
        conveyor::Inserted::Replayed(job) => assert_eq!(job.id, first.id),
        other => panic!("a replay must find the first job: {other:?}"),
    }
    let found = store.find_by_key("order-7").await.expect("find by key");
    assert_eq!(found.map(|job| job.id), Some(first.id));
    assert_eq!(
        db.count("SELECT count(*) AS n FROM jobs WHERE idempotency_key IS NULL")
            .await,
        3
    );

    conn.execute_unprepared("SELECT pg_stat_force_next_flush()")
        .await
        .expect("flush statistics");
    testkit::wait_until(
        "the key index's scans in the statistics",
        Duration::from_secs(10),
        || async {
            let now = index_scans(&db).await;
            // The insert's lookup of the row its key met, and find_by_key.
            (now["jobs_idempotency_key_partial_key"]
                >= before["jobs_idempotency_key_partial_key"] + 2)
                .then_some(())
        },
    )
    .await;
}
