//! The machine's own limits, measured in the same run: PostgreSQL
//! single-row-update transactions/s at 32 clients (pgbench), and Redis LPUSH
//! operations/s (redis-benchmark).

use std::process::Command;

use crate::Args;

/// pgbench TPS of one single-row UPDATE per transaction, 32 clients, 10 s.
pub fn pgbench_tps(args: &Args) -> Result<f64, String> {
    let url = &args.pgbench_url;
    if url.is_empty() {
        return Err("no --pgbench-url given".to_owned());
    }
    run("pgbench", &["-i", "-q", "-s", "10", url])?;
    let script = std::env::temp_dir().join(format!("conveyor-pgbench-{}.sql", std::process::id()));
    std::fs::write(
        &script,
        "\\set aid random(1, 100000 * :scale)\nUPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid = :aid;\n",
    )
    .map_err(|err| err.to_string())?;
    let script_arg = script.to_string_lossy().into_owned();
    let output = run(
        "pgbench",
        &[
            "-n",
            "-c",
            "32",
            "-j",
            "2",
            "-T",
            "10",
            "-f",
            &script_arg,
            url,
        ],
    );
    let _ = std::fs::remove_file(&script);
    let output = output?;
    output
        .lines()
        .find(|line| line.starts_with("tps = "))
        .and_then(|line| line.split_whitespace().nth(2))
        .and_then(|tps| tps.parse().ok())
        .ok_or_else(|| format!("no tps in pgbench output: {output}"))
}

/// redis-benchmark LPUSH requests/s at 32 clients (on a cluster, its
/// `--cluster` mode, which spreads the keys over every master).
pub fn redis_lpush_ops(args: &Args) -> Result<f64, String> {
    let first = args.redis_url.split(',').next().unwrap_or_default();
    let url = first.trim().trim_start_matches("redis://");
    let (host, port) = url.split_once(':').unwrap_or((url, "6379"));
    let port = port.trim_end_matches('/');
    let mut options = vec![
        "-h", host, "-p", port, "-t", "lpush", "-n", "200000", "-c", "32", "-q",
    ];
    if args.redis_cluster {
        options.push("--cluster");
    }
    let output = run("redis-benchmark", &options)?;
    output
        .split(['\r', '\n'])
        .filter(|line| line.starts_with("LPUSH:"))
        .filter_map(|line| line.split_whitespace().nth(1))
        .filter_map(|value| value.parse().ok())
        .next_back()
        .ok_or_else(|| format!("no LPUSH rate in redis-benchmark output: {output}"))
}

fn run(program: &str, args: &[&str]) -> Result<String, String> {
    let output = Command::new(program)
        .args(args)
        .output()
        .map_err(|err| format!("{program} not available: {err}"))?;
    if !output.status.success() {
        return Err(format!(
            "{program} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}
