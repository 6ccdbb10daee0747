//! The validator's output: findings, the parsed fields and the verdict.
//!
//! This module exists so that everything a caller (the harness's disclosure suite, the CLI,
//! a JSON consumer) depends on lives in one place, apart from how the file is parsed. The
//! finding codes are stable strings: scripts and the suites match on them, so they are
//! listed once here as constants and never spelled inline elsewhere.

use serde::Serialize;
use time::OffsetDateTime;

/// Stable finding codes. Errors make a file invalid; recommendations and notes do not.
pub mod codes {
    // Errors.
    /// No `Contact` field (RFC 9116 2.5.3: MUST always be present).
    pub const NO_CONTACT: &str = "no_contact";
    /// No `Expires` field (2.5.5: MUST always be present).
    pub const NO_EXPIRE: &str = "no_expire";
    /// `Expires` appears more than once (2.5.5: MUST NOT appear more than once).
    pub const MULTI_EXPIRE: &str = "multi_expire";
    /// `Expires` is not an RFC 3339 date-time with a time zone.
    pub const INVALID_EXPIRY: &str = "invalid_expiry";
    /// `Expires` is in the past.
    pub const EXPIRED: &str = "expired";
    /// A field that must hold a URI holds no URI or one without a valid scheme.
    pub const INVALID_URI_SCHEME: &str = "invalid_uri_scheme";
    /// A web URI begins with `http://` where RFC 9116 requires `https://`, or the file was
    /// fetched over plain HTTP.
    pub const NO_HTTPS: &str = "no_https";
    /// `Preferred-Languages` appears more than once.
    pub const MULTI_LANG: &str = "multi_lang";
    /// A `Preferred-Languages` value is not a well-formed RFC 5646 language tag.
    pub const INVALID_LANG: &str = "invalid_lang";
    /// A line is neither blank, a comment, nor a `Name: value` field.
    pub const INVALID_LINE: &str = "invalid_line";
    /// A field has a name but no value.
    pub const EMPTY_VALUE: &str = "empty_value";
    /// The file is not valid UTF-8.
    pub const NOT_UTF8: &str = "not_utf8";
    /// `Canonical` is present but none of its values is the URL the file was fetched from.
    pub const NO_CANONICAL_MATCH: &str = "no_canonical_match";
    /// The OpenPGP cleartext-signature armour is malformed.
    pub const SIGNED_FORMAT_ISSUE: &str = "signed_format_issue";
    /// The Content-Type is not `text/plain; charset=utf-8`.
    pub const INVALID_MEDIA: &str = "invalid_media";
    /// The file was found at the legacy top-level `/security.txt`, not `/.well-known/`.
    pub const LOCATION: &str = "location";
    /// The input is larger than [`crate::MAX_SIZE`]; nothing beyond the cap was validated.
    pub const TOO_LARGE: &str = "too_large";
    /// The file starts with a UTF-8 byte-order mark: not UTF-8 in Net-Unicode form (RFC 9116
    /// section 4). The code and the verdict are those of the `sectxt` validator.
    pub const BOM_IN_FILE: &str = "bom_in_file";
    /// The last line has no line break: RFC 9116's ABNF ends every line, the last one too,
    /// with LF or CRLF. The code and the verdict are those of the `sectxt` validator.
    pub const NO_LINE_SEPARATORS: &str = "no_line_separators";

    // Recommendations.
    /// `Expires` is more than a year ahead (2.5.5 RECOMMENDS less than a year).
    pub const LONG_EXPIRY: &str = "long_expiry";
    /// An email contact is given but no `Encryption` key (2.5.3, 5.7).
    pub const NO_ENCRYPTION: &str = "no_encryption";
    /// The file carries no OpenPGP cleartext signature (2.3).
    pub const NOT_SIGNED: &str = "not_signed";
    /// No `Canonical` field (2.3, 5.1).
    pub const NO_CANONICAL: &str = "no_canonical";

    // Notes (information only).
    /// The context URL could not be parsed, so URL-based checks were skipped.
    pub const CONTEXT_URL: &str = "context_url";
    /// Too many findings with one code; the rest are counted, not listed.
    pub const TRUNCATED: &str = "truncated";
}

/// One problem or piece of advice about the file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// A stable snake-case code from [`codes`].
    pub code: String,
    /// The 1-based line of the original input (before any signature armour was removed),
    /// or `None` when the finding concerns the whole file.
    pub line: Option<usize>,
    /// A sentence for a human, saying what is wrong and what to do.
    pub message: String,
}

impl Finding {
    pub(crate) fn new(code: &str, line: Option<usize>, message: impl Into<String>) -> Self {
        Finding {
            code: code.to_string(),
            line,
            message: message.into(),
        }
    }
}

/// An extension (unregistered or unsupported) field, kept as it was written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExtensionField {
    /// The field name as written (case preserved).
    pub name: String,
    /// The value, trailing whitespace removed.
    pub value: String,
    /// 1-based line of the original input.
    pub line: usize,
}

