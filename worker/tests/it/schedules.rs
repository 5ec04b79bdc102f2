//! Periodic schedules fired by real workers: one job per tick whatever the
//! number of workers, across a leader's death, and schedules declared in
//! code.

use std::collections::HashSet;
use std::time::Duration;

use conveyor::Client;
use conveyor::periodic::Missed;
use conveyor::store::{ListFilter, ScheduleSpec};
use testkit::wait_until;

use crate::support::Harness;

fn every_second(name: &str, missed: Missed) -> ScheduleSpec {
    ScheduleSpec {
        name: name.to_owned(),
        cron: "* * * * * *".to_owned(),
        timezone: "UTC".to_owned(),
        job_type: "noop".to_owned(),
        job_queue: "default".to_owned(),
        job_payload: serde_json::json!({}),
        job_priority: 0,
        job_max_attempts: 4,
        job_timeout_seconds: 30,
        enabled: true,
        missed,
        max_catch_up: 100,
    }
}

/// The ticks of the jobs `schedule` made, sorted, and how many jobs.
async fn ticks_of(h: &Harness, schedule: &str) -> (Vec<chrono::DateTime<chrono::Utc>>, usize) {
    let jobs = h
        .store
        .list(&ListFilter {
            schedule: Some(schedule.to_owned()),
            limit: 10_000,
            ..ListFilter::default()
        })
        .await
        .expect("list");
    let mut ticks: Vec<_> = jobs.iter().filter_map(|job| job.schedule_tick).collect();
    ticks.sort();
    (ticks, jobs.len())
}

