//! Where a scenario's CPU went, from `/proc`: the machine's busy and idle
//! time, and the time of PostgreSQL's processes, Redis, the API and the
//! workers. Wall-clock figures swing with the machine's window; the CPU
//! each job costs each process moves much less, and shows which of them
//! bounds a figure (issue 19).

use std::collections::HashMap;

/// Linux reports process and machine CPU time in USER_HZ ticks, 100 a
/// second on every architecture it exposes them on.
const TICKS_PER_SEC: f64 = 100.0;

/// The processes counted by name.
const SERVERS: [(&str, &str); 3] = [
    ("postgres", "postgres"),
    ("redis-server", "redis"),
    ("conveyor-api", "api"),
];

/// CPU time used so far, in ticks.
#[derive(Debug, Clone, Default)]
pub struct CpuTimes {
    busy: u64,
    idle: u64,
    by_process: HashMap<&'static str, u64>,
}

impl CpuTimes {
    /// Now, with `workers` (their pids) counted as `workers`.
    pub fn now(workers: &[u32]) -> CpuTimes {
        let mut times = CpuTimes::default();
        if let Ok(stat) = std::fs::read_to_string("/proc/stat")
            && let Some(line) = stat.lines().find(|line| line.starts_with("cpu "))
        {
            let fields: Vec<u64> = line
                .split_whitespace()
                .skip(1)
                .filter_map(|field| field.parse().ok())
                .collect();
            // user nice system idle iowait irq softirq steal (guest time
            // is already in user).
            let at = |i: usize| fields.get(i).copied().unwrap_or(0);
            times.idle = at(3) + at(4);
            times.busy = at(0) + at(1) + at(2) + at(5) + at(6) + at(7);
        }
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return times;
        };
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let Some((name, ticks)) = process_ticks(pid) else {
                continue;
            };
            let label = if workers.contains(&pid) {
                Some("workers")
            } else {
                SERVERS
                    .iter()
                    .find(|(comm, _)| *comm == name)
                    .map(|(_, label)| *label)
            };
            if let Some(label) = label {
                *times.by_process.entry(label).or_default() += ticks;
            }
        }
        times
    }

    /// Microseconds of CPU a job, from `self` to `later`, over `jobs`
    /// jobs: the machine's busy time, each process's, and the share of the
    /// machine left idle. A process that exited in between (an autovacuum
    /// worker, say) is missing from its line but not from the machine's.
    pub fn per_job(&self, later: &CpuTimes, jobs: f64) -> Vec<(&'static str, f64)> {
        let us = |ticks: u64| ticks as f64 / TICKS_PER_SEC * 1e6 / jobs.max(1.0);
        let busy = later.busy.saturating_sub(self.busy);
        let idle = later.idle.saturating_sub(self.idle);
        let used = |label: &str| {
            let before = self.by_process.get(label).copied().unwrap_or(0);
            us(later
                .by_process
                .get(label)
                .copied()
                .unwrap_or(0)
                .saturating_sub(before))
        };
        vec![
            ("drain_cpu_us_per_job", us(busy)),
            ("drain_cpu_us_per_job_postgres", used("postgres")),
            ("drain_cpu_us_per_job_workers", used("workers")),
            ("drain_cpu_us_per_job_redis", used("redis")),
            ("drain_cpu_us_per_job_api", used("api")),
            (
                "drain_idle_pct",
                idle as f64 * 100.0 / (busy + idle).max(1) as f64,
            ),
        ]
    }
}

/// A process's name and its user + system ticks so far.
fn process_ticks(pid: u32) -> Option<(String, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The name is in parentheses and may itself hold spaces or ')'.
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let name = stat.get(open + 1..close)?.to_owned();
    let rest: Vec<&str> = stat.get(close + 2..)?.split_whitespace().collect();
    // After the name: state (0) ... utime (11), stime (12).
    let utime: u64 = rest.get(11)?.parse().ok()?;
    let stime: u64 = rest.get(12)?.parse().ok()?;
    Some((name, utime + stime))
}
