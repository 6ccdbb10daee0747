//! `junit.xml` through quick-junit, rendered from a whole run's [`ResultsFile`] (so a merged
//! folder gets the same file as one run): one `<testsuite>` per unit and suite, one
//! `<testcase>` per test.
//!
//! Unit identity travels as `<testsuite>` properties. Each test case carries its own properties
//! (`provision`, once per provision; `verdict`; `unit`; `model`) and, in `<system-out>`, its
//! verdict, message and evidence file as `[[ATTACHMENT|<out>/evidence/...]]`, the form GitLab's
//! and Jenkins' test views turn into a link. `<out>` is the output folder as hilsec was given
//! it: GitLab resolves attachment paths from the project folder a job runs in, which is where
//! CI runs hilsec (`--out results/shard-1`), and an absolute `--out` gives the absolute paths
//! Jenkins' attachments plugin wants. The suite also keeps `provisions:<test>` properties for
//! readers of earlier files.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use hilsec_core::results::{ResultsFile, UnitMeta};
use hilsec_core::test::Verdict;
use quick_junit::{NonSuccessKind, Property, Report, TestCase, TestCaseStatus, TestSuite};

use crate::files::write_atomically;
use crate::ReportError;

/// Writes `<out>/junit.xml` for `results`.
pub fn write(results: &ResultsFile, out: &Path) -> Result<(), ReportError> {
    let report = build(results, out);
    write_atomically(&out.join("junit.xml"), |w| {
        report.serialize(w).map_err(std::io::Error::other)
    })
}

/// Builds the report (separate from writing, so tests can look at it); evidence attachments
/// are named under `out`.
pub fn build(results: &ResultsFile, out_dir: &Path) -> Report {
    let mut report = Report::new("hilsec");
    report.set_time(Duration::from_millis(results.run.duration_ms));
    let units: HashMap<&str, &UnitMeta> = results
        .run
        .units
        .iter()
        .map(|u| (u.name.as_str(), u))
        .collect();
    let mut suites: Vec<TestSuite> = Vec::new();
    let mut by_name: HashMap<String, usize> = HashMap::new();
    for r in &results.tests {
        let name = format!("{}.{}", r.board, r.suite);
        let idx = match by_name.get(&name) {
            Some(i) => *i,
            None => {
                by_name.insert(name.clone(), suites.len());
                let mut s = TestSuite::new(name.as_str());
                if let Some(u) = units.get(r.board.as_str()) {
                    s.add_properties(identity_properties(u));
                }
                suites.push(s);
                suites.len() - 1
            }
        };
        let suite = &mut suites[idx];
        suite.add_property(Property::new(
            format!("provisions:{}", r.test),
            r.provisions.join("; "),
        ));
        let mut status = match r.verdict {
            Verdict::Pass => TestCaseStatus::success(),
            Verdict::Fail => TestCaseStatus::non_success(NonSuccessKind::Failure),
            Verdict::Error => TestCaseStatus::non_success(NonSuccessKind::Error),
            Verdict::Inconclusive | Verdict::NotApplicable => TestCaseStatus::skipped(),
        };
        if r.verdict != Verdict::Pass {
            status.set_message(format!("{}: {}", r.verdict, r.message));
            status.set_type(r.verdict.as_str());
        }
        let mut tc = TestCase::new(r.test.as_str(), status);
        tc.set_classname(name);
        tc.set_time(Duration::from_millis(r.duration_ms));
        tc.add_properties(
            r.provisions
                .iter()
                .map(|p| Property::new("provision", p.as_str())),
        );
        tc.add_property(Property::new("verdict", r.verdict.as_str()));
        tc.add_property(Property::new("unit", r.board.as_str()));
        tc.add_property(Property::new("model", r.model.as_str()));
        let mut text = format!(
            "verdict: {}\nmessage: {}\nprovisions: {}\n",
            r.verdict,
            r.message,
            r.provisions.join("; ")
        );
        if let Some(e) = &r.evidence {
            text.push_str(&format!(
                "evidence: {e}\n[[ATTACHMENT|{}]]\n",
                out_dir.join(e).display()
            ));
        }
        tc.set_system_out(text);
        suite.add_test_case(tc);
    }
    report.add_test_suites(suites);
    report
}