fn assert_one_job_per_consecutive_second(ticks: &[chrono::DateTime<chrono::Utc>], jobs: usize) {
    let distinct: HashSet<_> = ticks.iter().collect();
    assert_eq!(distinct.len(), jobs, "two jobs for one tick: {ticks:?}");
    for pair in ticks.windows(2) {
        assert_eq!(
            pair[1] - pair[0],
            chrono::Duration::seconds(1),
            "a tick was lost between {} and {}",
            pair[0],
            pair[1]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_fire_an_every_second_schedule_once_per_tick() {
    let h = Harness::new().await;
    let client = Client::new(h.store.clone(), h.broker.clone());
    let workers: Vec<_> = (0..3)
        .map(|n| h.spawn(h.settings(&format!("w{n}")), worker::builtin_registry()))
        .collect();
    // `all`: a stall of the loaded test machine delays ticks, loses none.
    client
        .create_schedule(&every_second("tick", Missed::All))
        .await
        .expect("create");
    // Twenty seconds of ticks.
    let started = tokio::time::Instant::now();
    wait_until("twenty ticks", Duration::from_secs(40), || async {
        (ticks_of(&h, "tick").await.1 >= 20).then_some(())
    })
    .await;
    client
        .update_schedule("tick", |spec| spec.enabled = false)
        .await
        .expect("pause")
        .expect("exists");
    let elapsed = started.elapsed();
    let (ticks, jobs) = ticks_of(&h, "tick").await;
    // A pass that read the schedule before the pause may still fire one
    // more tick.
    assert!((20..=22).contains(&jobs), "{jobs} jobs for twenty ticks");
    assert_one_job_per_consecutive_second(&ticks, jobs);
    // One job a second of the test's own clock, give or take the edges
    // (the first leader's election, the last pass).
    let seconds = elapsed.as_secs_f64();
    assert!(
        (jobs as f64 - seconds).abs() <= 4.0,
        "{jobs} jobs in {seconds:.1} s"
    );
    for worker in workers {
        worker.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_leader_neither_duplicates_nor_loses_ticks() {
    let h = Harness::new().await;
    let client = Client::new(h.store.clone(), h.broker.clone());
    let mut workers: Vec<_> = (0..3)
        .map(|n| h.spawn(h.settings(&format!("w{n}")), worker::builtin_registry()))
        .collect();
    client
        .create_schedule(&every_second("catch-up", Missed::All))
        .await
        .expect("create");
    wait_until("three ticks fired", Duration::from_secs(10), || async {
        (ticks_of(&h, "catch-up").await.1 >= 3).then_some(())
    })
    .await;
    // Kill whichever worker leads: no cleanup, its lease on leadership
    // lapses, and another takes over after the ticks it missed.
    let leader: String = wait_until("a leader", Duration::from_secs(10), || async {
        redis::Commands::get::<_, Option<String>>(&mut h.redis_conn(), h.keys().leader())
            .ok()
            .flatten()
    })
    .await;
    let index = workers
        .iter()
        .position(|worker| worker.id.as_str() == leader)
        .expect("a worker leads");
    let fired_before = ticks_of(&h, "catch-up").await.1;
    workers.remove(index).kill().await;
    // The successor fires the ticks missed meanwhile (policy `all`), and
    // goes on.
    wait_until(
        "ticks after the new leader",
        Duration::from_secs(15),
        || async { (ticks_of(&h, "catch-up").await.1 >= fired_before + 6).then_some(()) },
    )
    .await;
    client
        .update_schedule("catch-up", |spec| spec.enabled = false)
        .await
        .expect("pause")
        .expect("exists");
    let (ticks, jobs) = ticks_of(&h, "catch-up").await;
    assert_one_job_per_consecutive_second(&ticks, jobs);
    for worker in workers {
        worker.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_skip_policy_ticks_missed_while_nothing_ran_are_not_fired() {
    let h = Harness::new().await;
    let client = Client::new(h.store.clone(), h.broker.clone());
    client
        .create_schedule(&every_second("skipper", Missed::Skip))
        .await
        .expect("create");
    // Nothing ran for five minutes: the ticks older than a minute are
    // missed. Then a worker.
    h.db.execute(
        "UPDATE schedules SET last_tick = last_tick - interval '5 minutes', \
         next_fire_at = next_fire_at - interval '5 minutes', \
         next_tick = next_tick - interval '5 minutes'",
    )
    .await;
    let worker = h.spawn(h.settings("w"), worker::builtin_registry());
    wait_until("a tick fired", Duration::from_secs(10), || async {
        (ticks_of(&h, "skipper").await.1 >= 2).then_some(())
    })
    .await;
    client
        .update_schedule("skipper", |spec| spec.enabled = false)
        .await
        .expect("pause")
        .expect("exists");
    let (ticks, jobs) = ticks_of(&h, "skipper").await;
    let now = h.store.db_now().await.expect("now");
    let oldest = ticks.first().copied().expect("ticks");
    let missed_after =
        chrono::Duration::from_std(conveyor::periodic::MISSED_AFTER).expect("duration");
    assert!(
        now - oldest <= missed_after + chrono::Duration::seconds(5),
        "a tick missed more than a minute before the worker started was fired: {:?} at {now}",
        ticks.first()
    );
    assert!(
        now - oldest >= missed_after - chrono::Duration::seconds(5),
        "the ticks of the last minute were not fired: oldest {:?} at {now}",
        ticks.first()
    );
    assert_one_job_per_consecutive_second(&ticks, jobs);
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_declares_its_schedules_and_a_restart_keeps_their_place() {
    let h = Harness::new().await;
    let mut settings = h.settings("w");
    let mut nightly = every_second("nightly", Missed::Skip);
    nightly.cron = "30 2 * * *".to_owned();
    nightly.timezone = "Europe/Berlin".to_owned();
    settings.schedules = vec![nightly.clone()];
    let worker = h.spawn(settings.clone(), worker::builtin_registry());
    let row = wait_until("the declared schedule", Duration::from_secs(10), || async {
        h.store.schedule("nightly").await.expect("read")
    })
    .await;
    assert_eq!(
        row.next_tick.map(|t| t.format("%H:%M").to_string()),
        Some("02:30".to_owned())
    );
    worker.stop().await;
    // Declared again with another payload: the definition changes, the
    // clock does not.
    settings.schedules[0].job_payload = serde_json::json!({"v": 2});
    let worker = h.spawn(settings, worker::builtin_registry());
    let again = wait_until("the new definition", Duration::from_secs(10), || async {
        let row = h.store.schedule("nightly").await.expect("read")?;
        (row.job_payload == serde_json::json!({"v": 2})).then_some(row)
    })
    .await;
    assert_eq!(
        (again.last_tick, again.next_fire_at),
        (row.last_tick, row.next_fire_at)
    );
    worker.stop().await;
}
