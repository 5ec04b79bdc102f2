//! Periodic jobs: cron expressions, time zones, and which ticks are due.
//!
//! Pure time arithmetic, no I/O: the store keeps schedules, the leader's
//! scheduler fires them (`maintenance::scheduler`).
//!
//! # The tick rule
//! A tick is a **wall-clock time** in the schedule's zone that the cron
//! expression matches, and it fires once, ever: ticks are told apart by
//! their wall time, and each job a tick makes carries an idempotency key
//! built from the schedule's name and the instant the tick fires, so a
//! second firing (another leader, a retried pass) is a replay, not a new
//! job.
//!
//! Daylight-saving changes:
//! - **A wall time that happens twice** (clocks go back: 02:30 exists in
//!   summer time and again in winter time) fires once, at its first
//!   occurrence. A schedule that fires every minute therefore pauses during
//!   the repeated hour: its wall times have all fired already.
//! - **A wall time that never happens** (clocks go forward: 02:30 is
//!   skipped) fires once, at the same wall time moved forward by the gap
//!   (03:30 new time), unless the schedule has a real tick by then (an
//!   hourly or every-minute schedule), in which case the skipped wall time
//!   has no tick of its own: those schedules lose the hour that did not
//!   happen, nothing fires twice, and ticks fire in order.
//!
//! Cron expressions have five fields (minute, hour, day of month, month,
//! day of week, with the usual ranges, steps, lists and names; Sunday is 0
//! or 7) or six with seconds first; parsed by the `croner` crate.

use std::str::FromStr;

use chrono::{DateTime, Duration, NaiveDateTime, Offset, TimeZone, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

use crate::job::InvalidJob;
use crate::store::Position;

/// What a schedule does with ticks that fell due while nothing fired them
/// (no worker was running, PostgreSQL was down, the leader was changing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Missed {
    /// Fire none of them; go on from the next tick.
    #[default]
    Skip,
    /// Fire the latest of them, once.
    Once,
    /// Fire each, oldest first, up to the schedule's `max_catch_up`.
    All,
}

impl Missed {
    pub fn as_str(self) -> &'static str {
        match self {
            Missed::Skip => "skip",
            Missed::Once => "once",
            Missed::All => "all",
        }
    }
}

impl FromStr for Missed {
    type Err = InvalidJob;

    fn from_str(text: &str) -> Result<Self, InvalidJob> {
        match text {
            "skip" => Ok(Missed::Skip),
            "once" => Ok(Missed::Once),
            "all" => Ok(Missed::All),
            _ => Err(InvalidJob::new(
                "missed",
                format!("must be skip, once or all (got {text:?})"),
            )),
        }
    }
}

/// A tick older than this when the scheduler first sees it counts as
/// missed. Longer than a leader change takes (the leader's lease lasts at
/// most four heartbeats or one job lease, 15 s by default), so a change of
/// leader loses no tick; a minute of nothing running does.
pub const MISSED_AFTER: std::time::Duration = std::time::Duration::from_secs(60);

/// Most ticks looked at in one pass of one schedule (a schedule that fires
/// every second and was stopped for a day is not walked tick by tick).
pub const MAX_TICKS_SCANNED: usize = 10_000;

/// Most wall times looked at inside one daylight-saving gap.
const MAX_GAP_WALLS: usize = 3 * 3_600;

/// A parsed cron expression and zone.
#[derive(Debug, Clone)]
pub struct Timing {
    cron: Cron,
    zone: Tz,
}

/// One tick: the wall time that names it and the instant it fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tick {
    /// The wall-clock time in the schedule's zone.
    pub wall: NaiveDateTime,
    /// When it fires.
    pub at: DateTime<Utc>,
}

