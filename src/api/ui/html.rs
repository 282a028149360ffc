//! HTML building blocks: escaping (every value a page shows goes through [`esc`]), the page
//! layout, times and durations, query strings, and the overview's chart (SVG drawn here).

use std::fmt::Write;

use chrono::{DateTime, Utc};

use crate::store::MinuteCount;

/// `s` with `& < > " '` escaped: safe as element text and as a quoted attribute value.
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `s` percent-encoded for a query string value.
pub(crate) fn url_enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// `?k=v&...` of the pairs whose value is not empty ("" when none).
pub(crate) fn query(pairs: &[(&str, Option<&str>)]) -> String {
    let parts: Vec<String> = pairs
        .iter()
        .filter_map(|(k, v)| {
            v.filter(|v| !v.is_empty())
                .map(|v| format!("{k}={}", url_enc(v)))
        })
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

/// A time as `YYYY-MM-DD HH:MM:SS` UTC in a `<time>` element (the full instant in its title).
pub(crate) fn time(t: Option<DateTime<Utc>>) -> String {
    match t {
        None => "<span class=\"muted\">-</span>".into(),
        Some(t) => format!(
            "<time datetime=\"{}\" title=\"{}\">{}</time>",
            t.to_rfc3339(),
            t.to_rfc3339(),
            t.format("%Y-%m-%d %H:%M:%S")
        ),
    }
}

/// A time of day with milliseconds, for timelines.
pub(crate) fn clock(t: DateTime<Utc>) -> String {
    format!(
        "<time datetime=\"{}\">{}</time>",
        t.to_rfc3339(),
        t.format("%H:%M:%S%.3f")
    )
}

/// A duration in the largest fitting unit: `850 ms`, `2.4 s`, `3 min 5 s`, `2 h 10 min`.
pub(crate) fn span(ms: i64) -> String {
    let neg = ms < 0;
    let ms = ms.unsigned_abs();
    let s = if ms < 1000 {
        format!("{ms} ms")
    } else if ms < 60_000 {
        format!("{:.1} s", ms as f64 / 1000.0)
    } else if ms < 3_600_000 {
        format!("{} min {} s", ms / 60_000, (ms % 60_000) / 1000)
    } else if ms < 86_400_000 {
        format!("{} h {} min", ms / 3_600_000, (ms % 3_600_000) / 60_000)
    } else {
        format!("{} d {} h", ms / 86_400_000, (ms % 86_400_000) / 3_600_000)
    };
    if neg {
        format!("-{s}")
    } else {
        s
    }
}

/// Seconds from the histogram as a duration, or `-`.
pub(crate) fn seconds(s: Option<f64>) -> String {
    match s {
        None => "-".into(),
        Some(s) => format!("&le; {}", span((s * 1000.0).round() as i64)),
    }
}

/// A number with thousands separators.
pub(crate) fn num(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A status as a labelled badge.
pub(crate) fn badge(status: &str) -> String {
    format!(
        "<span class=\"badge s-{}\">{}</span>",
        esc(status),
        esc(status)
    )
}

/// The navigation's entries: (path, label).
const NAV: [(&str, &str); 6] = [
    ("/ui/", "Overview"),
    ("/ui/jobs", "Jobs"),
    ("/ui/scheduled", "Scheduled"),
    ("/ui/morgue", "Morgue"),
    ("/ui/periodic", "Periodic"),
    ("/ui/enqueue", "Enqueue"),
];

/// What a page needs from the layout.
pub(crate) struct Layout<'a> {
    /// The `<title>` and `<h1>`.
    pub title: &'a str,
    /// The nav entry to mark current.
    pub nav: &'a str,
    /// Whether a sign-out button is shown (sessions are on).
    pub signed_in: bool,
    /// Offer live refresh (the part inside `#live` is swapped).
    pub live: bool,
    /// A notice above the content (already escaped).
    pub flash: Option<String>,
}

/// A whole page around `body` (already escaped HTML).
pub(crate) fn page(l: Layout<'_>, body: &str) -> String {
    let mut nav = String::new();
    for (href, label) in NAV {
        let current = if href == l.nav {
            " aria-current=\"page\""
        } else {
            ""
        };
        let _ = write!(nav, "<a href=\"{href}\"{current}>{label}</a>");
    }
    let refresh = if l.live {
        "<label class=\"refresh\">Live refresh <select id=\"refresh\" aria-label=\"Live refresh interval\">\
         <option value=\"0\">off</option><option value=\"1\">1 s</option><option value=\"2\">2 s</option>\
         <option value=\"5\">5 s</option><option value=\"15\">15 s</option></select></label>"
    } else {
        ""
    };
    let signout = if l.signed_in {
        "<form method=\"post\" action=\"/ui/logout\" class=\"inline\"><button type=\"submit\" class=\"link\">Sign out</button></form>"
    } else {
        ""
    };
    let flash = l
        .flash
        .map(|f| format!("<p class=\"flash\" role=\"status\">{f}</p>"))
        .unwrap_or_default();
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"color-scheme\" content=\"light dark\">\
         <title>{title} · pubsub-jobs</title>\
         <link rel=\"stylesheet\" href=\"/ui/assets/app.css\">\
         <script src=\"/ui/assets/app.js\" defer></script></head>\
         <body><header><a class=\"brand\" href=\"/ui/\">pubsub-jobs</a><nav aria-label=\"Main\">{nav}</nav>\
         <div class=\"tools\">{refresh}{signout}</div></header>\
         <main><h1>{title}</h1>{flash}<div id=\"live\">{body}</div></main></body></html>",
        title = esc(l.title),
    )
}

