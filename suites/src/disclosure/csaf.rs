//! CSAF 2.0 provider metadata: does the manufacturer publish machine-readable security
//! advisories the way the Common Security Advisory Framework 2.0 (OASIS, 2022) asks? A CSAF
//! provider is a strong form of the "publish vulnerability information" that EN 303 645 5.2
//! and the PSTI regime expect, and labs ask for it.
//!
//! Checked, with the section of CSAF 2.0 each problem cites:
//!
//! - **7.1.7 Requirement 7** (`provider-metadata.json`): the document is valid against the
//!   CSAF provider metadata JSON schema. Required: `canonical_url` (a URI ending in
//!   `/provider-metadata.json`), `last_updated` (an RFC 3339 date-time),
//!   `list_on_CSAF_aggregators` and `mirror_on_CSAF_aggregators` (booleans), `metadata_version`
//!   (`"2.0"`), `publisher` (`category` one of coordinator, discoverer, other, translator, user,
//!   vendor; `name` non-empty; `namespace` a URI; optional `contact_details` and
//!   `issuing_authority` non-empty strings) and `role` (`csaf_publisher`, `csaf_provider` or
//!   `csaf_trusted_provider`). Optional, checked when present: `distributions` (a non-empty
//!   array of distinct objects, each with a `directory_url` URI and/or `rolie` whose `feeds` is
//!   a non-empty array of `{tlp_label, url}` with `tlp_label` one of UNLABELED, WHITE, GREEN,
//!   AMBER, RED and `url` a URI ending in `.json`, plus optional non-empty `categories` and
//!   `services` arrays of such URIs) and `public_openpgp_keys` (objects with a `url` URI and an
//!   optional `fingerprint` of at least 40 hexadecimal digits). Fields the schema does not
//!   define are reported as warnings (the pre-release name `pgp_keys` with a hint).
//! - **7.2.2 / 7.2.3 roles**: a `csaf_provider` or `csaf_trusted_provider` must distribute its
//!   documents by directory (requirements 11-14) or ROLIE (15-17); with no `distributions` a
//!   retriever cannot find them (error). A `csaf_trusted_provider` must make its OpenPGP key
//!   available (requirement 20); no `public_openpgp_keys` is a warning, as the key may be
//!   published elsewhere.
//! - **7.1.9 Requirement 9** (well-known URL): the file is served directly, over HTTPS, at
//!   `/.well-known/csaf/provider-metadata.json`: the final URL must use `https`, have that path
//!   and equal the requested URL (no redirect). A `canonical_url` other than the URL it was
//!   served from is a warning.
//! - **7.1.8 Requirement 8** (security.txt, [`check_security_txt_csaf`]): at least one `CSAF`
//!   field, each an `https` URL of a `provider-metadata.json`; if one of them is the well-known
//!   URL of requirement 9 it must be the first; more than one is a warning (SHOULD NOT).
//!
//! Input is capped at 1 MiB; JSON nesting is bounded by serde_json's recursion limit.

use serde_json::{Map, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::url;

/// The largest provider metadata document read.
pub const MAX_METADATA_BYTES: usize = 1024 * 1024;
/// Where requirement 9 puts the provider metadata.
pub const WELL_KNOWN_PATH: &str = "/.well-known/csaf/provider-metadata.json";
/// Most problems reported for one document; a final problem says how many were left out.
const MAX_PROBLEMS: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// A MUST of CSAF 2.0 is broken.
    Error,
    /// A SHOULD is missed, or something is likely a mistake.
    Warning,
}

/// One finding, with a stable code and the CSAF 2.0 section it is judged against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub code: &'static str,
    pub severity: Severity,
    /// Section of CSAF 2.0, e.g. `"7.1.7"` (requirement 7).
    pub section: &'static str,
    pub message: String,
}