/// Parses a cron expression: five fields, or six with seconds first.
pub fn parse_cron(text: &str) -> Result<Cron, InvalidJob> {
    let fields = text.split_whitespace().count();
    if !(5..=6).contains(&fields) {
        return Err(InvalidJob::new(
            "cron",
            format!(
                "must have five fields (minute hour day-of-month month day-of-week) or six \
                 with seconds first (got {fields} in {text:?})"
            ),
        ));
    }
    // croner skips empty list items (`1,,2`, a lone `,`) and reads a lone
    // `+` as nothing: an expression that can never match.
    if text
        .split_whitespace()
        .any(|field| field.split(',').any(|item| item.is_empty() || item == "+"))
    {
        return Err(InvalidJob::new(
            "cron",
            format!("{text:?} has an empty list item"),
        ));
    }
    CronParser::builder()
        .seconds(Seconds::Optional)
        .year(Year::Disallowed)
        .build()
        .parse(text)
        .map_err(|err| InvalidJob::new("cron", format!("{text:?} is not a cron expression: {err}")))
}

/// Parses an IANA time zone name (`Europe/Berlin`, `UTC`).
pub fn parse_zone(text: &str) -> Result<Tz, InvalidJob> {
    text.parse::<Tz>().map_err(|_| {
        InvalidJob::new(
            "timezone",
            format!("{text:?} is not an IANA time zone name (such as UTC or Europe/Berlin)"),
        )
    })
}

impl Timing {
    pub fn new(cron: &str, zone: &str) -> Result<Self, InvalidJob> {
        Ok(Timing {
            cron: parse_cron(cron)?,
            zone: parse_zone(zone)?,
        })
    }

    /// The wall-clock time of `at` in the zone, to the whole second (ticks
    /// fall on whole seconds).
    pub fn wall_of(&self, at: DateTime<Utc>) -> NaiveDateTime {
        chrono::SubsecRound::trunc_subsecs(at.with_timezone(&self.zone).naive_local(), 0)
    }

    /// The first tick whose wall time is after `wall`, by the tick rule.
    pub fn next_after(&self, wall: NaiveDateTime) -> Option<Tick> {
        let candidate = self.next_wall(wall)?;
        if let Some(at) = self.existing(candidate) {
            return Some(Tick {
                wall: candidate,
                at,
            });
        }
        // Skipped by the clocks: it fires moved forward by the gap, unless
        // the schedule has a real tick by then (which then comes first,
        // and keeps ticks in order).
        let moved = self.existing(candidate + self.gap_at(candidate))?;
        let following = self.first_existing_after(candidate)?;
        if following.at <= moved {
            return Some(following);
        }
        Some(Tick {
            wall: candidate,
            at: moved,
        })
    }

    /// The instant of `wall` if the zone's clocks show it (the first time,
    /// if twice).
    fn existing(&self, wall: NaiveDateTime) -> Option<DateTime<Utc>> {
        self.zone
            .from_local_datetime(&wall)
            .earliest()
            .map(|at| at.with_timezone(&Utc))
    }

    /// The first wall time after `wall` that the expression matches and
    /// the clocks show.
    fn first_existing_after(&self, wall: NaiveDateTime) -> Option<Tick> {
        let mut from = wall;
        // A gap holds at most an hour or two of wall times: 7,200 of a
        // schedule that fires every second.
        for _ in 0..MAX_GAP_WALLS {
            let candidate = self.next_wall(from)?;
            if let Some(at) = self.existing(candidate) {
                return Some(Tick {
                    wall: candidate,
                    at,
                });
            }
            from = candidate;
        }
        None
    }

    /// The first tick that fires after `now`, for a schedule starting then
    /// (ticks whose wall time comes later but whose instant is already past,
    /// in a repeated hour, are not its).
    pub fn first_after(&self, now: DateTime<Utc>) -> Position {
        let mut last = self.wall_of(now);
        for _ in 0..MAX_GAP_WALLS {
            match self.next_after(last) {
                Some(tick) if tick.at <= now => last = tick.wall,
                next => {
                    return Position {
                        last_tick: last,
                        next,
                    };
                }
            }
        }
        Position {
            last_tick: last,
            next: None,
        }
    }

    /// Whether the expression can match in the next ten years from `now`:
    /// one that never does (the 31st of February, an empty list) is
    /// refused rather than stored to never fire.
    pub fn fires_after(&self, now: DateTime<Utc>) -> bool {
        self.first_after(now)
            .next
            .is_some_and(|tick| tick.at - now < Duration::days(3_660))
    }

