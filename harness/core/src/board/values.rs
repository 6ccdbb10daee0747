//! Scalar values of board files that are checked after serde has read them: durations,
//! templates and regexes.
//!
//! Each parser reports a problem at the value's span (file:line:col) and returns `None`, so the
//! seams that build models, interfaces and steps share one wording and one set of limits
//! (durations at most [`super::MAX_DURATION`], step regexes compiled with a 1 MiB size limit).
//! The emulator's `ready` regex is compiled in [`super::build`] without that limit (the regex
//! crate's default applies).

use std::time::Duration;

use serde_spanned::Spanned;

use super::diag::Diag;
use crate::template::Template;

/// A duration such as "500ms" or "10s", at most 24 hours.
pub(crate) fn parse_duration(d: &mut Diag, s: &Spanned<String>) -> Option<Duration> {
    match humantime::parse_duration(s.get_ref()) {
        Ok(v) if v > super::MAX_DURATION => {
            d.at(
                Some(s.span()),
                format!("duration {:?} is longer than 24 hours", s.get_ref()),
                Some("durations in board files are at most \"24h\"; check the unit (e.g. \"500ms\", \"10s\", \"2m\")"),
            );
            None
        }
        Ok(v) => Some(v),
        Err(e) => {
            d.at(
                Some(s.span()),
                format!("invalid duration {:?}: {e}", s.get_ref()),
                Some("write e.g. \"500ms\", \"10s\" or \"2m\""),
            );
            None
        }
    }
}

/// A `{var}` template (syntax only; which variables exist is checked where it is used, at the
/// same span).
pub(crate) fn parse_template(d: &mut Diag, src: &Spanned<String>) -> Option<Template> {
    match Template::parse(src.get_ref()) {
        Ok(t) => Some(t),
        Err(e) => {
            d.at(
                Some(src.span()),
                format!("invalid template {:?}: {e}", src.get_ref()),
                None,
            );
            None
        }
    }
}

/// A regex matched against bytes a device sent (`expect`, `accept`, `reject`); `key` names
/// the key in messages.
pub(crate) fn compile_bytes_regex(
    d: &mut Diag,
    pat: &Spanned<String>,
    key: &str,
) -> Option<regex::bytes::Regex> {
    match regex::bytes::RegexBuilder::new(pat.get_ref())
        .size_limit(1 << 20)
        .build()
    {
        Ok(r) => Some(r),
        Err(e) => {
            d.at(
                Some(pat.span()),
                format!("invalid regex in `{key}`: {}", regex_error(&e)),
                Some("board regexes use Rust regex syntax; write them in single-quoted TOML strings so backslashes stay as written"),
            );
            None
        }
    }
}

/// The last line of a regex error, which says what is wrong (the others repeat the pattern).
pub(crate) fn regex_error(e: &regex::Error) -> String {
    let s = e.to_string();
    let last = s.lines().last().unwrap_or("");
    last.strip_prefix("error: ").unwrap_or(last).to_string()
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use serde::Deserialize;
    use serde_spanned::Spanned;

    use super::super::testutil::{error, load, HEAD};
    use super::*;

    #[derive(Deserialize)]
    struct One {
        v: Spanned<String>,
    }

    /// Parses `v = "<src>"` and runs `f` on the value; the result and the diagnostics.
    fn with<T>(
        src: &str,
        f: impl Fn(&mut Diag, &Spanned<String>) -> Option<T>,
    ) -> (Option<T>, Vec<String>) {
        let text = format!("v = '{src}'\n");
        let one: One = toml::from_str(&text).expect("toml");
        let mut d = Diag::new(Path::new("t.toml"), &text);
        let r = f(&mut d, &one.v);
        (
            r,
            d.errors
                .iter()
                .map(|e| format!("{}:{}: {}", e.line, e.col, e.message))
                .collect(),
        )
    }

    #[test]
    fn durations_are_at_most_a_day() {
        assert_eq!(
            with("500ms", parse_duration).0,
            Some(Duration::from_millis(500))
        );
        assert_eq!(
            with("24h", parse_duration).0,
            Some(Duration::from_secs(86_400))
        );
        let (r, errs) = with("24h 1s", parse_duration);
        assert_eq!(r, None);
        assert_eq!(errs, ["1:5: duration \"24h 1s\" is longer than 24 hours"]);
        let (r, errs) = with("10 parsecs", parse_duration);
        assert_eq!(r, None);
        assert!(
            errs[0].starts_with("1:5: invalid duration \"10 parsecs\""),
            "{errs:?}"
        );
    }

    #[test]
    fn durations_in_steps_are_bounded() {
        let text = format!("{HEAD}\n[actions.a]\nsteps = [\n  {{ wait = \"100000h\" }},\n]\n");
        let (line, col, msg, _) = error("long", &text);
        assert_eq!((line, col), (10, 12), "{msg}");
        assert!(msg.contains("longer than 24 hours"), "{msg}");
        let text = format!("{HEAD}\n[actions.a]\nsteps = [\n  {{ wait = \"24h\" }},\n]\n");
        assert!(load("day", &text).is_ok());
    }

    #[test]
    fn every_duration_key_is_bounded() {
        for (place, text) in [
            ("interface timeout", format!("{HEAD}timeout = \"48h\"\n")),
            (
                "throttle_threshold",
                format!("{HEAD}\n[declarations]\nthrottle_threshold = \"48h\"\n"),
            ),
            (
                "ready_timeout",
                format!(
                    "{HEAD}\n[emulator]\nkind = \"sim\"\nready = 'x'\nready_timeout = \"48h\"\n"
                ),
            ),
        ] {
            let (_, _, msg, help) = error("bounded", &text);
            assert!(
                msg.contains("\"48h\" is longer than 24 hours"),
                "{place}: {msg}"
            );
            assert!(help.is_some_and(|h| h.contains("at most")), "{place}");
        }
    }

    #[test]
    fn templates_and_regexes_report_their_syntax_errors() {
        let (r, errs) = with("{unclosed", parse_template);
        assert!(r.is_none());
        assert!(
            errs[0].starts_with("1:5: invalid template \"{unclosed\""),
            "{errs:?}"
        );
        let (r, errs) = with("(a", |d, s| compile_bytes_regex(d, s, "expect"));
        assert!(r.is_none());
        assert!(
            errs[0].starts_with("1:5: invalid regex in `expect`"),
            "{errs:?}"
        );
        assert!(with("(?P<x>a)", |d, s| compile_bytes_regex(d, s, "expect"))
            .0
            .is_some());
    }
}
