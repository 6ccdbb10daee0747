//! Line syntax and the rules of each field (RFC 9116 sections 2 and 4).
//!
//! This module exists to hold RFC 9116's own rules in one place: what a line may be (blank,
//! comment, `Name: value`), which fields hold URIs and must use https, how often `Expires`
//! and `Preferred-Languages` may appear, and the whole-file rules (a `Contact`, exactly one
//! `Expires`, not expired). It sees only the unwrapped content lines and knows nothing of
//! signatures, HTTP or the CLI.

use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

use crate::lines::Line;
use crate::report::{codes, Collector, ExtensionField, Fields};
use crate::uri::{self, UriProblem};

/// RFC 9116 5.4 suggests not parsing fields longer than this.
pub(crate) const MAX_FIELD_LEN: usize = 2048;

/// The registered fields whose value is one URI; web URIs among them must be https.
const URI_FIELDS: &[&str] = &[
    "acknowledgments",
    "canonical",
    "contact",
    "csaf",
    "encryption",
    "hiring",
    "policy",
];

/// Line of the first occurrence of each field, for whole-file findings.
#[derive(Default)]
pub(crate) struct FirstLines {
    pub canonical: Option<usize>,
    pub expires: Option<usize>,
}

/// Validates the content lines, filling `fields` and reporting into `out`.
pub(crate) fn check(
    lines: &[Line],
    now: OffsetDateTime,
    out: &mut Collector,
) -> (Fields, FirstLines) {
    let mut fields = Fields::default();
    let mut first = FirstLines::default();
    let mut lang_seen = false;

    for line in lines {
        let n = Some(line.number);
        let text = line.text.trim_end_matches([' ', '\t']);
        if text.is_empty() {
            continue;
        }
        if let Some(comment) = text.strip_prefix('#') {
            if let Some(c) = comment.chars().find(|c| c.is_control() && *c != '\t') {
                out.error(
                    codes::INVALID_LINE,
                    n,
                    format!("comment contains the control character {c:?}"),
                );
            }
            continue;
        }
        if text.chars().count() > MAX_FIELD_LEN {
            out.error(
                codes::INVALID_LINE,
                n,
                format!(
                    "line is longer than {MAX_FIELD_LEN} characters (RFC 9116 section 5.4); \
                     it was not parsed"
                ),
            );
            continue;
        }
        let Some((raw_name, raw_value)) = text.split_once(':') else {
            out.error(
                codes::INVALID_LINE,
                n,
                "not a field (`Name: value`), a comment (`# ...`) or a blank line",
            );
            continue;
        };
        let name = raw_name.trim_matches([' ', '\t']);
        if name.is_empty() {
            out.error(codes::INVALID_LINE, n, "field has no name before the colon");
            continue;
        }
        if name.len() != raw_name.len() {
            out.error(
                codes::INVALID_LINE,
                n,
                format!("whitespace around the field name {name:?}: write `{name}: value`"),
            );
        }
        if let Some(c) = name.chars().find(|c| !matches!(c, '!'..='9' | ';'..='~')) {
            out.error(
                codes::INVALID_LINE,
                n,
                format!("field name {name:?} contains {c:?}; names are printable ASCII only"),
            );
            continue;
        }
        let value = raw_value.trim_matches([' ', '\t']);
        if value.is_empty() {
            out.error(
                codes::EMPTY_VALUE,
                n,
                format!("field `{name}` has no value"),
            );
            continue;
        }
        if !raw_value.starts_with(' ') {
            out.error(
                codes::INVALID_LINE,
                n,
                format!("the colon after `{name}` must be followed by one space"),
            );
        }
        if let Some(c) = value.chars().find(|c| c.is_control() && *c != '\t') {
            out.error(
                codes::INVALID_LINE,
                n,
                format!("value of `{name}` contains the control character {c:?}"),
            );
            continue;
        }

        let key = name.to_ascii_lowercase();
        if URI_FIELDS.contains(&key.as_str()) {
            check_uri_field(name, value, line.number, out);
            let list = match key.as_str() {
                "acknowledgments" => &mut fields.acknowledgments,
                "canonical" => {
                    first.canonical.get_or_insert(line.number);
                    &mut fields.canonical
                }
                "contact" => &mut fields.contacts,
                "csaf" => &mut fields.csaf,
                "encryption" => &mut fields.encryption,
                "hiring" => &mut fields.hiring,
                _ => &mut fields.policy,
            };
            list.push(value.to_string());
            continue;
        }
        match key.as_str() {
            "expires" => {
                if first.expires.is_some() {
                    out.error(
                        codes::MULTI_EXPIRE,
                        n,
                        "`Expires` appears more than once; keep exactly one",
                    );
                    continue;
                }
                first.expires = Some(line.number);
                fields.expires = Some(value.to_string());
                match parse_expiry(value) {
                    Some(at) => {
                        fields.expires_at = Some(at);
                        check_expiry_window(at, now, line.number, out);
                    }
                    None => out.error(
                        codes::INVALID_EXPIRY,
                        n,
                        format!(
                            "{value:?} is not an RFC 3339 date-time with a time zone; \
                             write e.g. 2026-12-31T23:59:59Z"
                        ),
                    ),
                }
            }
            "preferred-languages" => {
                if lang_seen {
                    out.error(
                        codes::MULTI_LANG,
                        n,
                        "`Preferred-Languages` appears more than once; list all languages \
                         in one field, separated by commas",
                    );
                    continue;
                }
                lang_seen = true;
                for tag in value.split(',').map(|t| t.trim_matches([' ', '\t'])) {
                    if tag.is_empty() {
                        out.error(
                            codes::INVALID_LANG,
                            n,
                            "empty language tag in `Preferred-Languages` (stray comma?)",
                        );
                    } else if oxilangtag::LanguageTag::parse(tag).is_err() {
                        out.error(
                            codes::INVALID_LANG,
                            n,
                            format!("{tag:?} is not an RFC 5646 language tag (e.g. en, de, pt-BR)"),
                        );
                    } else {
                        fields.preferred_languages.push(tag.to_string());
                    }
                }
            }
            _ => fields.extensions.push(ExtensionField {
                name: name.to_string(),
                value: value.to_string(),
                line: line.number,
            }),
        }
    }

    if fields.contacts.is_empty() {
        out.error(
            codes::NO_CONTACT,
            None,
            "no `Contact` field: add one, e.g. `Contact: mailto:security@example.com`",
        );
    }
    if first.expires.is_none() {
        out.error(
            codes::NO_EXPIRE,
            None,
            "no `Expires` field: add one less than a year ahead, e.g. \
             `Expires: 2026-12-31T23:59:59Z`",
        );
    }
    (fields, first)
}