/// What the provider metadata check found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CsafFindings {
    pub problems: Vec<Problem>,
    /// `role`, when it is a string.
    pub role: Option<String>,
    /// `publisher.name`, when it is a string.
    pub publisher: Option<String>,
    /// `canonical_url`, when it is a string.
    pub canonical_url: Option<String>,
    /// Number of entries in `distributions`.
    pub distributions: usize,
    /// Number of entries in `public_openpgp_keys`.
    pub openpgp_keys: usize,
}

impl CsafFindings {
    pub fn errors(&self) -> impl Iterator<Item = &Problem> {
        self.problems
            .iter()
            .filter(|p| p.severity == Severity::Error)
    }

    /// No error (warnings allowed).
    pub fn is_valid(&self) -> bool {
        self.errors().next().is_none()
    }

    /// One line for the evidence.
    pub fn summary(&self) -> String {
        let errors = self.errors().count();
        let warnings = self.problems.len() - errors;
        let who = match (&self.publisher, &self.role) {
            (Some(p), Some(r)) => format!(" for {p} ({r})"),
            (Some(p), None) => format!(" for {p}"),
            _ => String::new(),
        };
        if errors == 0 {
            format!("valid CSAF 2.0 provider metadata{who}; {warnings} warning(s)")
        } else {
            let first: Vec<String> = self
                .errors()
                .take(3)
                .map(|p| format!("[{}] {}", p.code, p.message))
                .collect();
            format!(
                "CSAF 2.0 provider metadata{who} has {errors} error(s) and {warnings} warning(s): {}",
                first.join("; ")
            )
        }
    }
}

/// Problems as they are found, up to [`MAX_PROBLEMS`].
#[derive(Default)]
struct Problems {
    list: Vec<Problem>,
    dropped: usize,
}

impl Problems {
    fn push(&mut self, severity: Severity, section: &'static str, code: &'static str, msg: String) {
        if self.list.len() < MAX_PROBLEMS {
            self.list.push(Problem {
                code,
                severity,
                section,
                message: msg,
            });
        } else {
            self.dropped += 1;
        }
    }

    fn error(&mut self, code: &'static str, msg: String) {
        self.push(Severity::Error, "7.1.7", code, msg);
    }

    fn warning(&mut self, code: &'static str, msg: String) {
        self.push(Severity::Warning, "7.1.7", code, msg);
    }

    fn finish(mut self) -> Vec<Problem> {
        if self.dropped > 0 {
            self.list.push(Problem {
                code: "too-many-problems",
                severity: Severity::Warning,
                section: "7.1.7",
                message: format!("{} more problems were not listed", self.dropped),
            });
        }
        self.list
    }
}

/// Checks a provider metadata document fetched from `requested_url`, which answered from
/// `final_url` (after redirects).
pub fn check_provider_metadata(body: &[u8], requested_url: &str, final_url: &str) -> CsafFindings {
    let mut p = Problems::default();
    let mut findings = CsafFindings::default();
    check_location(&mut p, requested_url, final_url);
    if body.len() > MAX_METADATA_BYTES {
        p.error(
            "too-large",
            format!(
                "the document has {} bytes, more than the {MAX_METADATA_BYTES} this check reads",
                body.len()
            ),
        );
        findings.problems = p.finish();
        return findings;
    }
    let body = match body.strip_prefix(b"\xEF\xBB\xBF") {
        Some(rest) => {
            p.warning(
                "byte-order-mark",
                "the document starts with a UTF-8 byte order mark, which JSON (RFC 8259) does not allow in transmitted documents".into(),
            );
            rest
        }
        None => body,
    };
    let doc: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => {
            p.error("not-json", format!("the document is not valid JSON: {e}"));
            findings.problems = p.finish();
            return findings;
        }
    };
    let Some(obj) = doc.as_object() else {
        p.error(
            "not-object",
            format!("the document is {}, not a JSON object", kind(&doc)),
        );
        findings.problems = p.finish();
        return findings;
    };
    check_document(&mut p, obj, &mut findings);
    if let Some(canonical) = &findings.canonical_url {
        if url::split(final_url).is_some()
            && url::comparable(canonical) != url::comparable(final_url)
        {
            p.warning(
                "canonical-url-mismatch",
                format!(
                    "canonical_url is {canonical}, but the document was served from {final_url}"
                ),
            );
        }
    }
    findings.problems = p.finish();
    findings
}

