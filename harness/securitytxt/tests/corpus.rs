//! Runs every file of `tests/corpus/` against the expectations in `corpus.toml`, plus the
//! cases that are generated rather than committed (a file over the size cap), and checks
//! that the corpus as a whole exercises every finding code.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use hilsec_securitytxt::{check_bytes, codes, Context, Report};
use serde::Deserialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

#[derive(Deserialize)]
struct Manifest {
    now: String,
    case: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    file: String,
    errors: Vec<String>,
    recommendations: Vec<String>,
    url: Option<String>,
    content_type: Option<String>,
    now: Option<String>,
    #[serde(default)]
    lines: BTreeMap<String, Vec<usize>>,
}

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus")
}

fn manifest() -> Manifest {
    let text = std::fs::read_to_string(corpus_dir().join("corpus.toml")).expect("corpus.toml");
    toml::from_str(&text).expect("corpus.toml parses")
}

fn parse_time(s: &str) -> OffsetDateTime {
    OffsetDateTime::parse(s, &Rfc3339).expect("RFC 3339 time in corpus.toml")
}

fn codes_of(list: &[hilsec_securitytxt::Finding]) -> BTreeSet<String> {
    list.iter().map(|f| f.code.clone()).collect()
}

fn run_case(m: &Manifest, case: &Case) -> Result<Report, String> {
    let bytes = std::fs::read(corpus_dir().join(&case.file)).map_err(|e| e.to_string())?;
    let mut ctx = Context::new().with_now(parse_time(case.now.as_deref().unwrap_or(&m.now)));
    ctx.url = case.url.clone();
    ctx.content_type = case.content_type.clone();
    let report = check_bytes(&bytes, &ctx);

    let want_e: BTreeSet<String> = case.errors.iter().cloned().collect();
    let want_r: BTreeSet<String> = case.recommendations.iter().cloned().collect();
    let mut problems = Vec::new();
    if codes_of(&report.errors) != want_e {
        problems.push(format!("errors: want {want_e:?}, got {:#?}", report.errors));
    }
    if codes_of(&report.recommendations) != want_r {
        problems.push(format!(
            "recommendations: want {want_r:?}, got {:?}",
            codes_of(&report.recommendations)
        ));
    }
    if report.valid != want_e.is_empty() {
        problems.push(format!("valid is {} with errors {want_e:?}", report.valid));
    }
    for (code, lines) in &case.lines {
        for line in lines {
            let found = report
                .errors
                .iter()
                .chain(&report.recommendations)
                .any(|f| &f.code == code && f.line == Some(*line));
            if !found {
                problems.push(format!("no `{code}` finding on line {line}"));
            }
        }
    }
    if problems.is_empty() {
        Ok(report)
    } else {
        Err(problems.join("\n  "))
    }
}

#[test]
fn corpus_matches_manifest() {
    let m = manifest();
    let mut failures = Vec::new();
    for case in &m.case {
        if let Err(e) = run_case(&m, case) {
            failures.push(format!("{}:\n  {e}", case.file));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} corpus files failed:\n{}",
        failures.len(),
        m.case.len(),
        failures.join("\n")
    );
}

#[test]
fn every_file_is_in_the_manifest_and_vice_versa() {
    let m = manifest();
    let listed: BTreeSet<&str> = m.case.iter().map(|c| c.file.as_str()).collect();
    assert_eq!(listed.len(), m.case.len(), "a file is listed twice");
    let mut on_disk = BTreeSet::new();
    for entry in std::fs::read_dir(corpus_dir()).expect("corpus dir") {
        let name = entry
            .expect("dir entry")
            .file_name()
            .to_string_lossy()
            .into_owned();
        if name != "corpus.toml" {
            on_disk.insert(name);
        }
    }
    let listed: BTreeSet<String> = listed.into_iter().map(String::from).collect();
    assert_eq!(on_disk, listed);
    assert!(
        listed.len() >= 30,
        "the corpus should hold at least 30 files"
    );
}

#[test]
fn corpus_covers_every_code() {
    let m = manifest();
    let mut seen_e = BTreeSet::new();
    let mut seen_r = BTreeSet::new();
    for case in &m.case {
        seen_e.extend(case.errors.iter().cloned());
        seen_r.extend(case.recommendations.iter().cloned());
    }
    // too_large is covered by the generated case below.
    seen_e.insert(codes::TOO_LARGE.to_string());
    let all_errors = [
        codes::NO_CONTACT,
        codes::NO_EXPIRE,
        codes::MULTI_EXPIRE,
        codes::INVALID_EXPIRY,
        codes::EXPIRED,
        codes::INVALID_URI_SCHEME,
        codes::NO_HTTPS,
        codes::MULTI_LANG,
        codes::INVALID_LANG,
        codes::INVALID_LINE,
        codes::EMPTY_VALUE,
        codes::NOT_UTF8,
        codes::NO_CANONICAL_MATCH,
        codes::SIGNED_FORMAT_ISSUE,
        codes::INVALID_MEDIA,
        codes::LOCATION,
        codes::TOO_LARGE,
        codes::BOM_IN_FILE,
        codes::NO_LINE_SEPARATORS,
    ];
    let all_recs = [
        codes::LONG_EXPIRY,
        codes::NO_ENCRYPTION,
        codes::NOT_SIGNED,
        codes::NO_CANONICAL,
    ];
    for c in all_errors {
        assert!(seen_e.contains(c), "no corpus file expects error `{c}`");
    }
    for c in all_recs {
        assert!(
            seen_r.contains(c),
            "no corpus file expects recommendation `{c}`"
        );
    }
}