/// Executions per minute over the last hour as an SVG bar chart (succeeded up, failed stacked
/// in red), with a table of the same figures for screen readers.
pub(crate) fn chart(minutes: &[MinuteCount], now: DateTime<Utc>) -> String {
    let last = now.timestamp().div_euclid(60);
    let first = last - 59;
    let mut ok = [0u64; 60];
    let mut bad = [0u64; 60];
    for m in minutes {
        let i = m.minute.timestamp().div_euclid(60) - first;
        if (0..60).contains(&i) {
            ok[i as usize] += m.succeeded;
            bad[i as usize] += m.failed;
        }
    }
    let max = (0..60).map(|i| ok[i] + bad[i]).max().unwrap_or(0).max(1);
    let (w, h) = (600.0, 120.0);
    let bw = w / 60.0;
    let mut svg = format!(
        "<svg class=\"chart\" viewBox=\"0 0 {w} {}\" role=\"img\" aria-labelledby=\"chart-title\">\
         <title id=\"chart-title\">Executions per minute, last hour: {} succeeded, {} failed</title>",
        h + 16.0,
        num(ok.iter().sum()),
        num(bad.iter().sum())
    );
    for i in 0..60 {
        let x = i as f64 * bw;
        let hs = ok[i] as f64 / max as f64 * h;
        let hf = bad[i] as f64 / max as f64 * h;
        let minute = DateTime::from_timestamp((first + i as i64) * 60, 0).unwrap_or(now);
        let label = format!(
            "{}: {} succeeded, {} failed",
            minute.format("%H:%M"),
            ok[i],
            bad[i]
        );
        let _ = write!(
            svg,
            "<g><title>{}</title><rect class=\"ok\" x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{hs:.1}\"/>\
             <rect class=\"bad\" x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{hf:.1}\"/></g>",
            esc(&label),
            h - hs,
            bw - 1.0,
            h - hs - hf,
            bw - 1.0,
        );
    }
    let _ = write!(
        svg,
        "<text x=\"0\" y=\"{}\">-60 min</text><text x=\"{w}\" y=\"{}\" text-anchor=\"end\">now (max {} / min)</text></svg>",
        h + 14.0,
        h + 14.0,
        num(max)
    );
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_everything_that_could_open_markup() {
        assert_eq!(
            esc("<script>alert('x')</script> & \"q\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
    }

    #[test]
    fn query_strings_skip_empty_values_and_encode_the_rest() {
        assert_eq!(
            query(&[
                ("status", Some("morgued")),
                ("q", Some("a b&c")),
                ("x", None),
                ("y", Some(""))
            ]),
            "?status=morgued&q=a%20b%26c"
        );
        assert_eq!(query(&[("x", None)]), "");
    }

    #[test]
    fn numbers_and_spans_read_well() {
        assert_eq!(num(1_234_567), "1,234,567");
        assert_eq!(num(12), "12");
        assert_eq!(span(850), "850 ms");
        assert_eq!(span(2_400), "2.4 s");
        assert_eq!(span(185_000), "3 min 5 s");
        assert_eq!(span(7_800_000), "2 h 10 min");
    }
}
