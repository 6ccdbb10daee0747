//! An RFC 9116 `security.txt` validator.
//!
//! hilsec's disclosure suite checks that a device (or its manufacturer's site) publishes a
//! vulnerability disclosure contact, as EN 303 645 5.2-1 and the UK PSTI regulations ask.
//! This crate is the part of that check that needs no network and no device: given the
//! bytes of a security.txt, and optionally where and how they were served, it returns a
//! [`Report`] of errors (RFC 9116 MUSTs broken), recommendations (SHOULDs missed) and the
//! parsed fields, every finding with a stable code and the line of the original file.
//! It is usable on its own, and the `hilsec securitytxt check` command is a thin layer
//! over it ([`cli`]).
//!
//! ```
//! use hilsec_securitytxt::{check_bytes, Context};
//! use time::macros::datetime;
//!
//! let file = b"Contact: mailto:security@example.com\nExpires: 2026-03-01T00:00:00Z\n";
//! let ctx = Context::new().with_now(datetime!(2025-06-01 00:00 UTC));
//! let report = check_bytes(file, &ctx);
//! assert!(report.valid);
//! assert!(report.has_recommendation("not_signed"));
//! ```
//!
//! Pipeline: cap the size ([`MAX_SIZE`]) → split into numbered lines (`lines`) → peel off
//! an OpenPGP cleartext signature if any (`signed`) → validate fields (`fields`, `uri`) →
//! checks that need the serving context (`context`) → recommendations.

mod context;
mod fields;
mod lines;
mod report;
mod signed;
mod uri;

#[cfg(feature = "cli")]
pub mod cli;

pub use context::Context;
pub use report::{codes, ExtensionField, Fields, Finding, Report, Signature};

use time::OffsetDateTime;

/// Inputs larger than this (32 KiB, as RFC 9116 section 5.4 suggests) get a `too_large`
/// error, and nothing beyond the cap is looked at.
pub const MAX_SIZE: usize = 32 * 1024;

/// Validates one security.txt. Never panics, whatever the bytes.
pub fn check_bytes(bytes: &[u8], ctx: &Context) -> Report {
    let mut out = report::Collector::default();
    let now = ctx.now.unwrap_or_else(OffsetDateTime::now_utc);

    let bytes = if bytes.len() > MAX_SIZE {
        out.error(
            codes::TOO_LARGE,
            None,
            format!(
                "the file is larger than {MAX_SIZE} bytes; only the complete lines in the \
                 first {MAX_SIZE} bytes were validated (RFC 9116 section 5.4)"
            ),
        );
        let head = &bytes[..MAX_SIZE];
        match head.iter().rposition(|b| *b == b'\n') {
            Some(last_lf) => &head[..=last_lf],
            None => &[][..],
        }
    } else {
        bytes
    };

    let lines = lines::split(bytes, &mut out);
    let unwrapped = signed::unwrap(lines, &mut out);
    let (fields, first) = fields::check(&unwrapped.content, now, &mut out);

    if let Some(ct) = &ctx.content_type {
        context::check_content_type(ct, &mut out);
    }
    if let Some(url) = &ctx.url {
        context::check_url(url, &fields, first.canonical, &mut out);
    }

    recommend(&fields, unwrapped.signature.is_some(), &mut out);
    out.finish(fields, unwrapped.signature)
}

fn recommend(fields: &Fields, signed: bool, out: &mut report::Collector) {
    if !signed {
        out.recommend(
            codes::NOT_SIGNED,
            None,
            "the file is not signed; RFC 9116 2.3 recommends an OpenPGP cleartext signature \
             (`gpg --clearsign`)",
        );
    }
    if fields.canonical.is_empty() {
        out.recommend(
            codes::NO_CANONICAL,
            None,
            "no `Canonical` field; add the https URL(s) the file is served from so a copy \
             elsewhere cannot pass as yours (RFC 9116 2.5.2, 5.1)",
        );
    }
    let non_https_contact = fields
        .contacts
        .iter()
        .any(|c| !c.to_ascii_lowercase().starts_with("https:"));
    if fields.encryption.is_empty() && non_https_contact {
        out.recommend(
            codes::NO_ENCRYPTION,
            None,
            "a contact is not an https form but no `Encryption` key is given; add \
             `Encryption: https://.../pgp-key.txt` (RFC 9116 2.5.3, 5.7)",
        );
    }
}

/// The URLs to fetch for a `security.txt` at `target`: the URL itself if it names a path,
/// else for a bare origin `/.well-known/security.txt` and then the legacy top-level
/// `/security.txt` (a file found only there is reported with code `location`).
pub fn candidate_urls(target: &str) -> Vec<String> {
    let trimmed = target.trim_end_matches('/');
    let rest = trimmed.split_once("://").map(|(_, r)| r).unwrap_or(trimmed);
    if rest.contains('/') {
        vec![target.to_string()]
    } else {
        vec![
            format!("{trimmed}/.well-known/security.txt"),
            format!("{trimmed}/security.txt"),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn ctx() -> Context {
        Context::new().with_now(datetime!(2025-06-01 00:00 UTC))
    }

    fn error_codes(r: &Report) -> Vec<&str> {
        r.errors.iter().map(|f| f.code.as_str()).collect()
    }

    #[test]
    fn minimal_valid() {
        let r = check_bytes(
            b"Contact: https://example.com/report\nExpires: 2026-01-01T00:00:00Z\n",
            &ctx(),
        );
        assert!(r.valid, "{:?}", r.errors);
        assert_eq!(r.fields.contacts, vec!["https://example.com/report"]);
        assert!(!r.has_recommendation(codes::NO_ENCRYPTION));
    }

    #[test]
    fn empty_input() {
        let r = check_bytes(b"", &ctx());
        assert_eq!(error_codes(&r), vec![codes::NO_CONTACT, codes::NO_EXPIRE]);
    }

    #[test]
    fn oversize_input_is_capped() {
        let mut big = b"Contact: mailto:a@example.com\nExpires: 2026-01-01T00:00:00Z\n".to_vec();
        big.extend(std::iter::repeat_n(b'#', MAX_SIZE * 4));
        let r = check_bytes(&big, &ctx());
        assert_eq!(error_codes(&r), vec![codes::TOO_LARGE]);
    }

    #[test]
    fn field_names_are_case_insensitive() {
        let r = check_bytes(
            b"cOnTaCt: mailto:a@example.com\nEXPIRES: 2026-01-01T00:00:00Z\n",
            &ctx(),
        );
        assert!(r.valid, "{:?}", r.errors);
    }
}