/// Requirement 9: served directly over HTTPS at the well-known path.
fn check_location(p: &mut Problems, requested_url: &str, final_url: &str) {
    let Some(parts) = url::split(final_url) else {
        p.push(
            Severity::Error,
            "7.1.9",
            "bad-url",
            format!("the URL the document was served from ({final_url:?}) is not an absolute URL"),
        );
        return;
    };
    if parts.scheme != "https" {
        p.push(
            Severity::Error,
            "7.1.9",
            "not-https",
            format!(
                "the document was served over {}, requirement 9 requires HTTPS",
                parts.scheme
            ),
        );
    }
    if parts.path != WELL_KNOWN_PATH {
        p.push(
            Severity::Error,
            "7.1.9",
            "not-well-known",
            format!(
                "the document was served from the path {}, not from {WELL_KNOWN_PATH}",
                parts.path
            ),
        );
    }
    if !requested_url.trim().is_empty()
        && url::comparable(requested_url) != url::comparable(final_url)
    {
        p.push(
            Severity::Error,
            "7.1.9",
            "redirected",
            format!(
                "{requested_url} redirected to {final_url}: requirement 9 asks for the well-known URL to serve the document directly"
            ),
        );
    }
}

const TOP_LEVEL: &[&str] = &[
    "canonical_url",
    "distributions",
    "last_updated",
    "list_on_CSAF_aggregators",
    "metadata_version",
    "mirror_on_CSAF_aggregators",
    "public_openpgp_keys",
    "publisher",
    "role",
];
const REQUIRED: &[&str] = &[
    "canonical_url",
    "last_updated",
    "list_on_CSAF_aggregators",
    "mirror_on_CSAF_aggregators",
    "metadata_version",
    "publisher",
    "role",
];
const ROLES: &[&str] = &["csaf_publisher", "csaf_provider", "csaf_trusted_provider"];
const CATEGORIES: &[&str] = &[
    "coordinator",
    "discoverer",
    "other",
    "translator",
    "user",
    "vendor",
];
const TLP_LABELS: &[&str] = &["UNLABELED", "WHITE", "GREEN", "AMBER", "RED"];