fn check_uri_field(name: &str, value: &str, line: usize, out: &mut Collector) {
    match uri::check(value) {
        Ok(_) => {}
        Err(UriProblem::Http) => out.error(
            codes::NO_HTTPS,
            Some(line),
            format!("`{name}` uses http://; web URIs in security.txt must begin with https://"),
        ),
        Err(UriProblem::NotUri(msg)) => out.error(
            codes::INVALID_URI_SCHEME,
            Some(line),
            format!("`{name}`: {msg}"),
        ),
    }
}

/// Parses an RFC 3339 date-time. RFC 3339 5.6 allows `t` and `z` in lower case (the RFC
/// 9116 example uses `z`), so the value is upper-cased first; no other form is accepted.
pub(crate) fn parse_expiry(value: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(&value.to_ascii_uppercase(), &Rfc3339).ok()
}

fn check_expiry_window(at: OffsetDateTime, now: OffsetDateTime, line: usize, out: &mut Collector) {
    if at < now {
        out.error(
            codes::EXPIRED,
            Some(line),
            format!(
                "the file expired on {}; update `Expires` (and the contents)",
                at.format(&Rfc3339).unwrap_or_else(|_| at.to_string())
            ),
        );
        return;
    }
    // Feb 29 has no counterpart next year, and year 9999 has no next year at all.
    let year_ahead = now
        .replace_year(now.year() + 1)
        .ok()
        .or_else(|| now.checked_add(Duration::days(365)));
    if year_ahead.is_some_and(|limit| at > limit) {
        out.recommend(
            codes::LONG_EXPIRY,
            Some(line),
            "`Expires` is more than a year ahead; RFC 9116 recommends less than a year to \
             avoid stale information",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn expiry_forms() {
        assert!(parse_expiry("2021-12-31T18:37:07z").is_some());
        assert!(parse_expiry("2021-12-31T18:37:07Z").is_some());
        assert!(parse_expiry("2021-12-31t18:37:07.123+02:00").is_some());
        assert!(parse_expiry("2021-12-31").is_none());
        assert!(parse_expiry("2021-12-31T18:37:07").is_none());
        assert!(parse_expiry("Fri, 31 Dec 2021 18:37:07 GMT").is_none());
        assert!(parse_expiry("2021-02-30T00:00:00Z").is_none());
    }

    #[test]
    fn year_ahead_boundary() {
        let now = datetime!(2025-06-01 00:00 UTC);
        let mut c = Collector::default();
        check_expiry_window(datetime!(2026-06-01 00:00 UTC), now, 1, &mut c);
        assert!(c.recommendations.is_empty());
        check_expiry_window(datetime!(2026-06-01 00:00:01 UTC), now, 1, &mut c);
        assert_eq!(c.recommendations.len(), 1);
    }

    #[test]
    fn extreme_now_does_not_overflow() {
        let mut c = Collector::default();
        let now = datetime!(9999-12-31 23:59:59 UTC);
        check_expiry_window(datetime!(9999-12-31 23:59:59.5 UTC), now, 1, &mut c);
        check_expiry_window(now, datetime!(2024-02-29 00:00 UTC), 1, &mut c);
        assert!(c.errors.is_empty());
    }
}
