//! What the caller knows about where the bytes came from, and the checks that need it.
//!
//! This module exists because several RFC 9116 rules are not about the file's text but
//! about how it was served: the URL (https, `/.well-known/` rather than the legacy
//! top-level path, a `Canonical` that names it) and the Content-Type. The validator
//! itself never fetches anything; whoever fetched the file passes these facts in.

use time::OffsetDateTime;

use crate::report::{codes, Collector, Fields};

/// Optional facts about the file being checked. `Context::default()` means "bytes from
/// somewhere, check now": the URL- and Content-Type-based checks are then skipped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Context {
    /// The URL the file was fetched from (after redirects), e.g.
    /// `https://device.example/.well-known/security.txt`.
    pub url: Option<String>,
    /// The Content-Type header value it was served with, e.g. `text/plain; charset=utf-8`.
    pub content_type: Option<String>,
    /// The time against which `Expires` is judged; the current time when `None`.
    pub now: Option<OffsetDateTime>,
}

impl Context {
    /// A context with nothing known (same as `Context::default()`).
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the URL the file was fetched from.
    pub fn with_url(mut self, url: impl Into<String>) -> Self {
        self.url = Some(url.into());
        self
    }

    /// Sets the Content-Type header value the file was served with.
    pub fn with_content_type(mut self, content_type: impl Into<String>) -> Self {
        self.content_type = Some(content_type.into());
        self
    }

    /// Sets the time against which `Expires` is judged.
    pub fn with_now(mut self, now: OffsetDateTime) -> Self {
        self.now = Some(now);
        self
    }
}

/// RFC 9116 section 3: `text/plain` with `charset=utf-8`.
pub(crate) fn check_content_type(content_type: &str, out: &mut Collector) {
    let mut parts = content_type.split(';');
    let media = parts
        .next()
        .unwrap_or("")
        .trim_matches([' ', '\t'])
        .to_ascii_lowercase();
    if media != "text/plain" {
        let shown = if media.is_empty() {
            "empty"
        } else {
            media.as_str()
        };
        out.error(
            codes::INVALID_MEDIA,
            None,
            format!(
                "served as {shown:?}; security.txt must be served as \
                 `Content-Type: text/plain; charset=utf-8`"
            ),
        );
        return;
    }
    let charset = parts.find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim_matches([' ', '\t'])
            .eq_ignore_ascii_case("charset")
            .then(|| v.trim_matches([' ', '\t', '"']).to_ascii_lowercase())
    });
    match charset.as_deref() {
        Some("utf-8") => {}
        Some(other) => out.error(
            codes::INVALID_MEDIA,
            None,
            format!("served with charset {other:?}; it must be `charset=utf-8`"),
        ),
        None => out.error(
            codes::INVALID_MEDIA,
            None,
            "served as text/plain without a charset; RFC 9116 section 3 requires \
             `Content-Type: text/plain; charset=utf-8`",
        ),
    }
}

/// RFC 9116 sections 3 and 2.5.2: https, `/.well-known/`, `Canonical` names this URL.
pub(crate) fn check_url(
    raw: &str,
    fields: &Fields,
    canonical_line: Option<usize>,
    out: &mut Collector,
) {
    let Ok(fetched) = url::Url::parse(raw) else {
        out.note(
            codes::CONTEXT_URL,
            None,
            format!("the URL {raw:?} given as context is not a valid URL; URL checks skipped"),
        );
        return;
    };
    if fetched.scheme() == "http" {
        out.error(
            codes::NO_HTTPS,
            None,
            format!("fetched over plain http ({raw}); security.txt must be served over https"),
        );
    }
    if fetched.path() == "/security.txt" {
        out.error(
            codes::LOCATION,
            None,
            "found at the legacy top-level /security.txt; RFC 9116 section 3 requires \
             /.well-known/security.txt (the top-level path may only redirect there)",
        );
    }
    if !fields.canonical.is_empty() {
        let matches = fields
            .canonical
            .iter()
            .filter_map(|c| url::Url::parse(c).ok())
            .any(|c| same_resource(&c, &fetched));
        if !matches {
            out.error(
                codes::NO_CANONICAL_MATCH,
                canonical_line,
                format!(
                    "no `Canonical` value is the URL the file was fetched from ({raw}); \
                     RFC 9116 2.5.2 says such a file should not be trusted"
                ),
            );
        }
    }
}

/// URL equality after the `url` crate's normalisation (scheme and host case, default
/// port, percent-encoding), ignoring any fragment.
fn same_resource(a: &url::Url, b: &url::Url) -> bool {
    let mut a = a.clone();
    let mut b = b.clone();
    a.set_fragment(None);
    b.set_fragment(None);
    a == b
}

#[cfg(test)]
mod tests {
    use super::*;

    fn media_errors(ct: &str) -> usize {
        let mut c = Collector::default();
        check_content_type(ct, &mut c);
        c.errors.len()
    }

    #[test]
    fn content_types() {
        assert_eq!(media_errors("text/plain; charset=utf-8"), 0);
        assert_eq!(media_errors("Text/Plain;Charset=\"UTF-8\""), 0);
        assert_eq!(media_errors("text/plain; format=flowed; charset=utf-8"), 0);
        assert_eq!(media_errors("text/plain"), 1);
        assert_eq!(media_errors("text/plain; charset=iso-8859-1"), 1);
        assert_eq!(media_errors("text/html; charset=utf-8"), 1);
        assert_eq!(media_errors(""), 1);
    }

    #[test]
    fn canonical_comparison_normalises() {
        let a = url::Url::parse("HTTPS://Example.COM:443/.well-known/security.txt").unwrap();
        let b = url::Url::parse("https://example.com/.well-known/security.txt#x").unwrap();
        assert!(same_resource(&a, &b));
        let c = url::Url::parse("https://www.example.com/.well-known/security.txt").unwrap();
        assert!(!same_resource(&a, &c));
    }
}
