//! The disclosure analyses against a corpus of realistic pages (`tests/data/disclosure/`):
//! policies good and bad, sign-in walls, support pages with every date form the heuristic
//! reads and pages it must not read a date from, CSAF provider metadata good and bad, and
//! security.txt files with CSAF fields. Every corpus file has a row in one of the tables below
//! stating the expected outcome; a file without a row fails the run.
//!
//! Then junk: random bytes and random HTML/JSON fragments, and large pathological inputs, to
//! show that no input makes an analysis panic or take unbounded time.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use hilsec_suites::disclosure::{
    analyse_policy, analyse_support, check_provider_metadata, check_security_txt_csaf,
    PolicyVerdict, Severity,
};
use time::macros::date;
use time::Date;

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/disclosure")
}

fn read(file: &str) -> Vec<u8> {
    let path = corpus_dir().join(file);
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

// ---------------------------------------------------------------------------------------------
// Disclosure policies

const POLICY_URL: &str = "https://www.example.com/security/vulnerability-disclosure-policy";

/// (file, final URL, sign-in wall, a substring of the first contact (None: no contact),
/// acknowledgement timeline found, status-update timeline found)
type PolicyRow = (
    &'static str,
    &'static str,
    bool,
    Option<&'static str>,
    bool,
    bool,
);

const POLICY: &[PolicyRow] = &[
    (
        "policy-good.html",
        POLICY_URL,
        false,
        Some("email: security@simplug.example"),
        true,
        true,
    ),
    (
        "policy-good.txt",
        "https://simhub.example/security.txt",
        false,
        Some("email: psirt@simhub.example"),
        true,
        true,
    ),
    (
        "policy-table.html",
        POLICY_URL,
        false,
        Some("form: https://www.contoso-home.example/security/report-a-vulnerability"),
        true,
        true,
    ),
    (
        "policy-dl.html",
        POLICY_URL,
        false,
        Some("email: psirt@acme-sensors.example"),
        true,
        true,
    ),
    (
        "policy-hackerone.html",
        POLICY_URL,
        false,
        Some("form: https://hackerone.com/globex-smart-home"),
        true,
        true,
    ),
    (
        "policy-entities.html",
        POLICY_URL,
        false,
        Some("email: security@widgets.example"),
        true,
        true,
    ),
    (
        "login-wall.html",
        "https://portal.initech.example/login?returnTo=%2Fsecurity%2Fdisclosure",
        true,
        Some("email: support@initech.example"),
        false,
        false,
    ),
    (
        "login-sso.html",
        "https://sso.example.com/auth/realms/corp/protocol/openid-connect/auth?client_id=www",
        true,
        None,
        false,
        false,
    ),
    (
        "policy-no-timelines.html",
        POLICY_URL,
        false,
        Some("email: security@umbrella-devices.example"),
        false,
        false,
    ),
    (
        "policy-ack-only.html",
        POLICY_URL,
        false,
        Some("email: psirt@hooli-iot.example"),
        true,
        false,
    ),
    (
        "policy-no-contact.html",
        POLICY_URL,
        false,
        None,
        true,
        true,
    ),
    (
        "policy-hall-of-fame.html",
        POLICY_URL,
        false,
        Some("email: bugs@stark-home.example"),
        false,
        true,
    ),
    (
        "policy-pdf-landing.html",
        "https://www.example.com/legal",
        false,
        None,
        false,
        false,
    ),
];

#[test]
fn policy_corpus() {
    let mut failures = Vec::new();
    for &(file, url, wall, contact, ack, status) in POLICY {
        let f = analyse_policy(read(file), url);
        let verdict = f.verdict();
        let mut why = Vec::new();
        if f.login_wall != wall {
            why.push(format!(
                "login_wall {} (signals {:?})",
                f.login_wall, f.login_signals
            ));
        }
        match (contact, f.contacts.first()) {
            (None, None) => {}
            (Some(want), Some(got)) if got.contains(want) => {}
            (want, _) => why.push(format!("contacts {:?}, wanted {want:?}", f.contacts)),
        }
        if f.acknowledgement.is_some() != ack {
            why.push(format!("acknowledgement {:?}", f.acknowledgement));
        }
        if f.status_updates.is_some() != status {
            why.push(format!("status_updates {:?}", f.status_updates));
        }
        let complete = contact.is_some() && ack && status;
        let verdict_ok = match &verdict {
            PolicyVerdict::LoginWall(_) => wall,
            PolicyVerdict::Complete(_) => !wall && complete,
            PolicyVerdict::Incomplete(_) => !(wall || complete),
        };
        if !verdict_ok {
            why.push(format!("verdict {verdict:?}"));
        }
        if verdict.message().is_empty() {
            why.push("empty verdict message".into());
        }
        if !why.is_empty() {
            failures.push(format!("{file}: {}", why.join("; ")));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

// ---------------------------------------------------------------------------------------------
// Support periods

/// (file, expected end date, a period without an end date is reported)
const SUPPORT: &[(&str, Option<Date>, bool)] = &[
    ("support-dmy.html", Some(date!(2030 - 12 - 31)), false),
    ("support-iso.txt", Some(date!(2030 - 12 - 31)), false),
    (
        "support-month-numeric.html",
        Some(date!(2030 - 12 - 31)),
        false,
    ),
    (
        "support-month-name.html",
        Some(date!(2030 - 12 - 31)),
        false,
    ),
    ("support-ends-on.html", Some(date!(2031 - 03 - 01)), false),
    ("support-us-date.html", Some(date!(2031 - 03 - 01)), false),
    ("support-table.html", Some(date!(2032 - 03 - 31)), false),
    ("support-year-only.txt", Some(date!(2029 - 12 - 31)), false),
    (
        "support-numeric-dmy.txt",
        Some(date!(2030 - 12 - 31)),
        false,
    ),
    (
        "support-eol-quarter.html",
        Some(date!(2029 - 09 - 30)),
        false,
    ),
    ("support-duration.html", None, true),
    ("support-lifetime.html", None, true),
    ("support-as-long-as.txt", None, true),
    ("support-unrelated-dates.html", None, false),
];

#[test]
fn support_corpus() {
    let mut failures = Vec::new();
    for &(file, end, open) in SUPPORT {
        let f = analyse_support(read(file));
        if f.end_date != end {
            failures.push(format!(
                "{file}: end date {:?} (snippet {:?}), wanted {end:?}",
                f.end_date, f.snippet
            ));
        }
        if f.end_date.is_some() != f.snippet.is_some() {
            failures.push(format!("{file}: end date without snippet or the reverse"));
        }
        if f.period_without_end.is_some() != open {
            failures.push(format!(
                "{file}: period without end {:?}, wanted {open}",
                f.period_without_end
            ));
        }
        if f.message().is_empty() {
            failures.push(format!("{file}: empty message"));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

// ---------------------------------------------------------------------------------------------
// CSAF

const WELL_KNOWN: &str = "https://www.example.com/.well-known/csaf/provider-metadata.json";

/// (file, URL it was served from, valid (no error), codes that must be reported)
type CsafRow = (&'static str, &'static str, bool, &'static [&'static str]);

const CSAF: &[CsafRow] = &[
    (
        "csaf-good.json",
        "https://www.simplug.example/.well-known/csaf/provider-metadata.json",
        true,
        &[],
    ),
    (
        "csaf-trusted-rolie.json",
        "https://psirt.contoso-home.example/.well-known/csaf/provider-metadata.json",
        true,
        &[],
    ),
    (
        "csaf-missing-fields.json",
        "https://www.globex.example/.well-known/csaf/provider-metadata.json",
        false,
        &["missing-field"],
    ),
    (
        "csaf-draft-2.1.json",
        "https://www.initech.example/.well-known/csaf/provider-metadata.json",
        false,
        &[
            "wrong-metadata-version",
            "invalid-tlp-label",
            "invalid-publisher-category",
            "unknown-field",
        ],
    ),
    (
        "csaf-bad-types.json",
        WELL_KNOWN,
        false,
        &[
            "invalid-canonical-url",
            "wrong-type",
            "invalid-last-updated",
            "invalid-fingerprint",
            "invalid-role",
        ],
    ),
    ("csaf-not-json.html", WELL_KNOWN, false, &["not-json"]),
    (
        "csaf-provider-no-distributions.json",
        "https://www.hooli-iot.example/.well-known/csaf/provider-metadata.json",
        false,
        &["no-distributions"],
    ),
];

#[test]
fn csaf_corpus() {
    let mut failures = Vec::new();
    for &(file, served_from, valid, codes) in CSAF {
        let f = check_provider_metadata(&read(file), served_from, served_from);
        let got: BTreeSet<&str> = f.problems.iter().map(|p| p.code).collect();
        if f.is_valid() != valid {
            failures.push(format!(
                "{file}: valid {}, problems {:?}",
                f.is_valid(),
                f.problems
            ));
        }
        if valid && !f.problems.is_empty() {
            failures.push(format!("{file}: unexpected problems {:?}", f.problems));
        }
        for c in codes {
            if !got.contains(c) {
                failures.push(format!("{file}: {c} not among {got:?}"));
            }
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn csaf_served_elsewhere_breaks_requirement_9() {
    let f = check_provider_metadata(
        &read("csaf-good.json"),
        "https://www.simplug.example/.well-known/csaf/provider-metadata.json",
        "http://cdn.simplug.example/csaf/provider-metadata.json",
    );
    let req9: BTreeSet<&str> = f
        .problems
        .iter()
        .filter(|p| p.section == "7.1.9")
        .map(|p| p.code)
        .collect();
    assert_eq!(
        req9,
        BTreeSet::from(["not-https", "not-well-known", "redirected"])
    );
    assert!(!f.is_valid());
}

/// (file, codes of the problems reported, in order)
const SECURITY_TXT: &[(&str, &[&str])] = &[
    ("securitytxt-csaf-good.txt", &[]),
    (
        "securitytxt-csaf-bad.txt",
        &[
            "csaf-field-not-https",
            "csaf-field-not-provider-metadata",
            "well-known-not-first",
            "several-csaf-fields",
        ],
    ),
];

#[test]
fn security_txt_corpus() {
    for &(file, codes) in SECURITY_TXT {
        let text = String::from_utf8_lossy(&read(file)).into_owned();
        let r = check_security_txt_csaf(&text);
        let got: Vec<&str> = r.problems.iter().map(|p| p.code).collect();
        assert_eq!(got, codes, "{file}: {:?}", r.problems);
        assert!(!r.urls.is_empty(), "{file}");
    }
    let good =
        check_security_txt_csaf(&String::from_utf8_lossy(&read("securitytxt-csaf-good.txt")));
    // The signature block holds no fields, even where its base64 happens to contain "CSAF:".
    assert_eq!(
        good.urls,
        vec!["https://www.simplug.example/.well-known/csaf/provider-metadata.json"]
    );
}

#[test]
fn every_corpus_file_has_an_expectation() {
    let listed: BTreeSet<&str> = POLICY
        .iter()
        .map(|r| r.0)
        .chain(SUPPORT.iter().map(|r| r.0))
        .chain(CSAF.iter().map(|r| r.0))
        .chain(SECURITY_TXT.iter().map(|r| r.0))
        .collect();
    let present: BTreeSet<String> = std::fs::read_dir(corpus_dir())
        .unwrap_or_else(|e| panic!("listing the corpus: {e}"))
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let unlisted: Vec<&String> = present
        .iter()
        .filter(|f| !listed.contains(f.as_str()))
        .collect();
    let missing: Vec<&&str> = listed.iter().filter(|f| !present.contains(**f)).collect();
    assert!(
        unlisted.is_empty(),
        "corpus files without a row: {unlisted:?}"
    );
    assert!(
        missing.is_empty(),
        "rows without a corpus file: {missing:?}"
    );
    assert!(present.len() >= 25, "only {} corpus files", present.len());
}

// ---------------------------------------------------------------------------------------------
// Junk

/// Fragments that exercise the stripper's, the date reader's and the JSON checker's edges.
const PIECES: &[&str] = &[
    "<",
    ">",
    "</",
    "/>",
    "<a href=\"",
    "<a href='",
    "\"",
    "'",
    "=",
    "&",
    "&#",
    "&#x",
    ";",
    "&amp;",
    "&#64;",
    "&commat;",
    "&#xD800;",
    "&#1114112;",
    "<script>",
    "</script",
    "</script>",
    "<style>",
    "<template>",
    "<!--",
    "-->",
    "<!",
    "<?xml",
    "<h2>",
    "</h2>",
    "<dt>",
    "</dt>",
    "<td>",
    "<th>",
    "<tr>",
    "<br>",
    "<input type=password>",
    "<input type=",
    "<form action=/login>",
    "<p>",
    "mailto:",
    "mailto:%40",
    "@",
    "x@y.example",
    "[at]",
    "[dot]",
    "security",
    "vulnerability",
    "acknowledge",
    "publicly",
    "receipt",
    "within",
    "3",
    "48h",
    "five",
    "forty-eight",
    "business days",
    "status updates",
    "keep you informed",
    "every",
    "14 days",
    "weekly",
    "fix",
    "report",
    " to ",
    "contact",
    "sign in to continue",
    "until",
    "through",
    "ends on",
    "end of support",
    "31",
    "29",
    "February",
    "Dec.",
    "December",
    "2030",
    "1969",
    "2200",
    "12/2030",
    "2030-12-31",
    "31/12/2030",
    "02/30/2030",
    "Q4",
    "Q9",
    "lifetime",
    "as long as",
    "5 years",
    "from",
    "last updated",
    ". ",
    "! ",
    "? ",
    "e.g. ",
    "\n",
    "\r\n",
    "\n\n",
    ":",
    "|",
    "#",
    "====",
    "- ",
    "1. ",
    "é",
    "😀",
    "\u{1F}",
    "\u{FEFF}",
    "\u{A0}",
    "\u{200B}",
    "\0",
    "{",
    "}",
    "[",
    "]",
    "\"canonical_url\":",
    "\"publisher\":",
    "\"distributions\":",
    "\"rolie\":",
    "\"feeds\":",
    "\"public_openpgp_keys\":",
    "null",
    "true",
    "2.0",
    "\"2.0\"",
    ",",
    "CSAF:",
    "https://",
    "http://",
    "//",
    "/.well-known/csaf/provider-metadata.json",
    "-----BEGIN PGP SIGNATURE-----",
    " ",
    "  ",
];

fn junk(rng: &mut fastrand::Rng, i: usize) -> Vec<u8> {
    if i.is_multiple_of(3) {
        let len = rng.usize(0..800);
        return (0..len).map(|_| rng.u8(..)).collect();
    }
    let mut out = Vec::new();
    for _ in 0..rng.usize(0..120) {
        out.extend_from_slice(PIECES[rng.usize(0..PIECES.len())].as_bytes());
    }
    if i.is_multiple_of(5) && !out.is_empty() {
        // Cut anywhere, possibly inside a UTF-8 sequence.
        out.truncate(rng.usize(0..out.len()));
    }
    out
}

#[test]
fn junk_never_panics() {
    let mut rng = fastrand::Rng::with_seed(0x0d15_c105_ed00_2026);
    let urls = [
        POLICY_URL,
        "",
        "not a url",
        "https://login.example.com/",
        "https://[::1]:8443/auth?x",
        WELL_KNOWN,
        "https://é.example/😀",
    ];
    for i in 0..4000 {
        let body = junk(&mut rng, i);
        let url = urls[i % urls.len()];
        let p = analyse_policy(&body, url);
        assert!(!p.verdict().message().is_empty());
        for s in p
            .acknowledgement
            .iter()
            .chain(&p.status_updates)
            .chain(&p.contacts)
        {
            assert!(s.chars().count() <= 230, "snippet too long: {s}");
        }
        let s = analyse_support(&body);
        assert!(!s.message().is_empty());
        assert_eq!(s.end_date.is_some(), s.snippet.is_some());
        let c = check_provider_metadata(&body, url, url);
        assert!(!c.summary().is_empty());
        assert!(c.problems.len() <= 101);
        let t = check_security_txt_csaf(&String::from_utf8_lossy(&body));
        assert!(t.problems.iter().all(|p| p.severity == Severity::Error
            || matches!(p.code, "several-csaf-fields" | "too-many-problems")));
    }
}

#[test]
fn large_and_pathological_inputs_stay_bounded() {
    // Quadratic work would take hours at these sizes; the first input is over the 2 MiB cap.
    let big: Vec<Vec<u8>> = vec![
        "<a ".repeat(1_000_000).into_bytes(),
        "<a href=\"x".repeat(60_000).into_bytes(),
        "&#".repeat(300_000).into_bytes(),
        "<script>".repeat(80_000).into_bytes(),
        "<!--".repeat(150_000).into_bytes(),
        "We acknowledge 3 days and status updates every 7 days "
            .repeat(12_000)
            .into_bytes(),
        "security updates until 31 December 2030 "
            .repeat(15_000)
            .into_bytes(),
        "a@b.example ".repeat(50_000).into_bytes(),
        "<h2>x</h2>".repeat(60_000).into_bytes(),
        "x. Y".repeat(150_000).into_bytes(),
        format!("[{}]", "{\"a\":1},".repeat(80_000)).into_bytes(),
    ];
    let started = Instant::now();
    for body in &big {
        let p = analyse_policy(body, POLICY_URL);
        assert!(p.contacts.len() <= 20);
        let _ = analyse_support(body);
        let _ = check_provider_metadata(body, WELL_KNOWN, WELL_KNOWN);
        let _ = check_security_txt_csaf(&String::from_utf8_lossy(body));
    }
    // Linear work on 2 MiB inputs; generous enough for an unoptimised build on a busy machine.
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(240),
        "pathological inputs took {took:?}"
    );
}