/// The values of the fields RFC 9116 (and the CSAF registration) defines, in file order.
///
/// Values are kept even when they were reported as errors (an `http:` contact is still a
/// contact), so that a caller can show what the file says.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Fields {
    /// `Acknowledgments` URIs.
    pub acknowledgments: Vec<String>,
    /// `Canonical` URIs.
    pub canonical: Vec<String>,
    /// `Contact` URIs, most preferred first.
    pub contacts: Vec<String>,
    /// `CSAF` provider-metadata URIs (registered by OASIS CSAF 2.0).
    pub csaf: Vec<String>,
    /// `Encryption` key URIs.
    pub encryption: Vec<String>,
    /// The first `Expires` value as written.
    pub expires: Option<String>,
    /// The first `Expires` value, parsed (absent when it did not parse).
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    /// `Hiring` URIs.
    pub hiring: Vec<String>,
    /// `Policy` URIs.
    pub policy: Vec<String>,
    /// The language tags of the first `Preferred-Languages` field.
    pub preferred_languages: Vec<String>,
    /// Every other field, in file order.
    pub extensions: Vec<ExtensionField>,
}

/// Information about the OpenPGP cleartext signature, when the file has one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Signature {
    /// Hash algorithms named in the `Hash:` armour headers, e.g. `SHA512`.
    pub hash_algorithms: Vec<String>,
    /// Whether the armour was well formed (no `signed_format_issue` finding). The
    /// signature itself is not verified against any key.
    pub armour_ok: bool,
}

/// The result of validating one security.txt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// `true` exactly when `errors` is empty.
    pub valid: bool,
    /// Violations of RFC 9116's MUSTs (and of the harness's size cap).
    pub errors: Vec<Finding>,
    /// Departures from RFC 9116's SHOULDs and RECOMMENDEDs.
    pub recommendations: Vec<Finding>,
    /// Information that is neither (a byte-order mark, findings not listed, ...).
    pub notes: Vec<Finding>,
    /// What the file says.
    pub fields: Fields,
    /// The cleartext signature, if the file is signed.
    pub signature: Option<Signature>,
}

impl Report {
    /// Whether any error carries `code`.
    pub fn has_error(&self, code: &str) -> bool {
        self.errors.iter().any(|f| f.code == code)
    }

    /// Whether any recommendation carries `code`.
    pub fn has_recommendation(&self, code: &str) -> bool {
        self.recommendations.iter().any(|f| f.code == code)
    }
}

/// At most this many findings with one code are listed; the rest are summarised in one
/// `truncated` note, so that 32 KiB of junk does not yield thousands of identical lines.
pub(crate) const MAX_PER_CODE: usize = 50;

/// Collects findings while the file is checked, enforcing [`MAX_PER_CODE`].
#[derive(Debug, Default)]
pub(crate) struct Collector {
    pub errors: Vec<Finding>,
    pub recommendations: Vec<Finding>,
    pub notes: Vec<Finding>,
    dropped: Vec<(String, usize)>,
}

impl Collector {
    fn count(list: &[Finding], code: &str) -> usize {
        list.iter().filter(|f| f.code == code).count()
    }

    fn push(&mut self, kind: Kind, f: Finding) {
        let list = match kind {
            Kind::Error => &mut self.errors,
            Kind::Recommendation => &mut self.recommendations,
            Kind::Note => &mut self.notes,
        };
        if Self::count(list, &f.code) >= MAX_PER_CODE {
            match self.dropped.iter_mut().find(|(c, _)| *c == f.code) {
                Some((_, n)) => *n += 1,
                None => self.dropped.push((f.code, 1)),
            }
        } else {
            list.push(f);
        }
    }

    pub fn error(&mut self, code: &str, line: Option<usize>, message: impl Into<String>) {
        self.push(Kind::Error, Finding::new(code, line, message));
    }

    pub fn recommend(&mut self, code: &str, line: Option<usize>, message: impl Into<String>) {
        self.push(Kind::Recommendation, Finding::new(code, line, message));
    }

    pub fn note(&mut self, code: &str, line: Option<usize>, message: impl Into<String>) {
        self.push(Kind::Note, Finding::new(code, line, message));
    }

    pub fn finish(mut self, fields: Fields, signature: Option<Signature>) -> Report {
        for (code, n) in std::mem::take(&mut self.dropped) {
            self.notes.push(Finding::new(
                codes::TRUNCATED,
                None,
                format!(
                    "{n} more `{code}` findings were not listed (at most {MAX_PER_CODE} per code)"
                ),
            ));
        }
        // Findings are reported in file order; whole-file findings come last.
        let key = |f: &Finding| f.line.unwrap_or(usize::MAX);
        self.errors.sort_by_key(key);
        self.recommendations.sort_by_key(key);
        self.notes.sort_by_key(key);
        Report {
            valid: self.errors.is_empty(),
            errors: self.errors,
            recommendations: self.recommendations,
            notes: self.notes,
            fields,
            signature,
        }
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Error,
    Recommendation,
    Note,
}
