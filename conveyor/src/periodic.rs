//! Periodic jobs: cron expressions, time zones, and which ticks are due.
//!
//! Pure time arithmetic, no I/O: the store keeps schedules, the leader's
//! scheduler fires them (`maintenance::scheduler`).
//!
//! # The tick rule
//! A tick is a **wall-clock time** in the schedule's zone that the cron
//! expression matches, and it fires once, ever: ticks are told apart by
//! their wall time, and each job a tick makes carries an idempotency key
//! built from the schedule's name and that wall time, so a second firing
//! (another leader, a retried pass) is a replay, not a new job.
//!
//! Daylight-saving changes:
//! - **A wall time that happens twice** (clocks go back: 02:30 exists in
//!   summer time and again in winter time) fires once, at its first
//!   occurrence. A schedule that fires every minute therefore pauses during
//!   the repeated hour: its wall times have all fired already.
//! - **A wall time that never happens** (clocks go forward: 02:30 is
//!   skipped) fires once, at the same wall time moved forward by the gap
//!   (03:30 new time), unless the schedule fires at that moved time anyway
//!   (an hourly or every-minute schedule), in which case the skipped wall
//!   time has no tick of its own: those schedules lose the hour that did not
//!   happen, and nothing fires twice.
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
/// missed: the scheduler runs every quarter second, so a tick it sees this
/// late was not fired while it was due.
pub const MISSED_AFTER: std::time::Duration = std::time::Duration::from_secs(2);

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

    /// The wall-clock time of `at` in the zone.
    pub fn wall_of(&self, at: DateTime<Utc>) -> NaiveDateTime {
        at.with_timezone(&self.zone).naive_local()
    }

    /// The first tick whose wall time is after `wall`, by the tick rule.
    pub fn next_after(&self, wall: NaiveDateTime) -> Option<Tick> {
        let mut from = wall;
        // A gap holds at most an hour or two of wall times: 7,200 of a
        // schedule that fires every second.
        for _ in 0..MAX_GAP_WALLS {
            let candidate = self.next_wall(from)?;
            match self.zone.from_local_datetime(&candidate) {
                chrono::LocalResult::Single(at) | chrono::LocalResult::Ambiguous(at, _) => {
                    return Some(Tick {
                        wall: candidate,
                        at: at.with_timezone(&Utc),
                    });
                }
                chrono::LocalResult::None => {
                    let moved = candidate + self.gap_at(candidate);
                    if self.matches(moved) {
                        // The schedule fires at the moved time anyway.
                        from = candidate;
                        continue;
                    }
                    let at = self.zone.from_local_datetime(&moved).earliest()?;
                    return Some(Tick {
                        wall: candidate,
                        at: at.with_timezone(&Utc),
                    });
                }
            }
        }
        None
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

    fn matches(&self, wall: NaiveDateTime) -> bool {
        self.cron
            .is_time_matching(&Utc.from_utc_datetime(&wall))
            .unwrap_or(false)
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

/// The idempotency key of the job `schedule` makes for the tick at `wall`:
/// the same for every firing of that tick, whoever fires it.
pub fn tick_key(schedule: &str, wall: NaiveDateTime) -> String {
    format!("schedule:{schedule}:{}", wall.format("%Y-%m-%dT%H:%M:%S"))
}

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
            tick_key("nightly", fired[0].wall),
            "schedule:nightly:2026-01-01T00:00:15"
        );
    }

    #[test]
    fn missed_ticks_follow_the_policy_and_current_ones_always_fire() {
        let timing = Timing::new("* * * * * *", "UTC").expect("timing");
        let now = utc(2026, 1, 1, 0, 0, 30);
        let (due, next) = timing.due(wall(2026, 1, 1, 0, 0, 0), now);
        assert_eq!(due.len(), 30);
        assert_eq!(next.map(|t| t.at), Some(utc(2026, 1, 1, 0, 0, 31)));
        // Due within MISSED_AFTER (2 s): 00:00:28 .. 00:00:30.
        let skip = to_fire(&due, now, Missed::Skip, 10);
        assert_eq!(
            skip.iter().map(|t| t.at).collect::<Vec<_>>(),
            vec![
                utc(2026, 1, 1, 0, 0, 28),
                utc(2026, 1, 1, 0, 0, 29),
                utc(2026, 1, 1, 0, 0, 30)
            ]
        );
        let once = to_fire(&due, now, Missed::Once, 10);
        assert_eq!(once.len(), 4);
        assert_eq!(once[0].at, utc(2026, 1, 1, 0, 0, 27));
        let all = to_fire(&due, now, Missed::All, 10);
        assert_eq!(all.len(), 13, "the last 10 missed, then the 3 current");
        assert_eq!(all[0].at, utc(2026, 1, 1, 0, 0, 18));
    }
}