    /// Ticks after `last` (a wall time) due by `now`, oldest first, at most
    /// [`MAX_TICKS_SCANNED`]; and the first tick not yet due.
    pub fn due(&self, last: NaiveDateTime, now: DateTime<Utc>) -> (Vec<Tick>, Option<Tick>) {
        let mut due = Vec::new();
        let mut wall = last;
        while due.len() < MAX_TICKS_SCANNED {
            match self.next_after(wall) {
                Some(tick) if tick.at <= now => {
                    wall = tick.wall;
                    due.push(tick);
                }
                next => return (due, next),
            }
        }
        let next = self.next_after(wall);
        (due, next)
    }

    /// The next wall time the expression matches, strictly after `wall`,
    /// on a clock without daylight saving (the wall clock itself).
    fn next_wall(&self, wall: NaiveDateTime) -> Option<NaiveDateTime> {
        self.cron
            .find_next_occurrence(&Utc.from_utc_datetime(&wall), false)
            .ok()
            .map(|at| at.naive_utc())
    }

    /// How far the clocks jumped forward around `wall` (which they skipped).
    fn gap_at(&self, wall: NaiveDateTime) -> Duration {
        let offset = |at: NaiveDateTime| {
            self.zone
                .from_local_datetime(&at)
                .earliest()
                .map(|at| at.offset().fix().local_minus_utc())
        };
        match (
            offset(wall - Duration::hours(12)),
            offset(wall + Duration::hours(12)),
        ) {
            (Some(before), Some(after)) if after > before => {
                Duration::seconds(i64::from(after - before))
            }
            _ => Duration::hours(1),
        }
    }
}

/// Which of the `due` ticks to fire at `now` under `policy`: ticks due
/// less than [`MISSED_AFTER`] ago always fire; older ones are missed and
/// follow the policy.
pub fn to_fire(due: &[Tick], now: DateTime<Utc>, policy: Missed, max_catch_up: usize) -> Vec<Tick> {
    let late = Duration::from_std(MISSED_AFTER).unwrap_or_else(|_| Duration::seconds(2));
    let (missed, current): (Vec<Tick>, Vec<Tick>) =
        due.iter().partition(|tick| tick.at < now - late);
    let mut fire: Vec<Tick> = match policy {
        Missed::Skip => Vec::new(),
        Missed::Once => missed.last().copied().into_iter().collect(),
        Missed::All => {
            let keep = missed.len().saturating_sub(max_catch_up.max(1));
            missed[keep..].to_vec()
        }
    };
    fire.extend(current);
    fire
}

/// The idempotency key of the job `schedule` makes for the tick firing at
/// `at`: the same for every firing of that tick, whoever fires it, and,
/// being an instant, the same across a change of the schedule's zone (a
/// wall time would name two instants then).
pub fn tick_key(schedule: &str, at: DateTime<Utc>) -> String {
    format!("schedule:{schedule}:{}", at.format("%Y-%m-%dT%H:%M:%SZ"))
}

