//! `junit.xml` through quick-junit: one `<testsuite>` per unit and suite, one `<testcase>` per
//! test. Unit identity and each test's provisions travel as `<testsuite>` properties, the one
//! place the common JUnit schema allows them; the evidence path and message go into the test's
//! `<system-out>`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use hilsec_core::event::{Event, TestRecord, UnitInfo};
use hilsec_core::test::Verdict;
use quick_junit::{NonSuccessKind, Property, Report, TestCase, TestCaseStatus, TestSuite};

use crate::files::{ordered, write_atomically};
use crate::{ReportError, Reporter};

pub struct JunitReporter {
    path: PathBuf,
    units: Vec<UnitInfo>,
    records: Vec<TestRecord>,
}

impl JunitReporter {
    pub fn new(out: &Path) -> Self {
        JunitReporter {
            path: out.join("junit.xml"),
            units: Vec::new(),
            records: Vec::new(),
        }
    }
}

/// Builds the report (separate from writing, so tests can look at it).
pub fn build(units: &[UnitInfo], records: &[TestRecord], total: Duration) -> Report {
    let mut report = Report::new("hilsec");
    report.set_time(total);
    let mut suites: Vec<TestSuite> = Vec::new();
    let mut by_name: std::collections::HashMap<String, usize> = Default::default();
    for r in ordered(units, records) {
        let name = format!("{}.{}", r.board, r.suite);
        let idx = match by_name.get(&name) {
            Some(i) => *i,
            None => {
                by_name.insert(name.clone(), suites.len());
                let mut s = TestSuite::new(name.as_str());
                if let Some(u) = units.iter().find(|u| u.name == r.board) {
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
        tc.set_classname(format!("{}.{}", r.board, r.suite));
        tc.set_time(Duration::from_millis(r.duration_ms));
        let mut out = format!(
            "verdict: {}\nmessage: {}\nprovisions: {}\n",
            r.verdict,
            r.message,
            r.provisions.join("; ")
        );
        if let Some(e) = &r.evidence {
            out.push_str(&format!("evidence: {e}\n"));
        }
        tc.set_system_out(out);
        suite.add_test_case(tc);
    }
    report.add_test_suites(suites);
    report
}

fn identity_properties(u: &UnitInfo) -> Vec<Property> {
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
    p.push(Property::new(
        "emulated",
        if u.emulated { "true" } else { "false" },
    ));
    p
}

impl Reporter for JunitReporter {
    fn on_event(&mut self, event: &Event) -> Result<(), ReportError> {
        match event {
            Event::RunStarted { units, .. } => self.units = units.clone(),
            Event::TestFinished(r) => self.records.push(r.without_evidence()),
            Event::RunFinished { duration, .. } => {
                let report = build(&self.units, &self.records, *duration);
                write_atomically(&self.path, |w| {
                    report.serialize(w).map_err(std::io::Error::other)
                })?;
            }
            _ => {}
        }
        Ok(())
    }
}
