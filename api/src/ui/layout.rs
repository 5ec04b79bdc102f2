//! The page shell every dashboard page shares (navigation, the live
//! status line, notices) and the small formatting rules they all use:
//! relative times with the exact time on hover, durations, status badges.

use chrono::{DateTime, SecondsFormat, Utc};
use maud::{DOCTYPE, Markup, html};

use super::assets;
use super::session::Csrf;

/// The dashboard's pages, in the navigation's order: path and label.
pub const PAGES: [(&str, &str); 6] = [
    ("/ui", "Overview"),
    ("/ui/queues", "Queues"),
    ("/ui/jobs", "Jobs"),
    ("/ui/failed", "Failed"),
    ("/ui/schedules", "Schedules"),
    ("/ui/workers", "Workers"),
];

/// What every page is rendered with.
#[derive(Debug, Clone)]
pub struct Shell {
    /// The navigation entry to mark as current.
    pub current: &'static str,
    pub title: String,
    /// The database's clock when the page was read: relative times count
    /// from it, and the script keeps counting from it.
    pub now: DateTime<Utc>,
    pub csrf: Csrf,
    pub read_only: bool,
    /// Whether a token protects the dashboard (so the viewer logged in,
    /// and a log-out button is shown).
    pub login_required: bool,
    /// A notice about what the last action did, if any.
    pub notice: Option<String>,
    /// Render only what the live refresh swaps in (see `PageContext`).
    pub live_only: bool,
}

impl Shell {
    /// A whole HTML page around `body`; for a live refresh, `body` alone
    /// (pages leave out their heavy parts outside live regions then).
    pub fn page(&self, body: Markup) -> Markup {
        if self.live_only {
            return html! {
                (DOCTYPE)
                html lang="en" { body data-now=(iso(self.now)) { (body) } }
            };
        }
        html! {
            (DOCTYPE)
            html lang="en" {
                (head(&self.title, true))
                body data-now=(iso(self.now)) {
                    a.skip href="#main" { "Skip to content" }
                    header.top {
                        a.brand href="/ui" { "Conveyor" }
                        nav aria-label="Pages" {
                            ul {
                                @for (path, label) in PAGES {
                                    li {
                                        @if path == self.current {
                                            a href=(path) aria-current="page" { (label) }
                                        } @else {
                                            a href=(path) { (label) }
                                        }
                                    }
                                }
                                // With a token, /docs wants the bearer
                                // token, which a browser does not send.
                                @if !self.login_required {
                                    li { a href="/docs" { "API" } }
                                }
                            }
                        }
                        div.status {
                            span #live-status role="status" aria-live="polite" { "Live" }
                            @if self.read_only { span.badge.readonly { "read-only" } }
                            @if self.login_required {
                                form method="post" action="/ui/logout" {
                                    (self.csrf.field())
                                    button.link type="submit" { "Log out" }
                                }
                            }
                        }
                    }
                    main #main {
                        h1 { (self.title) }
                        @if let Some(notice) = &self.notice {
                            p.notice role="status" { (notice) }
                        }
                        (body)
                    }
                }
            }
        }
    }
}

/// Every page's `<head>`: its title, the stylesheet, the icon, and the
/// script for the pages that refresh themselves.
pub fn head(title: &str, live: bool) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            meta name="referrer" content="same-origin";
            title { (title) " · Conveyor" }
            link rel="stylesheet" href=(assets::STYLE_PATH);
            link rel="icon" href=(assets::ICON_PATH) type="image/svg+xml";
            @if live { script src=(assets::SCRIPT_PATH) defer {} }
        }
    }
}