fn check_document(p: &mut Problems, obj: &Map<String, Value>, f: &mut CsafFindings) {
    for key in REQUIRED {
        if !obj.contains_key(*key) {
            let hint = obj
                .keys()
                .find(|k| k.eq_ignore_ascii_case(key))
                .map(|k| format!(" (found {k:?}: field names are case-sensitive)"))
                .unwrap_or_default();
            p.error(
                "missing-field",
                format!("the required field {key} is missing{hint}"),
            );
        }
    }
    for key in obj.keys() {
        if TOP_LEVEL.contains(&key.as_str()) {
            continue;
        }
        let hint = if key == "pgp_keys" {
            " (pgp_keys is the pre-release name: CSAF 2.0 calls it public_openpgp_keys)"
        } else {
            ""
        };
        p.warning(
            "unknown-field",
            format!(
                "the field {key:?} is not defined by the CSAF 2.0 provider metadata schema{hint}"
            ),
        );
    }
    if let Some(v) = obj.get("canonical_url") {
        if let Some(u) = string(p, v, "/canonical_url") {
            f.canonical_url = Some(u.to_string());
            if !is_uri(u) || !u.ends_with("/provider-metadata.json") {
                p.error(
                    "invalid-canonical-url",
                    format!("canonical_url {u:?} must be a URL ending in /provider-metadata.json"),
                );
            } else if !u.to_ascii_lowercase().starts_with("https://") {
                p.push(
                    Severity::Warning,
                    "7.1.3",
                    "canonical-url-not-https",
                    format!("canonical_url {u:?} does not use HTTPS (requirement 3: TLS)"),
                );
            }
        }
    }
    if let Some(v) = obj.get("last_updated") {
        if let Some(s) = string(p, v, "/last_updated") {
            if OffsetDateTime::parse(s, &Rfc3339).is_err() {
                p.error(
                    "invalid-last-updated",
                    format!("last_updated {s:?} is not an RFC 3339 date-time (e.g. 2024-01-24T20:20:56Z)"),
                );
            }
        }
    }
    for key in ["list_on_CSAF_aggregators", "mirror_on_CSAF_aggregators"] {
        if let Some(v) = obj.get(key) {
            if !v.is_boolean() {
                wrong_type(p, &format!("/{key}"), "a boolean", v);
            }
        }
    }
    if let Some(v) = obj.get("metadata_version") {
        if let Some(s) = string(p, v, "/metadata_version") {
            if s != "2.0" {
                p.error(
                    "wrong-metadata-version",
                    format!("metadata_version is {s:?}; CSAF 2.0 provider metadata has \"2.0\""),
                );
            }
        }
    }
    if let Some(v) = obj.get("publisher") {
        check_publisher(p, v, f);
    }
    if let Some(v) = obj.get("role") {
        if let Some(s) = string(p, v, "/role") {
            f.role = Some(s.to_string());
            if !ROLES.contains(&s) {
                p.error(
                    "invalid-role",
                    format!("role {s:?} is not one of {}", ROLES.join(", ")),
                );
            }
        }
    }
    if let Some(v) = obj.get("distributions") {
        f.distributions = check_distributions(p, v);
    }
    if let Some(v) = obj.get("public_openpgp_keys") {
        f.openpgp_keys = check_keys(p, v);
    }
    check_role_needs(p, f, obj);
}

fn check_publisher(p: &mut Problems, v: &Value, f: &mut CsafFindings) {
    let Some(o) = v.as_object() else {
        wrong_type(p, "/publisher", "an object", v);
        return;
    };
    for key in ["category", "name", "namespace"] {
        if !o.contains_key(key) {
            p.error(
                "missing-field",
                format!("the required field publisher.{key} is missing"),
            );
        }
    }
    if let Some(c) = o.get("category") {
        if let Some(c) = string(p, c, "/publisher/category") {
            if !CATEGORIES.contains(&c) {
                p.error(
                    "invalid-publisher-category",
                    format!(
                        "publisher.category {c:?} is not one of {}",
                        CATEGORIES.join(", ")
                    ),
                );
            }
        }
    }
    if let Some(n) = o.get("name") {
        if let Some(n) = string(p, n, "/publisher/name") {
            f.publisher = Some(n.to_string());
            if n.is_empty() {
                p.error("empty-field", "publisher.name is empty".into());
            }
        }
    }
    if let Some(ns) = o.get("namespace") {
        if let Some(ns) = string(p, ns, "/publisher/namespace") {
            if !is_uri(ns) {
                p.error(
                    "invalid-uri",
                    format!("publisher.namespace {ns:?} is not a URI"),
                );
            }
        }
    }
    for key in ["contact_details", "issuing_authority"] {
        if let Some(x) = o.get(key) {
            if string(p, x, &format!("/publisher/{key}")) == Some("") {
                p.error("empty-field", format!("publisher.{key} is empty"));
            }
        }
    }
}

