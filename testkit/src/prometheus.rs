//! Reading values out of Prometheus text in tests.

/// The value of the first sample of `name` whose labels include all of
/// `labels`.
pub fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples(text, name, labels).into_iter().next()
}

/// The sum of every sample of `name` whose labels include all of `labels`.
pub fn sum(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    samples(text, name, labels).into_iter().sum()
}

fn samples(text: &str, name: &str, labels: &[(&str, &str)]) -> Vec<f64> {
    text.lines()
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let metric = series.split('{').next()?;
            let matches = metric == name
                && labels
                    .iter()
                    .all(|(key, value)| series.contains(&format!("{key}=\"{value}\"")));
            if matches { value.parse().ok() } else { None }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_found_by_name_and_labels() {
        let text = "# HELP x\nx_total{queue=\"a\",type=\"t\"} 3\nx_total{queue=\"b\",type=\"t\"} 4\nx_total_other 9\n";
        assert_eq!(sample(text, "x_total", &[("queue", "b")]), Some(4.0));
        assert_eq!(sum(text, "x_total", &[("type", "t")]), 7.0);
        assert_eq!(sample(text, "x_total", &[("queue", "c")]), None);
    }
}
