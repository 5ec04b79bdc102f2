//! Percentiles and the median-of-runs summary.

use std::time::Duration;

use serde::Serialize;

/// The value at percentile `p` (0..=100) of `samples`, nearest rank.
pub fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    if samples.is_empty() {
        return Duration::ZERO;
    }
    samples.sort_unstable();
    let rank = ((p / 100.0) * samples.len() as f64).ceil() as usize;
    samples[rank.clamp(1, samples.len()) - 1]
}

pub fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// One figure over several runs.
#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    pub name: String,
    pub unit: String,
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub runs: Vec<f64>,
    /// The target from issue 8, and whether the median meets it.
    pub target: Option<Target>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Target {
    pub value: f64,
    /// `at_least` or `at_most`.
    pub kind: &'static str,
    pub met: bool,
}

impl Figure {
    pub fn new(
        name: &str,
        unit: &str,
        runs: Vec<f64>,
        target: Option<(&'static str, f64)>,
    ) -> Figure {
        let mut sorted = runs.clone();
        sorted.sort_by(|a, b| a.total_cmp(b));
        let median = if sorted.is_empty() {
            0.0
        } else {
            sorted[sorted.len() / 2]
        };
        let target = target.map(|(kind, value)| Target {
            value,
            kind,
            met: if kind == "at_least" {
                median >= value
            } else {
                median <= value
            },
        });
        Figure {
            name: name.to_owned(),
            unit: unit.to_owned(),
            median,
            min: sorted.first().copied().unwrap_or_default(),
            max: sorted.last().copied().unwrap_or_default(),
            runs,
            target,
        }
    }

    pub fn line(&self) -> String {
        let target = match &self.target {
            Some(target) => format!(
                "  target {} {:.0}: {}",
                if target.kind == "at_least" {
                    ">="
                } else {
                    "<="
                },
                target.value,
                if target.met { "met" } else { "MISSED" }
            ),
            None => String::new(),
        };
        format!(
            "  {:<34} {:>10.1} {:<7} (min {:.1}, max {:.1}){target}",
            self.name, self.median, self.unit, self.min, self.max
        )
    }
}
