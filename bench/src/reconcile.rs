//! The reconciler's pass over a large backlog: `--reconcile-count` waiting
//! jobs (1,000,000 by default) inserted straight into the table, then one
//! pass with Redis holding none of them (every id published) and one with
//! Redis holding all (nothing published). Runs in this process, through
//! `conveyor::maintenance`, so its peak memory is this process's.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use conveyor::maintenance::reconciler::reconcile_once;
use conveyor::maintenance::{Maintenance, Settings};
use conveyor::outage::Outages;
use conveyor::{Broker, Store, WorkerId};
use sea_orm::{ConnectionTrait, DatabaseConnection};

use crate::Args;
use crate::stack::peak_rss_mb;

/// One run: the two passes' durations and this process's peak memory.
pub async fn reconcile(
    args: &Args,
    db: &DatabaseConnection,
) -> anyhow::Result<Vec<(&'static str, f64)>> {
    // Payloads of 1 KiB: the pass must not read them.
    db.execute_unprepared(&format!(
        "INSERT INTO jobs (id, type, payload, priority) \
         SELECT gen_random_uuid(), 'noop', jsonb_build_object('pad', repeat('x', 1024)), n % 10 \
         FROM generate_series(1, {}) AS n",
        args.reconcile_count
    ))
    .await?;
    db.execute_unprepared("VACUUM ANALYZE jobs").await?;
    let store = Store::connect(&args.database_url, 4).await?;
    let broker = Broker::connect(
        &conveyor::broker::RedisAddress::new(&args.redis_url, args.redis_cluster)?,
        &args.prefix,
        4,
    )?;
    let maintenance = Maintenance::new(
        store,
        broker,
        Settings {
            me: WorkerId::generate("bench"),
            queues: vec!["default".to_owned()],
            lease: Duration::from_secs(30),
            tick: Duration::from_secs(5),
            promote_interval: Duration::from_secs(1),
            reconcile_interval: Duration::from_secs(10),
            epoch_check_interval: Duration::from_secs(1),
            retention: Default::default(),
            retention_interval: Duration::from_secs(3600),
            schedule_interval: Duration::from_secs(1),
        },
        Arc::new(Outages::default()),
    );
    let ctx = maintenance.context().clone();
    // A pass longer than the leader's lease must keep it: campaign as the
    // runner would, every tick, while the passes run.
    let campaign = {
        let ctx = ctx.clone();
        tokio::spawn(async move {
            loop {
                let _ = ctx.take_lead().await;
                tokio::time::sleep(ctx.settings.tick).await;
            }
        })
    };
    if !ctx.take_lead().await.context("campaign")? {
        bail!(
            "another process holds the leader's lease under prefix {}",
            args.prefix
        );
    }
    let started = Instant::now();
    let missing = reconcile_once(&ctx, Duration::ZERO).await?;
    let missing_secs = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let healthy = reconcile_once(&ctx, Duration::ZERO).await?;
    let healthy_secs = started.elapsed().as_secs_f64();
    campaign.abort();
    let expected = args.reconcile_count;
    if missing.republished != expected || healthy.republished != 0 || healthy.checked != expected {
        bail!("unexpected passes: {missing:?}, then {healthy:?} over {expected} jobs");
    }
    let rss = peak_rss_mb(std::process::id()).unwrap_or(f64::NAN);
    Ok(vec![
        ("reconcile_pass_all_missing_secs", missing_secs),
        ("reconcile_pass_all_held_secs", healthy_secs),
        ("reconcile_bench_peak_rss_mb", rss),
    ])
}