fn identity_properties(u: &UnitMeta) -> Vec<Property> {
    let mut p = vec![
        Property::new("board", u.name.as_str()),
        Property::new("model", u.model.as_str()),
    ];
    let opt = [
        ("manufacturer", &u.manufacturer),
        ("serial", &u.serial),
        ("mac", &u.mac),
        ("firmware", &u.firmware),
    ];
    for (k, v) in opt {
        if let Some(v) = v {
            p.push(Property::new(k, v.as_str()));
        }
    }
    p.push(Property::new(
        "board_file",
        u.board_file.display().to_string(),
    ));
    for f in &u.board_files {
        p.push(Property::new(
            format!("sha256:{}", f.path.display()),
            f.sha256.as_str(),
        ));
    }
    p.push(Property::new(
        "emulated",
        if u.emulated { "true" } else { "false" },
    ));
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use hilsec_core::results::{Counts, ResultRecord, RunMeta};

    fn results() -> ResultsFile {
        let rec = |test: &str, verdict, evidence: Option<&str>| ResultRecord {
            board: "sim-cam-1".into(),
            model: "SimCam C0".into(),
            suite: "password".into(),
            test: test.into(),
            verdict,
            provisions: vec!["EN 303 645 5.1-1".into(), "PSTI Sch.1 1(2)".into()],
            message: "admin/admin <let in>".into(),
            duration_ms: 12,
            evidence: evidence.map(String::from),
            started_at: None,
            data: None,
        };
        ResultsFile {
            run: RunMeta {
                schema: 2,
                tool: "hilsec".into(),
                version: "0.1.0".into(),
                started: "2026-12-02T10:00:00.000Z".into(),
                finished: "2026-12-02T10:01:00.000Z".into(),
                duration_ms: 60_000,
                interrupted: false,
                units: vec![UnitMeta {
                    name: "sim-cam-1".into(),
                    model: "SimCam C0".into(),
                    manufacturer: None,
                    serial: Some("C0-1".into()),
                    mac: None,
                    firmware: None,
                    board_file: "boards/sim/simcam-c0.toml".into(),
                    emulated: true,
                    board_files: Vec::new(),
                }],
                counts: Counts::default(),
                shard: None,
                merged_from: Vec::new(),
            },
            tests: vec![
                rec(
                    "password.universal-default-rejected",
                    Verdict::Fail,
                    Some("evidence/sim-cam-1/password.universal-default-rejected.log"),
                ),
                rec("password.per-unit-password-works", Verdict::Pass, None),
            ],
            model_findings: Vec::new(),
        }
    }

    #[test]
    fn test_cases_carry_provisions_and_evidence_attachments() {
        let mut xml = Vec::new();
        build(&results(), Path::new("results/shard-1"))
            .serialize(&mut xml)
            .expect("xml");
        let xml = String::from_utf8(xml).expect("utf-8");
        let doc = roxmltree::Document::parse(&xml).expect("well-formed");
        let cases: Vec<_> = doc
            .descendants()
            .filter(|n| n.has_tag_name("testcase"))
            .collect();
        assert_eq!(cases.len(), 2);
        let provisions: Vec<&str> = cases[0]
            .descendants()
            .filter(|n| n.has_tag_name("property") && n.attribute("name") == Some("provision"))
            .filter_map(|n| n.attribute("value"))
            .collect();
        assert_eq!(provisions, ["EN 303 645 5.1-1", "PSTI Sch.1 1(2)"]);
        let out = cases[0]
            .descendants()
            .find(|n| n.has_tag_name("system-out"))
            .and_then(|n| n.text())
            .expect("system-out");
        assert!(out
            .contains("[[ATTACHMENT|results/shard-1/evidence/sim-cam-1/password.universal-default-rejected.log]]"));
        assert!(cases[0].descendants().any(|n| n.has_tag_name("failure")));
        // No evidence file, no attachment line.
        let out2 = cases[1]
            .descendants()
            .find(|n| n.has_tag_name("system-out"))
            .and_then(|n| n.text())
            .unwrap_or_default();
        assert!(!out2.contains("ATTACHMENT"));
    }
}
