//! URI checks for the URI-valued fields (RFC 9116 2.5, RFC 3986 section 3).
//!
//! This module exists because most fields must hold exactly one URI, and web URIs must use
//! `https`. A general URL parser is too forgiving for that (WHATWG parsing accepts spaces,
//! backslashes and missing schemes), so the RFC 3986 character rules are checked here
//! directly; the `url` crate is only used to confirm that `http(s)` URIs have a host.

/// Why a value is not an acceptable URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum UriProblem {
    /// Not a URI: no scheme, a malformed scheme, forbidden characters... (the message says).
    NotUri(String),
    /// A web URI using `http://` where `https://` is required.
    Http,
}

/// Checks that `value` is one RFC 3986 absolute URI. Returns its scheme in lower case.
pub(crate) fn check(value: &str) -> Result<String, UriProblem> {
    let Some((scheme, rest)) = value.split_once(':') else {
        let hint = if value.contains('@') {
            format!(" (an email address must be written as mailto:{value})")
        } else if value.starts_with('+')
            || value
                .bytes()
                .all(|b| b.is_ascii_digit() || b"+-() ".contains(&b))
        {
            " (a telephone number must be written as tel:...)".to_string()
        } else if value.starts_with("www.") {
            format!(" (write https://{value})")
        } else {
            String::new()
        };
        return Err(UriProblem::NotUri(format!(
            "{value:?} is not a URI: it has no scheme{hint}"
        )));
    };
    let mut sb = scheme.bytes();
    let scheme_ok = sb.next().is_some_and(|b| b.is_ascii_alphabetic())
        && sb.all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'-' || b == b'.');
    if !scheme_ok {
        return Err(UriProblem::NotUri(format!(
            "{value:?} is not a URI: {scheme:?} is not a valid URI scheme"
        )));
    }
    if let Some((pos, ch)) = first_bad_char(rest) {
        let what = if ch == ' ' || ch == '\t' {
            "whitespace (one URI per field: repeat the field for more values)".to_string()
        } else {
            format!("the character {ch:?}")
        };
        return Err(UriProblem::NotUri(format!(
            "{value:?} is not a valid URI: it contains {what} at column {} of the value \
             (percent-encode it)",
            scheme.len() + 1 + pos + 1
        )));
    }
    let scheme = scheme.to_ascii_lowercase();
    match scheme.as_str() {
        "http" | "https" => {
            let has_host = url::Url::parse(value)
                .ok()
                .is_some_and(|u| u.host_str().is_some_and(|h| !h.is_empty()))
                && rest.starts_with("//");
            if !has_host {
                return Err(UriProblem::NotUri(format!(
                    "{value:?} is not a valid web URI: write {scheme}://host/path"
                )));
            }
            if scheme == "http" {
                return Err(UriProblem::Http);
            }
        }
        "mailto" if !rest.contains('@') => {
            return Err(UriProblem::NotUri(format!(
                "{value:?} has no email address after mailto:"
            )));
        }
        "tel" if !rest.bytes().any(|b| b.is_ascii_digit()) => {
            return Err(UriProblem::NotUri(format!(
                "{value:?} has no telephone number after tel:"
            )));
        }
        _ if rest.is_empty() => {
            return Err(UriProblem::NotUri(format!(
                "{value:?} has nothing after the scheme"
            )));
        }
        _ => {}
    }
    Ok(scheme)
}

/// The first character (byte position, char) that RFC 3986 does not allow after the
/// scheme, or a `%` not followed by two hex digits.
fn first_bad_char(rest: &str) -> Option<(usize, char)> {
    let bytes = rest.as_bytes();
    for (pos, ch) in rest.char_indices() {
        let ok = match ch {
            'A'..='Z' | 'a'..='z' | '0'..='9' => true,
            // unreserved, gen-delims, sub-delims
            '-' | '.' | '_' | '~' | ':' | '/' | '?' | '#' | '[' | ']' | '@' | '!' | '$' | '&'
            | '\'' | '(' | ')' | '*' | '+' | ',' | ';' | '=' => true,
            '%' => {
                bytes.get(pos + 1).is_some_and(u8::is_ascii_hexdigit)
                    && bytes.get(pos + 2).is_some_and(u8::is_ascii_hexdigit)
            }
            _ => false,
        };
        if !ok {
            return Some((pos, ch));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn not_uri(v: &str) -> bool {
        matches!(check(v), Err(UriProblem::NotUri(_)))
    }

    #[test]
    fn accepts_rfc_examples() {
        for v in [
            "mailto:security@example.com",
            "mailto:security%2Buri%2Bencoded@example.com",
            "tel:+1-201-555-0123",
            "https://example.com/security-contact.html",
            "dns:5d2d37ab76d47d36._openpgpkey.example.com?type=OPENPGPKEY",
            "openpgp4fpr:5f2de5521c63a801ab59ccb603d49de44b29100f",
            "HTTPS://EXAMPLE.COM/",
            "https://[2001:db8:8:4::2]/.well-known/security.txt",
        ] {
            assert!(check(v).is_ok(), "{v}");
        }
    }

    #[test]
    fn rejects_non_uris() {
        assert!(not_uri("security@example.com"));
        assert!(not_uri("+1 201 555 0123"));
        assert!(not_uri("www.example.com"));
        assert!(not_uri("1http://x"));
        assert!(not_uri("mailto:a@example.com, mailto:b@example.com"));
        assert!(not_uri("https://exa mple.com"));
        assert!(not_uri("https://example.com/%zz"));
        assert!(not_uri("https:example.com"));
        assert!(not_uri("https://"));
        assert!(not_uri("mailto:"));
        assert!(not_uri("tel:"));
        assert!(not_uri("https://example.com/ünicode"));
    }

    #[test]
    fn http_is_flagged() {
        assert_eq!(check("http://example.com/"), Err(UriProblem::Http));
        assert_eq!(check("HTTP://example.com/"), Err(UriProblem::Http));
    }
}