/// Checks `distributions`; returns how many entries it has.
fn check_distributions(p: &mut Problems, v: &Value) -> usize {
    let Some(list) = v.as_array() else {
        wrong_type(p, "/distributions", "an array", v);
        return 0;
    };
    if list.is_empty() {
        p.error(
            "empty-array",
            "distributions is empty; the schema asks for at least one distribution".into(),
        );
    }
    unique(p, list, "/distributions");
    for (i, d) in list.iter().enumerate() {
        let at = format!("/distributions/{i}");
        let Some(o) = d.as_object() else {
            wrong_type(p, &at, "an object", d);
            continue;
        };
        if o.is_empty() {
            p.error(
                "empty-distribution",
                format!("{at} is empty: give a directory_url or rolie"),
            );
        }
        if let Some(u) = o.get("directory_url") {
            uri_field(p, u, &format!("{at}/directory_url"), false);
        }
        if let Some(r) = o.get("rolie") {
            check_rolie(p, r, &format!("{at}/rolie"));
        }
    }
    list.len()
}

fn check_rolie(p: &mut Problems, v: &Value, at: &str) {
    let Some(o) = v.as_object() else {
        wrong_type(p, at, "an object", v);
        return;
    };
    match o.get("feeds") {
        None => p.error(
            "missing-field",
            format!("the required field {at}/feeds is missing"),
        ),
        Some(feeds) => {
            if let Some(list) = non_empty_array(p, feeds, &format!("{at}/feeds")) {
                for (i, feed) in list.iter().enumerate() {
                    check_feed(p, feed, &format!("{at}/feeds/{i}"));
                }
            }
        }
    }
    for key in ["categories", "services"] {
        if let Some(x) = o.get(key) {
            let here = format!("{at}/{key}");
            if let Some(list) = non_empty_array(p, x, &here) {
                for (i, u) in list.iter().enumerate() {
                    uri_field(p, u, &format!("{here}/{i}"), true);
                }
            }
        }
    }
}

fn check_feed(p: &mut Problems, v: &Value, at: &str) {
    let Some(o) = v.as_object() else {
        wrong_type(p, at, "an object", v);
        return;
    };
    match o.get("tlp_label") {
        None => p.error(
            "missing-field",
            format!("the required field {at}/tlp_label is missing"),
        ),
        Some(t) => {
            if let Some(t) = string(p, t, &format!("{at}/tlp_label")) {
                if !TLP_LABELS.contains(&t) {
                    p.error(
                        "invalid-tlp-label",
                        format!(
                            "{at}/tlp_label {t:?} is not one of {}",
                            TLP_LABELS.join(", ")
                        ),
                    );
                }
            }
        }
    }
    match o.get("url") {
        None => p.error(
            "missing-field",
            format!("the required field {at}/url is missing"),
        ),
        Some(u) => uri_field(p, u, &format!("{at}/url"), true),
    }
    if let Some(s) = o.get("summary") {
        string(p, s, &format!("{at}/summary"));
    }
}

/// Checks `public_openpgp_keys`; returns how many entries it has.
fn check_keys(p: &mut Problems, v: &Value) -> usize {
    let Some(list) = v.as_array() else {
        wrong_type(p, "/public_openpgp_keys", "an array", v);
        return 0;
    };
    for (i, k) in list.iter().enumerate() {
        let at = format!("/public_openpgp_keys/{i}");
        let Some(o) = k.as_object() else {
            wrong_type(p, &at, "an object", k);
            continue;
        };
        match o.get("url") {
            None => p.error(
                "missing-field",
                format!("the required field {at}/url is missing"),
            ),
            Some(u) => uri_field(p, u, &format!("{at}/url"), false),
        }
        if let Some(fp) = o.get("fingerprint") {
            if let Some(fp) = string(p, fp, &format!("{at}/fingerprint")) {
                if fp.len() < 40 || !fp.bytes().all(|b| b.is_ascii_hexdigit()) {
                    p.error(
                        "invalid-fingerprint",
                        format!("{at}/fingerprint must be at least 40 hexadecimal digits without spaces"),
                    );
                }
            }
        }
    }
    list.len()
}

