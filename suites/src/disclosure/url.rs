//! The URL handling the disclosure checks need, on the `url` crate (WHATWG URL parsing): the
//! scheme, host and path of an absolute URL, "is this the same page", and resolving a link on a
//! page against the page's URL.

/// The parts of an absolute URL the checks look at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UrlParts {
    /// Lowercased.
    pub scheme: String,
    /// Lowercased, without user info or port; IPv6 hosts in brackets.
    pub host: String,
    /// As the URL has it after parsing (`/` when empty).
    pub path: String,
}

/// The scheme, host and path of an absolute URL with a host; `None` for anything else
/// (`mailto:`, relative references, junk).
pub(crate) fn split(url: &str) -> Option<UrlParts> {
    let u = url::Url::parse(url.trim()).ok()?;
    let host = match u.host()? {
        url::Host::Domain(d) => d.to_ascii_lowercase(),
        url::Host::Ipv4(a) => a.to_string(),
        url::Host::Ipv6(a) => format!("[{a}]"),
    };
    if host.is_empty() {
        return None;
    }
    Some(UrlParts {
        scheme: u.scheme().to_string(),
        host,
        path: u.path().to_string(),
    })
}

/// `url` without its fragment and trailing slashes, lowercased: for "is this the same page".
pub(crate) fn comparable(url: &str) -> String {
    let no_frag = url.trim().split('#').next().unwrap_or("");
    no_frag.trim_end_matches('/').to_ascii_lowercase()
}

/// Resolves a link's `href` against the URL of the page it is on. Same-page links
/// (`#…`, `?…`) and links that cannot be resolved give `None`.
pub(crate) fn resolve(base: &str, href: &str) -> Option<String> {
    let href = href.trim();
    if href.is_empty() || href.starts_with('#') || href.starts_with('?') {
        return None;
    }
    let base = url::Url::parse(base.trim()).ok()?;
    if !base.has_host() {
        return None;
    }
    base.join(href).ok().map(String::from)
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
        assert_eq!(
            split("https://example.com").map(|u| u.path).as_deref(),
            Some("/")
        );
        assert_eq!(
            split("https://[::1]:8443/x").map(|u| u.host).as_deref(),
            Some("[::1]")
        );
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
            resolve(base, "../contact").as_deref(),
            Some("https://example.com/contact")
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
