//! Flag values: limits that can be `none`, retention durations, instants.

use conveyor::store::Change;

/// A whole-number limit, or `none` to remove it.
pub fn limit(text: &str) -> Result<Change<i32>, String> {
    if text == "none" {
        return Ok(Change::Clear);
    }
    text.parse::<i32>()
        .map(Change::Set)
        .map_err(|_| format!("expected a whole number or `none`, got {text:?}"))
}

/// A rate in jobs per second, or `none`.
pub fn rate(text: &str) -> Result<Change<f64>, String> {
    if text == "none" {
        return Ok(Change::Clear);
    }
    match text.parse::<f64>() {
        Ok(rate) if rate.is_finite() => Ok(Change::Set(rate)),
        _ => Err(format!(
            "expected jobs per second (such as 2.5) or `none`, got {text:?}"
        )),
    }
}

/// A retention: `7d`, `12h`, `30m`, `45s` or plain seconds; `forever` (0);
/// `default` for the global setting.
pub fn retention(text: &str) -> Result<Change<i64>, String> {
    match text {
        "default" => return Ok(Change::Clear),
        "forever" => return Ok(Change::Set(0)),
        _ => {}
    }
    let refused = || {
        format!(
            "expected a duration such as 7d, 12h, 30m, 45s or 3600 (seconds), `forever` or `default`, got {text:?}"
        )
    };
    let (digits, unit) = match text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((at, _)) => text.split_at(at),
        None => (text, "s"),
    };
    let count: i64 = digits.parse().map_err(|_| refused())?;
    let unit: i64 = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => return Err(refused()),
    };
    count.checked_mul(unit).map(Change::Set).ok_or_else(refused)
}

/// An RFC 3339 instant.
pub fn instant(text: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|at| at.with_timezone(&chrono::Utc))
        .ok()
        .filter(|at| conveyor::job::is_writable_instant(*at))
        .ok_or_else(|| {
            format!(
                "expected an RFC 3339 instant in years 1 to 9999, such as 2026-11-29T12:00:00Z, got {text:?}"
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_takes_units_forever_and_default() {
        assert_eq!(retention("7d"), Ok(Change::Set(604_800)));
        assert_eq!(retention("90"), Ok(Change::Set(90)));
        assert_eq!(retention("2h"), Ok(Change::Set(7_200)));
        assert_eq!(retention("forever"), Ok(Change::Set(0)));
        assert_eq!(retention("default"), Ok(Change::Clear));
        assert!(retention("7w").is_err());
        assert!(retention("-1d").is_err());
        assert!(retention("99999999999999999d").is_err());
    }

    #[test]
    fn instants_postgres_cannot_store_as_sent_are_refused() {
        assert!(instant("2026-11-29T12:00:00Z").is_ok());
        assert!(instant("2016-12-31T23:59:60Z").is_err());
        assert!(instant("0000-06-01T00:00:00Z").is_err());
        assert!(instant("yesterday").is_err());
    }

    #[test]
    fn limits_and_rates_take_none() {
        assert_eq!(limit("none"), Ok(Change::Clear));
        assert_eq!(limit("4"), Ok(Change::Set(4)));
        assert!(limit("four").is_err());
        assert_eq!(rate("2.5"), Ok(Change::Set(2.5)));
        assert!(rate("NaN").is_err());
    }
}