/// RFC 3339 with milliseconds, as `<time datetime>` and the script want it.
pub fn iso(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// `at` relative to `now` ("3 s ago", "in 2 min"), with the exact time on
/// hover; the script keeps the text current.
pub fn when(at: DateTime<Utc>, now: DateTime<Utc>) -> Markup {
    html! {
        time datetime=(iso(at)) title=(at.format("%Y-%m-%d %H:%M:%S%.3f UTC")) data-rel {
            (relative(at, now))
        }
    }
}

/// [`when`], or a dash for no time.
pub fn when_opt(at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Markup {
    match at {
        Some(at) => when(at, now),
        None => html! { span.muted { "—" } },
    }
}

/// The words the script also writes: seconds under a minute, minutes
/// under an hour, hours under two days, days after.
pub fn relative(at: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let secs = (now - at).num_seconds();
    let span = age(secs.unsigned_abs());
    if secs >= 0 {
        format!("{span} ago")
    } else {
        format!("in {span}")
    }
}

/// A span of whole seconds, coarsely ("42 s", "5 min", "3 h", "4 d").
pub fn age(secs: u64) -> String {
    match secs {
        0..60 => format!("{secs} s"),
        60..3_600 => format!("{} min", secs / 60),
        3_600..172_800 => format!("{} h", secs / 3_600),
        _ => format!("{} d", secs / 86_400),
    }
}

/// A duration for people: "350 ms", "1.2 s", "4 min 10 s", "2 h 5 min".
pub fn duration(ms: i64) -> String {
    let ms = ms.max(0);
    match ms {
        0..1_000 => format!("{ms} ms"),
        1_000..60_000 => format!("{:.1} s", ms as f64 / 1000.0),
        60_000..3_600_000 => format!("{} min {} s", ms / 60_000, ms % 60_000 / 1000),
        _ => format!("{} h {} min", ms / 3_600_000, ms % 3_600_000 / 60_000),
    }
}

/// A job status as a coloured badge (the word is always written: colour
/// is never the only signal).
pub fn status_badge(status: &str) -> Markup {
    html! { span class={ "badge status-" (status) } { (status) } }
}

/// A number with thin groups: 12 345.
pub fn count(n: impl Into<i128>) -> String {
    let n: i128 = n.into();
    let digits = n.unsigned_abs().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push('\u{202f}');
        }
        out.push(digit);
    }
    if n < 0 { format!("-{out}") } else { out }
}

/// JSON, indented, in a scrollable block, with its direction controls
/// written as escapes (see [`plain`]).
pub fn json_block(value: &serde_json::Value) -> Markup {
    let text = serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string());
    html! { pre.json tabindex="0" { (plain(&text)) } }
}

/// Text as sent, with the characters that change how the text around
/// them is displayed (bidirectional overrides, embeddings, isolates and
/// marks) written as `\u202e` escapes: a job's key or error must not be
/// able to show itself reversed, or as something else.
pub fn plain(text: &str) -> std::borrow::Cow<'_, str> {
    let steers = |c: char| matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
    if !text.chars().any(steers) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if steers(c) {
            out.push_str(&format!("\\u{:04x}", c as u32));
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// A form that posts to `action` with one button, the token, and any
/// hidden `fields`; `confirm` asks first (in the script).
pub fn action_button(
    csrf: &Csrf,
    action: &str,
    label: &str,
    id: &str,
    fields: &[(&str, &str)],
    confirm: Option<&str>,
) -> Markup {
    html! {
        form.inline method="post" action=(action) data-confirm=[confirm] {
            (csrf.field())
            @for (name, value) in fields {
                input type="hidden" name=(name) value=(value);
            }
            button #(id) type="submit" { (label) }
        }
    }
}

/// A table in its scrolling box, or the line `empty` when it has no rows.
pub fn table_or(empty: &str, rows: usize, head: Markup, body: Markup) -> Markup {
    html! {
        @if rows == 0 {
            p.muted { (empty) }
        } @else {
            div.table-wrap { table { thead { tr { (head) } } tbody { (body) } } }
        }
    }
}

/// Marks `markup` as a region the script refreshes in place.
pub fn live(id: &str, markup: Markup) -> Markup {
    html! { div id=(id) data-live { (markup) } }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_times_read_as_people_say_them() {
        let now = DateTime::from_timestamp(1_000_000, 0).unwrap_or_default();
        let at = |secs: i64| now - chrono::Duration::seconds(secs);
        assert_eq!(relative(at(3), now), "3 s ago");
        assert_eq!(relative(at(59), now), "59 s ago");
        assert_eq!(relative(at(60), now), "1 min ago");
        assert_eq!(relative(at(7_200), now), "2 h ago");
        assert_eq!(relative(at(3 * 86_400), now), "3 d ago");
        assert_eq!(relative(at(-120), now), "in 2 min");
    }

    #[test]
    fn direction_controls_are_shown_as_escapes() {
        assert_eq!(
            plain("attack \u{202e}yek\u{202c}"),
            "attack \\u202eyek\\u202c"
        );
        assert_eq!(plain("plain"), "plain");
        assert_eq!(plain("عربي"), "عربي", "right-to-left text itself stays");
    }

    #[test]
    fn durations_and_counts_are_short() {
        assert_eq!(duration(350), "350 ms");
        assert_eq!(duration(1_250), "1.2 s");
        assert_eq!(duration(250_000), "4 min 10 s");
        assert_eq!(duration(7_500_000), "2 h 5 min");
        assert_eq!(count(12_345), "12\u{202f}345");
        assert_eq!(count(999), "999");
        assert_eq!(count(-1_000), "-1\u{202f}000");
    }
}
