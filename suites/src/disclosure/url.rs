//! Just enough URL handling for the disclosure checks: split an absolute URL into scheme, host
//! and path, and resolve a link on a page against the page's URL. Not a general URL parser:
//! no normalisation of percent-encoding or dot segments, which no check here needs.

/// The parts of an absolute URL the checks look at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UrlParts<'a> {
    /// Lowercased.
    pub scheme: String,
    /// Lowercased, without user info or port.
    pub host: String,
    /// As written; `/` when empty.
    pub path: &'a str,
}

/// Splits `scheme://authority/path?query#fragment`; `None` for anything else.
pub(crate) fn split(url: &str) -> Option<UrlParts<'_>> {
    let url = url.trim();
    let (scheme, rest) = url.split_once("://")?;
    let mut chars = scheme.chars();
    if !chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        || !chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    {
        return None;
    }
    let auth_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..auth_end];
    let host_port = authority.rsplit('@').next().unwrap_or("");
    let host = if host_port.starts_with('[') {
        host_port.split(']').next().map(|h| format!("{h}]"))?
    } else {
        host_port.split(':').next().unwrap_or("").to_string()
    };
    if host.is_empty() {
        return None;
    }
    let after = &rest[auth_end..];
    let path_end = after.find(['?', '#']).unwrap_or(after.len());
    let path = if path_end == 0 {
        "/"
    } else {
        &after[..path_end]
    };
    Some(UrlParts {
        scheme: scheme.to_ascii_lowercase(),
        host: host.to_ascii_lowercase(),
        path,
    })
}

/// `url` without its fragment and trailing slashes, lowercased: for "is this the same page".
pub(crate) fn comparable(url: &str) -> String {
    let no_frag = url.trim().split('#').next().unwrap_or("");
    no_frag.trim_end_matches('/').to_ascii_lowercase()
}

/// Resolves a link's `href` against the URL of the page it is on. Same-page links
/// (`#…`, `?…`), scripts and links that cannot be resolved give `None`.
pub(crate) fn resolve(base: &str, href: &str) -> Option<String> {
    let href = href.trim();
    if href.is_empty() || href.starts_with('#') || href.starts_with('?') {
        return None;
    }
    if let Some(colon) = href.find(':') {
        let scheme = &href[..colon];
        if !scheme.is_empty()
            && !scheme.contains(['/', '?', '#'])
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        {
            return Some(href.to_string()); // absolute, any scheme
        }
    }
    let base = base.trim();
    let b = split(base)?;
    if let Some(rest) = href.strip_prefix("//") {
        return Some(format!("{}://{rest}", b.scheme));
    }
    let after_scheme = base.find("://")? + 3;
    let authority_len = base[after_scheme..]
        .find(['/', '?', '#'])
        .unwrap_or(base.len() - after_scheme);
    let origin = &base[..after_scheme + authority_len];
    if href.starts_with('/') {
        return Some(format!("{origin}{href}"));
    }
    let dir = match b.path.rfind('/') {
        Some(i) => &b.path[..=i],
        None => "/",
    };
    Some(format!("{origin}{dir}{href}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits() {
        let u = split("HTTPS://user@Login.Example.com:8443/Auth/Start?x=1#y").expect("valid");
        assert_eq!(u.scheme, "https");
        assert_eq!(u.host, "login.example.com");
        assert_eq!(u.path, "/Auth/Start");
        assert_eq!(split("https://example.com").map(|u| u.path), Some("/"));
        assert!(split("mailto:a@b.c").is_none());
        assert!(split("https://").is_none());
        assert!(split("1http://x").is_none());
    }

    #[test]
    fn resolves() {
        let base = "https://example.com/security/policy.html?lang=en";
        assert_eq!(
            resolve(base, "/report").as_deref(),
            Some("https://example.com/report")
        );
        assert_eq!(
            resolve(base, "form").as_deref(),
            Some("https://example.com/security/form")
        );
        assert_eq!(
            resolve(base, "//forms.example.com/x").as_deref(),
            Some("https://forms.example.com/x")
        );
        assert_eq!(
            resolve(base, "mailto:psirt@example.com").as_deref(),
            Some("mailto:psirt@example.com")
        );
        assert_eq!(resolve(base, "#top"), None);
        assert_eq!(resolve("not a url", "/x"), None);
    }
}
