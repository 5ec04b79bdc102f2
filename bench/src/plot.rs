//! PNG plots of the `growth` scenario, drawn from a results file's
//! `series` (so a run can be drawn again, or elsewhere, from its JSON).
//! Text needs a TrueType font, read from the system at run time (none is
//! bundled): DejaVu Sans where Debian and most distributions put it, or the
//! file named by `CONVEYOR_BENCH_FONT`.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{Context, bail};
use plotters::prelude::*;
use serde_json::Value;

const SIZE: (u32, u32) = (900, 520);

/// Where a sans-serif TrueType font is looked for.
const FONTS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
];

/// One chart: the series (by name in the results file) drawn on it.
struct Chart {
    file: &'static str,
    title: &'static str,
    x: &'static str,
    y: &'static str,
    series: &'static [(&'static str, &'static str)],
    /// Decimals of the values written beside the points.
    decimals: usize,
    /// x is a percentile, drawn as its nines (1 = p90, 2 = p99; 100 as 4).
    nines: bool,
    legend: SeriesLabelPosition,
}

const CHARTS: &[Chart] = &[
    Chart {
        file: "growth-workers.png",
        title: "Throughput by worker processes",
        x: "worker processes",
        y: "jobs/s",
        series: &[
            ("drain_by_workers", "drain of a queued batch"),
            ("end_to_end_by_workers", "end to end over HTTP"),
        ],
        decimals: 0,
        nines: false,
        legend: SeriesLabelPosition::LowerRight,
    },
    Chart {
        file: "growth-finished-rows.png",
        title: "Throughput by finished jobs already in the table",
        x: "finished rows (millions)",
        y: "jobs/s",
        series: &[
            ("drain_by_finished_rows", "drain of a queued batch"),
            ("end_to_end_by_finished_rows", "end to end over HTTP"),
        ],
        decimals: 0,
        nines: false,
        legend: SeriesLabelPosition::LowerRight,
    },
    Chart {
        file: "growth-backlog.png",
        title: "Drain throughput by backlog depth",
        x: "jobs waiting at the start (millions)",
        y: "jobs/s",
        series: &[("drain_by_backlog", "drain")],
        decimals: 0,
        nines: false,
        legend: SeriesLabelPosition::LowerRight,
    },
    Chart {
        file: "growth-latency-half-load.png",
        title: "Submit-to-start latency at half the end-to-end rate",
        x: "percentile as nines (0.3 = p50, 1 = p90, 2 = p99, 3 = p99.9, 4 = max)",
        y: "ms",
        series: &[("submit_to_start_ms_at_half_load", "submit to start")],
        decimals: 1,
        nines: true,
        legend: SeriesLabelPosition::UpperLeft,
    },
];