/// What the role asks beyond the schema (sections 7.2.2 and 7.2.3).
fn check_role_needs(p: &mut Problems, f: &CsafFindings, obj: &Map<String, Value>) {
    let role = f.role.as_deref();
    if matches!(role, Some("csaf_provider" | "csaf_trusted_provider"))
        && !obj.contains_key("distributions")
    {
        p.push(
            Severity::Error,
            "7.2.2",
            "no-distributions",
            "the role is a CSAF provider, which distributes its documents by directory (requirements 11-14) or ROLIE feed (15-17), but distributions is missing, so no retriever can find them".into(),
        );
    }
    if role == Some("csaf_trusted_provider") && f.openpgp_keys == 0 {
        p.push(
            Severity::Warning,
            "7.1.20",
            "no-openpgp-keys",
            "the role is csaf_trusted_provider, which must make its public OpenPGP key available (requirement 20), but public_openpgp_keys lists none".into(),
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Requirement 8: security.txt

/// The `CSAF` fields of a security.txt and what requirement 8 makes of them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecurityTxtCsaf {
    /// Values of the `CSAF` fields, in order.
    pub urls: Vec<String>,
    pub problems: Vec<Problem>,
}

/// Checks the `CSAF` fields of a security.txt (requirement 8). Comments, the OpenPGP
/// cleartext-signature framing and dash-escaping are understood; the rest of RFC 9116 is the
/// securitytxt check's job. Only the first [`MAX_METADATA_BYTES`] are read.
pub fn check_security_txt_csaf(security_txt: &str) -> SecurityTxtCsaf {
    let mut end = security_txt.len().min(MAX_METADATA_BYTES);
    while !security_txt.is_char_boundary(end) {
        end -= 1;
    }
    let security_txt = &security_txt[..end];
    let mut urls = Vec::new();
    let mut in_signature = false;
    for line in security_txt.lines().take(100_000) {
        let line = line.trim();
        if line.starts_with("-----BEGIN PGP SIGNATURE") {
            in_signature = true;
        } else if line.starts_with("-----END PGP SIGNATURE") {
            in_signature = false;
        }
        if in_signature || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("- ").unwrap_or(line);
        if let Some((name, value)) = line.split_once(':') {
            if name.trim().eq_ignore_ascii_case("csaf") && urls.len() < 1000 {
                urls.push(value.trim().to_string());
            }
        }
    }
    let mut p = Problems::default();
    let mut req8 = |code, msg: String| p.push(Severity::Error, "7.1.8", code, msg);
    if urls.is_empty() {
        req8(
            "no-csaf-field",
            "security.txt has no CSAF field pointing to the provider-metadata.json".into(),
        );
    }
    for u in &urls {
        if !u.to_ascii_lowercase().starts_with("https://") {
            req8(
                "csaf-field-not-https",
                format!("the CSAF field {u:?} does not begin with https://"),
            );
        }
        let path_ok =
            url::split(u).is_some_and(|parts| parts.path.ends_with("/provider-metadata.json"));
        if !path_ok {
            req8(
                "csaf-field-not-provider-metadata",
                format!("the CSAF field {u:?} does not point to a provider-metadata.json"),
            );
        }
    }
    let well_known = urls
        .iter()
        .position(|u| url::split(u).is_some_and(|parts| parts.path == WELL_KNOWN_PATH));
    if let Some(i) = well_known.filter(|i| *i > 0) {
        req8(
            "well-known-not-first",
            format!(
                "the CSAF field with the well-known URL ({}) must be the first CSAF field, it is number {}",
                urls[i],
                i + 1
            ),
        );
    }
    if urls.len() > 1 {
        p.push(
            Severity::Warning,
            "7.1.8",
            "several-csaf-fields",
            format!(
                "security.txt has {} CSAF fields; more than one SHOULD NOT be used for long",
                urls.len()
            ),
        );
    }
    SecurityTxtCsaf {
        urls,
        problems: p.finish(),
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers

/// What a JSON value is, with its article: "an array", "a string", "null".
fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn wrong_type(p: &mut Problems, at: &str, want: &str, got: &Value) {
    p.error(
        "wrong-type",
        format!("{at} must be {want}, not {}", kind(got)),
    );
}

fn string<'a>(p: &mut Problems, v: &'a Value, at: &str) -> Option<&'a str> {
    let s = v.as_str();
    if s.is_none() {
        wrong_type(p, at, "a string", v);
    }
    s
}

fn non_empty_array<'a>(p: &mut Problems, v: &'a Value, at: &str) -> Option<&'a Vec<Value>> {
    let Some(list) = v.as_array() else {
        wrong_type(p, at, "an array", v);
        return None;
    };
    if list.is_empty() {
        p.error("empty-array", format!("{at} must have at least one item"));
    }
    unique(p, list, at);
    Some(list)
}