#[test]
fn fully_valid_signed_file_parses_all_fields() {
    let m = manifest();
    let case = m
        .case
        .iter()
        .find(|c| c.file == "valid_full_signed.txt")
        .expect("case");
    let r = run_case(&m, case).expect("valid_full_signed.txt");
    assert!(r.valid);
    let f = &r.fields;
    assert_eq!(f.contacts.len(), 3);
    assert_eq!(f.contacts[0], "mailto:security@device.example");
    assert_eq!(f.preferred_languages, vec!["en", "de", "fr"]);
    assert_eq!(f.csaf.len(), 1);
    assert_eq!(f.canonical.len(), 1);
    assert_eq!(f.expires.as_deref(), Some("2026-01-01T00:00:00Z"));
    assert!(f.expires_at.is_some());
    let sig = r.signature.as_ref().expect("signature info");
    assert!(sig.armour_ok);
    assert_eq!(sig.hash_algorithms, vec!["SHA512"]);
}

#[test]
fn unknown_fields_are_kept() {
    let bytes = std::fs::read(corpus_dir().join("valid_unknown_fields.txt")).expect("file");
    let r = check_bytes(
        &bytes,
        &Context::new().with_now(parse_time("2025-06-01T00:00:00Z")),
    );
    let names: Vec<_> = r
        .fields
        .extensions
        .iter()
        .map(|e| e.name.as_str())
        .collect();
    assert_eq!(names, vec!["X-Bug-Bounty", "Support-Period-End"]);
}

fn huge_file() -> Vec<u8> {
    // A valid head, then megabytes of comments, then a second Expires that must not be
    // seen because it lies beyond the cap.
    let mut v = b"Contact: mailto:security@example.com\nExpires: 2026-01-01T00:00:00Z\n".to_vec();
    let filler = b"# filler filler filler filler filler filler filler filler filler filler\n";
    while v.len() < 4 * 1024 * 1024 {
        v.extend_from_slice(filler);
    }
    v.extend_from_slice(b"Expires: 2030-01-01T00:00:00Z\n");
    v
}

#[test]
fn huge_file_is_capped() {
    let bytes = huge_file();
    let r = check_bytes(
        &bytes,
        &Context::new().with_now(parse_time("2025-06-01T00:00:00Z")),
    );
    let errors = codes_of(&r.errors);
    assert_eq!(errors, BTreeSet::from([codes::TOO_LARGE.to_string()]));
    // The Expires beyond the cap was not read (no multi_expire).
    assert_eq!(r.fields.expires.as_deref(), Some("2026-01-01T00:00:00Z"));
    assert!(!r.valid);
}

#[cfg(feature = "cli")]
#[test]
fn huge_file_through_the_cli_reads_only_the_cap() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let path = dir.join("sectxt-huge.txt");
    std::fs::write(&path, huge_file()).expect("write temp file");
    let bytes = hilsec_securitytxt::cli::read_capped(&path).expect("read");
    assert_eq!(bytes.len(), hilsec_securitytxt::MAX_SIZE + 1);
    let mut out = Vec::new();
    let code = hilsec_securitytxt::cli::run_check_file_to(
        &mut out,
        &path,
        Some("2025-06-01T00:00:00Z"),
        true,
    )
    .expect("runs");
    assert_eq!(code, 1);
    let json: serde_json::Value = serde_json::from_slice(&out).expect("JSON output");
    assert_eq!(json["errors"][0]["code"], "too_large");
    let _ = std::fs::remove_file(&path);
}

#[cfg(feature = "cli")]
#[test]
fn cli_exit_codes() {
    let dir = corpus_dir();
    let now = Some("2025-06-01T00:00:00Z");
    let run_check_file = |path: &Path, now, json| {
        hilsec_securitytxt::cli::run_check_file_to(&mut Vec::new(), path, now, json)
    };
    assert_eq!(
        run_check_file(&dir.join("valid_minimal.txt"), now, false).ok(),
        Some(0)
    );
    assert_eq!(
        run_check_file(&dir.join("expired.txt"), now, true).ok(),
        Some(1)
    );
    let missing = run_check_file(&dir.join("does-not-exist.txt"), now, false).unwrap_err();
    assert_eq!(missing.exit_code(), 2);
    let bad_now = run_check_file(&dir.join("valid_minimal.txt"), Some("soon"), false).unwrap_err();
    assert_eq!(bad_now.exit_code(), 2);
}

#[test]
fn every_prefix_of_every_corpus_file_is_handled() {
    // Cheap robustness sweep: truncation at any byte must never panic.
    let now = parse_time("2025-06-01T00:00:00Z");
    let ctx = Context::new()
        .with_now(now)
        .with_url("https://device.example/.well-known/security.txt")
        .with_content_type("text/plain; charset=utf-8");
    for case in &manifest().case {
        let bytes = std::fs::read(corpus_dir().join(&case.file)).expect("file");
        for end in 0..bytes.len().min(2048) {
            let r = check_bytes(&bytes[..end], &ctx);
            assert_eq!(r.valid, r.errors.is_empty());
        }
    }
}