/// Draws every chart whose series `report` has into `dir`; returns the
/// files written.
pub fn draw(report: &Value, dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut charts = Vec::new();
    for chart in CHARTS {
        let mut lines = Vec::new();
        for (key, label) in chart.series {
            let mut points = points(report, key)?;
            for point in &mut points {
                if chart.nines {
                    point.0 = nines(point.0);
                } else if chart.x.contains("millions") {
                    // Row counts read better in millions.
                    point.0 /= 1e6;
                }
            }
            if !points.is_empty() {
                lines.push((*label, points));
            }
        }
        if !lines.is_empty() {
            charts.push((chart, lines));
        }
    }
    if charts.is_empty() {
        bail!("the results hold no series to draw (run the `growth` scenario)");
    }
    register_font()?;
    std::fs::create_dir_all(dir)?;
    let cores = report["machine"]["cores"].as_u64().unwrap_or(0);
    let mut written = Vec::new();
    for (chart, lines) in charts {
        let path = dir.join(chart.file);
        let title = if cores > 0 {
            format!("{} ({cores} cores)", chart.title)
        } else {
            chart.title.to_owned()
        };
        line_chart(&path, chart, &title, &lines)
            .with_context(|| format!("drawing {}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

fn points(report: &Value, key: &str) -> anyhow::Result<Vec<(f64, f64)>> {
    let Some(series) = report["series"].get(key) else {
        return Ok(Vec::new());
    };
    let pairs: Vec<(f64, f64)> = serde_json::from_value(series.clone())
        .with_context(|| format!("series {key} is not a list of [x, y] pairs"))?;
    Ok(pairs
        .into_iter()
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .collect())
}

/// A percentile's nines: 50 → 0.3, 90 → 1, 99 → 2, 99.9 → 3; the maximum
/// (100) at 4.
fn nines(percentile: f64) -> f64 {
    if percentile >= 100.0 {
        4.0
    } else {
        -(1.0 - percentile / 100.0).log10()
    }
}

fn line_chart(
    path: &Path,
    chart: &Chart,
    title: &str,
    lines: &[(&str, Vec<(f64, f64)>)],
) -> anyhow::Result<()> {
    let all = || lines.iter().flat_map(|(_, points)| points.iter());
    let x_max = all().map(|p| p.0).fold(0.0, f64::max);
    let x_min = all().map(|p| p.0).fold(x_max, f64::min);
    let y_max = all().map(|p| p.1).fold(0.0, f64::max);
    let x_pad = ((x_max - x_min) * 0.05).max(0.05);
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    let mut cartesian = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(18)
        .x_label_area_size(48)
        .y_label_area_size(72)
        .build_cartesian_2d(
            (x_min - x_pad)..(x_max + x_pad),
            0.0..(y_max * 1.15).max(1.0),
        )
        .map_err(plot_error)?;
    cartesian
        .configure_mesh()
        .x_desc(chart.x)
        .y_desc(chart.y)
        .axis_desc_style(("sans-serif", 16))
        .draw()
        .map_err(plot_error)?;
    for (i, (label, points)) in lines.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        cartesian
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
            .map_err(plot_error)?
            .label(*label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        cartesian
            .draw_series(
                points
                    .iter()
                    .map(|point| Circle::new(*point, 4, color.filled())),
            )
            .map_err(plot_error)?;
        cartesian
            .draw_series(points.iter().map(|&(x, y)| {
                Text::new(
                    format!("{y:.*}", chart.decimals),
                    (x, y),
                    ("sans-serif", 14).into_font(),
                )
            }))
            .map_err(plot_error)?;
    }
    cartesian
        .configure_series_labels()
        .position(chart.legend.clone())
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 15))
        .draw()
        .map_err(plot_error)?;
    root.present().map_err(plot_error)?;
    Ok(())
}

fn plot_error(err: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("{err}")
}

/// Registers the first font found as "sans-serif", once per process.
fn register_font() -> anyhow::Result<()> {
    static REGISTERED: OnceLock<Result<(), String>> = OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            let named = std::env::var("CONVEYOR_BENCH_FONT").ok();
            let candidates = named.iter().map(String::as_str).chain(FONTS.iter().copied());
            for candidate in candidates {
                let Ok(bytes) = std::fs::read(candidate) else {
                    continue;
                };
                // plotters keeps fonts for the process's life.
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                    return Ok(());
                }
            }
            Err(format!(
                "no TrueType font found (looked for {}); install fonts-dejavu-core or set CONVEYOR_BENCH_FONT to a .ttf file",
                FONTS.join(", ")
            ))
        })
        .clone()
        .map_err(anyhow::Error::msg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn report() -> Value {
        json!({"series": {
            "drain_by_workers": [[1, 2000.0], [2, 3500.0], [4, 3300.0]],
            "end_to_end_by_workers": [[1, 700.0], [2, 900.0], [4, 880.0]],
            "drain_by_finished_rows": [[0, 3500.0], [5_000_000, 3100.0]],
            "drain_by_backlog": [[100_000, 3500.0], [1_000_000, 3000.0]],
            "submit_to_start_ms_at_half_load": [[50, 2.5], [99, 12.0], [100, 80.0]],
        }})
    }

    #[test]
    fn series_are_read_as_pairs_and_anything_else_is_refused() {
        assert_eq!(
            points(&report(), "drain_by_backlog").expect("pairs"),
            [(100_000.0, 3500.0), (1_000_000.0, 3000.0)]
        );
        assert!(points(&report(), "absent").expect("none").is_empty());
        let bad = json!({"series": {"drain_by_workers": [[1, "fast"]]}});
        let err = points(&bad, "drain_by_workers").expect_err("not numbers");
        assert!(err.to_string().contains("drain_by_workers"), "{err}");
    }

    #[test]
    fn each_chart_with_series_is_drawn_as_a_png() {
        let dir = std::env::temp_dir().join(format!("conveyor-plots-{}", std::process::id()));
        match draw(&report(), &dir) {
            Ok(paths) => {
                // Every chart has at least one series in the report.
                assert_eq!(paths.len(), CHARTS.len());
                for path in paths {
                    let bytes = std::fs::read(&path).expect("written");
                    assert!(bytes.starts_with(b"\x89PNG"), "{}", path.display());
                }
            }
            // A machine without any of the fonts: the error says what to do.
            Err(err) => assert!(err.to_string().contains("CONVEYOR_BENCH_FONT"), "{err:#}"),
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn percentiles_are_drawn_as_their_nines() {
        let close = |a: f64, b: f64| (a - b).abs() < 1e-9;
        assert!(close(nines(90.0), 1.0));
        assert!(close(nines(99.0), 2.0));
        assert!(close(nines(99.9), 3.0));
        assert!((nines(50.0) - 0.301).abs() < 1e-3);
        assert!(close(nines(100.0), 4.0), "the maximum");
    }

    #[test]
    fn results_without_series_say_which_scenario_makes_them() {
        let dir = std::env::temp_dir().join(format!("conveyor-no-plots-{}", std::process::id()));
        let err = draw(&json!({"figures": []}), &dir).expect_err("nothing to draw");
        assert!(err.to_string().contains("`growth`"), "{err:#}");
        assert!(!dir.exists(), "nothing is written");
    }
}