/// `uniqueItems`; only checked up to 256 items, which no real provider exceeds.
fn unique(p: &mut Problems, list: &[Value], at: &str) {
    if list.len() > 256 {
        return;
    }
    for (i, a) in list.iter().enumerate() {
        if let Some(j) = list[i + 1..].iter().position(|b| b == a) {
            p.error(
                "duplicate-items",
                format!(
                    "{at}/{i} and {at}/{} are equal; items must be unique",
                    i + 1 + j
                ),
            );
            return;
        }
    }
}

fn uri_field(p: &mut Problems, v: &Value, at: &str, json: bool) {
    let Some(u) = string(p, v, at) else { return };
    if !is_uri(u) {
        p.error("invalid-uri", format!("{at} {u:?} is not a URI"));
    } else if json && !u.ends_with(".json") {
        p.error(
            "invalid-uri",
            format!("{at} {u:?} must be the URL of a .json file"),
        );
    }
}

/// An absolute URI (RFC 3986 `scheme ":" hier-part`), checked for its scheme and for characters
/// a URI cannot contain.
fn is_uri(s: &str) -> bool {
    let Some((scheme, rest)) = s.split_once(':') else {
        return false;
    };
    let mut c = scheme.chars();
    c.next().is_some_and(|c| c.is_ascii_alphabetic())
        && c.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        && !rest.is_empty()
        && !rest.chars().any(|c| {
            c.is_whitespace()
                || c.is_control()
                || matches!(c, '<' | '>' | '"' | '{' | '}' | '|' | '\\' | '^' | '`')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const WK: &str = "https://example.com/.well-known/csaf/provider-metadata.json";

    const GOOD: &str = r#"{
      "canonical_url": "https://example.com/.well-known/csaf/provider-metadata.json",
      "distributions": [{"directory_url": "https://example.com/.well-known/csaf/"}],
      "last_updated": "2024-01-24T20:20:56.169Z",
      "list_on_CSAF_aggregators": true,
      "metadata_version": "2.0",
      "mirror_on_CSAF_aggregators": true,
      "publisher": {"category": "vendor", "name": "Example", "namespace": "https://example.com"},
      "role": "csaf_provider"
    }"#;

    fn codes(f: &[Problem]) -> Vec<&'static str> {
        f.iter().map(|p| p.code).collect()
    }

    #[test]
    fn good_document() {
        let f = check_provider_metadata(GOOD.as_bytes(), WK, WK);
        assert!(f.problems.is_empty(), "{:?}", f.problems);
        assert!(f.is_valid());
        assert_eq!(f.role.as_deref(), Some("csaf_provider"));
        assert_eq!(f.distributions, 1);
        assert!(f.summary().starts_with("valid"), "{}", f.summary());
    }

    #[test]
    fn location_rules() {
        let elsewhere = "http://example.com/csaf/provider-metadata.json";
        let f = check_provider_metadata(GOOD.as_bytes(), WK, elsewhere);
        let c = codes(&f.problems);
        assert!(c.contains(&"not-https"));
        assert!(c.contains(&"not-well-known"));
        assert!(c.contains(&"redirected"));
        assert!(c.contains(&"canonical-url-mismatch"));
        assert!(f.problems.iter().any(|p| p.section == "7.1.9"));
    }

    #[test]
    fn schema_problems() {
        let doc = r#"{"canonical_url": "https://x.test/meta.json", "last_updated": "yesterday",
            "list_on_csaf_aggregators": true, "metadata_version": "2.1", "mirror_on_CSAF_aggregators": "yes",
            "publisher": {"category": "vendor", "name": ""}, "role": "csaf_provider", "pgp_keys": [],
            "distributions": [{"rolie": {"feeds": [{"tlp_label": "CLEAR", "url": "https://x.test/feed"}]}}, {}],
            "public_openpgp_keys": [{"fingerprint": "ABCD"}]}"#;
        let f = check_provider_metadata(doc.as_bytes(), "", WK);
        let c = codes(&f.problems);
        for want in [
            "invalid-canonical-url",
            "invalid-last-updated",
            "missing-field",
            "wrong-metadata-version",
            "wrong-type",
            "empty-field",
            "unknown-field",
            "invalid-tlp-label",
            "invalid-uri",
            "empty-distribution",
            "invalid-fingerprint",
        ] {
            assert!(c.contains(&want), "{want} not in {c:?}");
        }
        assert!(f
            .problems
            .iter()
            .any(|p| p.message.contains("case-sensitive")));
        assert!(f
            .problems
            .iter()
            .any(|p| p.message.contains("public_openpgp_keys")));
        assert!(!f.is_valid());
    }

    #[test]
    fn provider_roles_need_distributions() {
        let doc = GOOD.replace(
            r#""distributions": [{"directory_url": "https://example.com/.well-known/csaf/"}],"#,
            "",
        );
        let doc = doc.replace("csaf_provider", "csaf_trusted_provider");
        let f = check_provider_metadata(doc.as_bytes(), WK, WK);
        assert_eq!(
            codes(&f.problems),
            vec!["no-distributions", "no-openpgp-keys"]
        );
        let publisher = doc.replace("csaf_trusted_provider", "csaf_publisher");
        let f = check_provider_metadata(publisher.as_bytes(), WK, WK);
        assert!(f.problems.is_empty(), "{:?}", f.problems);
    }

    #[test]
    fn not_json_or_not_object() {
        let f = check_provider_metadata(b"<html>404</html>", WK, WK);
        assert_eq!(codes(&f.problems), vec!["not-json"]);
        let f = check_provider_metadata(b"[1,2]", WK, WK);
        assert_eq!(codes(&f.problems), vec!["not-object"]);
        let big = vec![b' '; MAX_METADATA_BYTES + 1];
        let f = check_provider_metadata(&big, WK, WK);
        assert_eq!(codes(&f.problems), vec!["too-large"]);
        let deep = "[".repeat(100_000);
        let f = check_provider_metadata(deep.as_bytes(), WK, WK);
        assert_eq!(codes(&f.problems), vec!["not-json"]);
    }

    #[test]
    fn security_txt_fields() {
        let ok = check_security_txt_csaf(&format!(
            "# comment\nContact: mailto:security@example.com\nCSAF: {WK}\n"
        ));
        assert_eq!(ok.urls, vec![WK]);
        assert!(ok.problems.is_empty(), "{:?}", ok.problems);
        let bad = check_security_txt_csaf(&format!(
            "csaf: http://example.com/advisories/index.json\nCSAF: {WK}\n"
        ));
        assert_eq!(
            codes(&bad.problems),
            vec![
                "csaf-field-not-https",
                "csaf-field-not-provider-metadata",
                "well-known-not-first",
                "several-csaf-fields"
            ]
        );
        let none = check_security_txt_csaf("Contact: mailto:a@b.test\n");
        assert_eq!(codes(&none.problems), vec!["no-csaf-field"]);
    }

    #[test]
    fn uris() {
        assert!(is_uri("https://example.com/x"));
        assert!(is_uri("urn:isbn:123"));
        assert!(!is_uri("example.com/x"));
        assert!(!is_uri("https://exa mple.com"));
        assert!(!is_uri("1http://x"));
    }
}