/// The prefix of tick keys: clients' own idempotency keys may not use it.
pub const TICK_KEY_PREFIX: &str = "schedule:";

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn wall(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> NaiveDateTime {
        NaiveDate::from_ymd_opt(y, mo, d)
            .and_then(|date| date.and_hms_opt(h, mi, s))
            .expect("valid")
    }

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.from_utc_datetime(&wall(y, mo, d, h, mi, s))
    }

    /// Every tick of `timing` from `from` to `to` (instants), with a clock
    /// that is stepped, not read.
    fn ticks(timing: &Timing, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<Tick> {
        let (due, _) = timing.due(timing.wall_of(from), to);
        due
    }

    #[test]
    fn bad_expressions_and_zones_name_their_field() {
        for bad in [
            "",
            "* * * *",
            "61 * * * *",
            "* * * * * * *",
            "a b c d e",
            "*/0 * * * *",
        ] {
            assert_eq!(
                parse_cron(bad).map(|_| ()).map_err(|e| e.field),
                Err("cron"),
                "{bad:?}"
            );
        }
        for bad in ["Mars/Olympus", "", "utc+1"] {
            assert_eq!(
                parse_zone(bad).map(|_| ()).map_err(|e| e.field),
                Err("timezone"),
                "{bad:?}"
            );
        }
        assert!(parse_cron("30 2 * * *").is_ok());
        assert!(parse_cron("*/5 * * * * *").is_ok());
        assert!(parse_cron("0 9 * * MON-FRI").is_ok());
        assert!(parse_zone("Europe/Berlin").is_ok());
    }

    #[test]
    fn a_daily_job_runs_once_on_the_day_the_clocks_skip_its_time() {
        // Europe/Berlin, 2026-03-29: 02:00 CET becomes 03:00 CEST.
        let timing = Timing::new("30 2 * * *", "Europe/Berlin").expect("timing");
        let fired = ticks(
            &timing,
            utc(2026, 3, 27, 12, 0, 0),
            utc(2026, 3, 30, 12, 0, 0),
        );
        let walls: Vec<_> = fired.iter().map(|t| t.wall).collect();
        assert_eq!(
            walls,
            vec![
                wall(2026, 3, 28, 2, 30, 0),
                wall(2026, 3, 29, 2, 30, 0),
                wall(2026, 3, 30, 2, 30, 0),
            ]
        );
        // The skipped 02:30 fires at 03:30 CEST, 01:30 UTC.
        assert_eq!(fired[1].at, utc(2026, 3, 29, 1, 30, 0));
        assert_eq!(fired[0].at, utc(2026, 3, 28, 1, 30, 0));
        assert_eq!(fired[2].at, utc(2026, 3, 30, 0, 30, 0));
    }

    #[test]
    fn a_daily_job_runs_once_on_the_day_the_clocks_repeat_its_time() {
        // Europe/Berlin, 2026-10-25: 03:00 CEST becomes 02:00 CET.
        let timing = Timing::new("30 2 * * *", "Europe/Berlin").expect("timing");
        let fired = ticks(
            &timing,
            utc(2026, 10, 23, 12, 0, 0),
            utc(2026, 10, 26, 12, 0, 0),
        );
        let walls: Vec<_> = fired.iter().map(|t| t.wall).collect();
        assert_eq!(
            walls,
            vec![
                wall(2026, 10, 24, 2, 30, 0),
                wall(2026, 10, 25, 2, 30, 0),
                wall(2026, 10, 26, 2, 30, 0),
            ]
        );
        // The first 02:30, in summer time: 00:30 UTC (not 01:30).
        assert_eq!(fired[1].at, utc(2026, 10, 25, 0, 30, 0));
    }

    #[test]
    fn hourly_and_minutely_schedules_lose_the_skipped_hour_and_never_fire_twice() {
        let timing = Timing::new("0 * * * *", "Europe/Berlin").expect("timing");
        let fired = ticks(
            &timing,
            utc(2026, 3, 28, 23, 30, 0),
            utc(2026, 3, 29, 3, 30, 0),
        );
        let hours: Vec<u32> = fired
            .iter()
            .map(|t| chrono::Timelike::hour(&t.wall))
            .collect();
        // Local 01:00, 03:00, 04:00, 05:00: 02:00 did not happen.
        assert_eq!(hours, vec![1, 3, 4, 5]);
        let every_minute = Timing::new("* * * * *", "Europe/Berlin").expect("timing");
        let fired = ticks(
            &every_minute,
            utc(2026, 3, 29, 0, 30, 0),
            utc(2026, 3, 29, 1, 30, 0),
        );
        let mut instants: Vec<_> = fired.iter().map(|t| t.at).collect();
        let count = instants.len();
        instants.dedup();
        assert_eq!(instants.len(), count, "no two ticks at one instant");
        assert_eq!(count, 60, "one a minute for the real hour");
    }

    #[test]
    fn ticks_are_named_by_wall_time_and_fire_in_order() {
        let timing = Timing::new("*/15 * * * * *", "UTC").expect("timing");
        let fired = ticks(&timing, utc(2026, 1, 1, 0, 0, 0), utc(2026, 1, 1, 0, 1, 0));
        assert_eq!(fired.len(), 4);
        assert!(fired.windows(2).all(|pair| pair[0].at < pair[1].at));
        assert_eq!(
            tick_key("nightly", fired[0].at),
            "schedule:nightly:2026-01-01T00:00:15Z"
        );
    }

    #[test]
    fn missed_ticks_follow_the_policy_and_current_ones_always_fire() {
        let timing = Timing::new("* * * * * *", "UTC").expect("timing");
        let now = utc(2026, 1, 1, 0, 2, 0);
        let (due, next) = timing.due(wall(2026, 1, 1, 0, 0, 0), now);
        assert_eq!(due.len(), 120);
        assert_eq!(next.map(|t| t.at), Some(utc(2026, 1, 1, 0, 2, 1)));
        // Due within MISSED_AFTER (60 s): 00:01:00 .. 00:02:00, 61 ticks.
        let skip = to_fire(&due, now, Missed::Skip, 10);
        assert_eq!(skip.len(), 61);
        assert_eq!(skip[0].at, utc(2026, 1, 1, 0, 1, 0));
        let once = to_fire(&due, now, Missed::Once, 10);
        assert_eq!(once.len(), 62);
        assert_eq!(once[0].at, utc(2026, 1, 1, 0, 0, 59));
        let all = to_fire(&due, now, Missed::All, 10);
        assert_eq!(all.len(), 71, "the last 10 missed, then the 61 current");
        assert_eq!(all[0].at, utc(2026, 1, 1, 0, 0, 50));
    }

    #[test]
    fn in_a_half_hour_gap_ticks_stay_in_order_and_a_real_tick_comes_first() {
        // Australia/Lord_Howe, 2026-10-04: 02:00 becomes 02:30.
        let timing = Timing::new("10,35 2 * * *", "Australia/Lord_Howe").expect("timing");
        let fired = ticks(
            &timing,
            utc(2026, 10, 2, 12, 0, 0),
            utc(2026, 10, 4, 12, 0, 0),
        );
        assert!(
            fired.windows(2).all(|pair| pair[0].at < pair[1].at),
            "{fired:?}"
        );
        let on_the_day: Vec<String> = fired
            .iter()
            .filter(|t| t.wall.date() == NaiveDate::from_ymd_opt(2026, 10, 4).expect("date"))
            .map(|t| t.wall.format("%H:%M").to_string())
            .collect();
        // 02:10 never happens and 02:35, a real tick, comes before 02:40.
        assert_eq!(on_the_day, vec!["02:35".to_owned()]);
    }

    #[test]
    fn a_schedule_started_in_a_repeated_hour_fires_nothing_from_before_it() {
        // Berlin, 2026-10-25, 00:45 UTC: 02:45 CEST; the clocks will show
        // 02:00 to 02:59 again from 01:00 UTC.
        let timing = Timing::new("* * * * *", "Europe/Berlin").expect("timing");
        let now = utc(2026, 10, 25, 1, 30, 0); // 02:30 CET, the second time
        let start = timing.first_after(now);
        let next = start.next.expect("a next tick");
        assert!(next.at > now, "{next:?} is before {now}");
    }

    #[test]
    fn an_expression_that_never_matches_is_refused_or_found_out() {
        for bad in [", * * * *", "0 , * * *", "0 0 * * +", "1,,2 * * * *"] {
            assert!(parse_cron(bad).is_err(), "{bad:?}");
        }
        let never = Timing::new("0 0 31 2 *", "UTC").expect("parses");
        assert!(!never.fires_after(utc(2026, 1, 1, 0, 0, 0)));
        let yearly = Timing::new("0 0 29 2 *", "UTC").expect("parses");
        assert!(
            yearly.fires_after(utc(2026, 1, 1, 0, 0, 0)),
            "the next 29 February"
        );
    }
}
