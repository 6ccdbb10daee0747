//! The schema of `results.json`, shared by the writer (`hilsec-report`) and its readers (`run
//! --baseline`, tests that compare with an earlier run, the harness's own tests).
//!
//! ```json
//! {"run": {"schema": 2, "tool", "version", "started", "finished", "duration_ms",
//!          "interrupted", "units": [...], "counts": {...}},
//!  "tests": [{"board", "model", "suite", "test", "verdict", "provisions", "message",
//!             "duration_ms", "evidence", "started_at", "data"?}],
//!  "model_findings": [{"model", "suite", "test", "verdict", "provisions", "message",
//!                      "units", "concerned"?, "data"?}]}
//! ```
//!
//! Files written before schema 2 (no `run.schema`, no `data`, no `model_findings`) still
//! deserialize: the new fields take their defaults, and [`RunMeta::schema`] says 1, so a reader
//! can tell "the earlier run recorded no figures" from "this version did not write them".

use std::collections::HashSet;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::event::{ModelFinding, TestRecord, UnitInfo};
use crate::test::Verdict;

/// The schema this version writes. 1: no `schema` field, no `data`, no `model_findings`;
/// 2: test records may carry `data`, per-model findings are listed once in `model_findings`.
pub const SCHEMA_VERSION: u32 = 2;

/// A whole `results.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultsFile {
    pub run: RunMeta,
    /// One record per unit and test, units in board order, tests in the order they finished.
    pub tests: Vec<ResultRecord>,
    /// Per-model tests: the finding judged across a model's units, once per model and test.
    /// The per-unit records in `tests` keep their own short message.
    #[serde(default)]
    pub model_findings: Vec<ModelFindingRecord>,
}

/// What was run, when, on what.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunMeta {
    /// [`SCHEMA_VERSION`] of the writer; 1 for files that predate the field.
    #[serde(default = "legacy_schema")]
    pub schema: u32,
    pub tool: String,
    pub version: String,
    /// RFC 3339, UTC.
    pub started: String,
    /// RFC 3339, UTC.
    pub finished: String,
    pub duration_ms: u64,
    pub interrupted: bool,
    pub units: Vec<UnitMeta>,
    pub counts: Counts,
    /// `I/N` when the run was one shard of N (`run --shard`); absent for a whole run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<String>,
    /// For a merged folder (`hilsec merge`): the runs it was made of, in the order given.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub merged_from: Vec<MergedRun>,
}

/// One run that `hilsec merge` took in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MergedRun {
    /// The folder it was read from, as given on the command line (lossy UTF-8).
    pub dir: String,
    pub shard: Option<String>,
    pub started: String,
    pub finished: String,
    pub interrupted: bool,
}

/// A board file a unit was loaded from, with the SHA-256 of its bytes when the run started
/// (lowercase hex), so a report says exactly which description was tested.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BoardFileMeta {
    pub path: PathBuf,
    pub sha256: String,
}

fn legacy_schema() -> u32 {
    1
}

/// A unit's identity, as [`UnitInfo`] reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnitMeta {
    pub name: String,
    pub model: String,
    pub manufacturer: Option<String>,
    pub serial: Option<String>,
    pub mac: Option<String>,
    pub firmware: Option<String>,
    pub board_file: PathBuf,
    pub emulated: bool,
    /// The unit's board file and the model file it extends, with their hashes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub board_files: Vec<BoardFileMeta>,
}

impl From<&UnitInfo> for UnitMeta {
    fn from(u: &UnitInfo) -> Self {
        UnitMeta {
            name: u.name.clone(),
            model: u.model.clone(),
            manufacturer: u.manufacturer.clone(),
            serial: u.serial.clone(),
            mac: u.mac.clone(),
            firmware: u.firmware.clone(),
            board_file: u.board_file.clone(),
            emulated: u.emulated,
            board_files: u.board_files.clone(),
        }
    }
}

/// Records per verdict.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub pass: usize,
    pub fail: usize,
    pub inconclusive: usize,
    pub not_applicable: usize,
    pub error: usize,
}

impl Counts {
    pub fn add(&mut self, v: Verdict) {
        match v {
            Verdict::Pass => self.pass += 1,
            Verdict::Fail => self.fail += 1,
            Verdict::Inconclusive => self.inconclusive += 1,
            Verdict::NotApplicable => self.not_applicable += 1,
            Verdict::Error => self.error += 1,
        }
    }
}

/// One test on one unit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultRecord {
    /// The unit's name.
    pub board: String,
    pub model: String,
    pub suite: String,
    pub test: String,
    pub verdict: Verdict,
    pub provisions: Vec<String>,
    pub message: String,
    pub duration_ms: u64,
    /// Path of the evidence file, relative to the output folder.
    pub evidence: Option<String>,
    /// RFC 3339, UTC.
    #[serde(default)]
    pub started_at: Option<String>,
    /// Structured figures the test attached to its verdict (schema 2), e.g.
    /// `{"support_end": "2030-12-31"}`; absent when the test attached none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Value>,
}

impl From<&TestRecord> for ResultRecord {
    fn from(r: &TestRecord) -> Self {
        ResultRecord {
            board: r.board.clone(),
            model: r.model.clone(),
            suite: r.suite.clone(),
            test: r.test.clone(),
            verdict: r.verdict,
            provisions: r.provisions.clone(),
            message: r.message.clone(),
            duration_ms: r.duration_ms,
            evidence: r.evidence.clone(),
            started_at: Some(r.started_at.clone()),
            data: r.data.clone(),
        }
    }
}

/// A per-model test's finding, written once per model and test.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelFindingRecord {
    pub model: String,
    pub suite: String,
    pub test: String,
    pub verdict: Verdict,
    pub provisions: Vec<String>,
    /// The whole finding (redacted).
    pub message: String,
    /// Every unit judged.
    pub units: Vec<String>,
    /// The units the finding concerns, when the test named them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concerned: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Value>,
}

impl From<&ModelFinding> for ModelFindingRecord {
    fn from(f: &ModelFinding) -> Self {
        ModelFindingRecord {
            model: f.model.clone(),
            suite: f.suite.clone(),
            test: f.test.clone(),
            verdict: f.verdict,
            provisions: f.provisions.clone(),
            message: f.message.clone(),
            units: f.units.clone(),
            concerned: f.concerned.clone(),
            data: f.data.clone(),
        }
    }
}

/// The per-model findings carried by `records`, once per model and test, in the order their
/// first record appears.
pub fn model_findings<'a>(
    records: impl IntoIterator<Item = &'a TestRecord>,
) -> Vec<ModelFindingRecord> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for r in records {
        if let Some(f) = &r.model_finding {
            if seen.insert((f.model.clone(), f.suite.clone(), f.test.clone())) {
                out.push(ModelFindingRecord::from(f.as_ref()));
            }
        }
    }
    out
}

/// Why a document is not a readable `results.json`.
#[derive(Debug, thiserror::Error)]
pub enum ResultsError {
    #[error("{line}:{column}: not JSON: {detail}")]
    NotJson {
        line: usize,
        column: usize,
        detail: String,
    },
    #[error("{}not a hilsec results.json: {detail}", at.map(|(l, c)| format!("{l}:{c}: ")).unwrap_or_default())]
    Schema {
        /// Line and column, when known (not for an already parsed value).
        at: Option<(usize, usize)>,
        detail: String,
    },
}

impl ResultsFile {
    /// Parses the text of a `results.json`.
    pub fn from_json_str(text: &str) -> Result<Self, ResultsError> {
        serde_json::from_str(text).map_err(|e| {
            // serde_json's message ends with the position, which the error states first.
            let full = e.to_string();
            let suffix = format!(" at line {} column {}", e.line(), e.column());
            let detail = full.strip_suffix(&suffix).unwrap_or(&full).to_string();
            if e.classify() == serde_json::error::Category::Data {
                ResultsError::Schema {
                    at: Some((e.line(), e.column())),
                    detail,
                }
            } else {
                ResultsError::NotJson {
                    line: e.line(),
                    column: e.column(),
                    detail,
                }
            }
        })
    }

    /// Reads an already parsed `results.json` (e.g. the run's `--baseline`).
    pub fn from_value(value: &serde_json::Value) -> Result<Self, ResultsError> {
        ResultsFile::deserialize(value).map_err(|e| ResultsError::Schema {
            at: None,
            detail: e.to_string(),
        })
    }

    /// The record of `test` on the unit `board`, if the run has one.
    pub fn record(&self, board: &str, test: &str) -> Option<&ResultRecord> {
        self.tests
            .iter()
            .find(|r| r.board == board && r.test == test)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    const OLD: &str = r#"{
      "run": {"tool": "hilsec", "version": "0.1.0", "started": "2026-01-01T00:00:00.000Z",
              "finished": "2026-01-01T00:01:00.000Z", "duration_ms": 60000, "interrupted": false,
              "units": [{"name": "sim-plug-1", "model": "SimPlug S1", "manufacturer": null,
                         "serial": null, "mac": null, "firmware": null,
                         "board_file": "boards/sim/simplug-s1.toml", "emulated": true}],
              "counts": {"pass": 1, "fail": 0, "inconclusive": 0, "not_applicable": 0, "error": 0}},
      "tests": [{"board": "sim-plug-1", "model": "SimPlug S1", "suite": "disclosure",
                 "test": "support.period-published", "verdict": "pass", "provisions": [],
                 "message": "the support period ends on 2030-12-31", "duration_ms": 5,
                 "evidence": null}]
    }"#;

    #[test]
    fn reads_files_written_before_schema_2() {
        let f = ResultsFile::from_json_str(OLD).expect("old file");
        assert_eq!(f.run.schema, 1);
        assert!(f.model_findings.is_empty());
        let r = f
            .record("sim-plug-1", "support.period-published")
            .expect("record");
        assert_eq!(r.verdict, Verdict::Pass);
        assert_eq!(r.data, None);
        assert_eq!(r.started_at, None);
        assert!(f.record("sim-plug-2", "support.period-published").is_none());
    }

    #[test]
    fn round_trips_data_and_model_findings() {
        let mut f = ResultsFile::from_json_str(OLD).expect("old file");
        f.run.schema = SCHEMA_VERSION;
        f.tests[0].data = Some(serde_json::json!({"support_end": "2030-12-31"}));
        f.model_findings.push(ModelFindingRecord {
            model: "SimPlug S1".into(),
            suite: "password".into(),
            test: "password.unique-per-unit".into(),
            verdict: Verdict::Fail,
            provisions: vec!["EN 303 645 5.1-1".into()],
            message: "two units share a password".into(),
            units: vec!["a".into(), "b".into()],
            concerned: Some(vec!["a".into(), "b".into()]),
            data: None,
        });
        let text = serde_json::to_string(&f).expect("serialize");
        let back = ResultsFile::from_json_str(&text).expect("parse");
        assert_eq!(back, f);
        let v: serde_json::Value = serde_json::from_str(&text).expect("json");
        assert_eq!(ResultsFile::from_value(&v).expect("value"), f);
        assert_eq!(v["run"]["schema"], 2);
        assert_eq!(v["tests"][0]["data"]["support_end"], "2030-12-31");
        assert!(v["model_findings"][0].get("data").is_none());
    }

    #[test]
    fn errors_say_where_and_what() {
        match ResultsFile::from_json_str("{\"tests\": [") {
            Err(e @ ResultsError::NotJson { .. }) => {
                assert!(e.to_string().starts_with("1:11: not JSON: EOF"), "{e}")
            }
            other => panic!("{other:?}"),
        }
        let e = ResultsFile::from_json_str("{\"tests\": []}").expect_err("no run");
        assert!(
            matches!(e, ResultsError::Schema { at: Some(_), .. }),
            "{e:?}"
        );
        assert_eq!(
            e.to_string(),
            "1:13: not a hilsec results.json: missing field `run`"
        );
        let e = ResultsFile::from_value(&serde_json::json!({"tests": 3})).expect_err("not a list");
        assert!(
            e.to_string().starts_with("not a hilsec results.json"),
            "{e}"
        );
    }

    fn record(board: &str, test: &str, finding: Option<Arc<ModelFinding>>) -> TestRecord {
        TestRecord {
            board: board.into(),
            model: "M".into(),
            suite: "password".into(),
            test: test.into(),
            verdict: Verdict::Fail,
            provisions: vec![],
            message: format!("{board}: concerned"),
            duration_ms: 1,
            evidence: None,
            started_at: "2026-01-01T00:00:00.000Z".into(),
            data: None,
            model_finding: finding,
            evidence_text: None,
        }
    }

    #[test]
    fn one_model_finding_per_model_and_test() {
        let finding = |test: &str, model: &str| {
            Arc::new(ModelFinding {
                model: model.into(),
                suite: "password".into(),
                test: test.into(),
                verdict: Verdict::Fail,
                provisions: vec![],
                message: format!("{test} on {model}: the whole story"),
                units: vec!["a".into(), "b".into()],
                concerned: Some(vec!["b".into()]),
                data: None,
            })
        };
        let f1 = finding("password.unique", "M");
        let f2 = finding("password.derived", "M");
        let f3 = finding("password.unique", "N");
        let records = [
            record("a", "password.unique", Some(f1.clone())),
            record("a", "password.derived", Some(f2.clone())),
            record("a", "password.other", None),
            record("b", "password.unique", Some(f1)),
            record("b", "password.derived", Some(f2)),
            record("c", "password.unique", Some(f3)),
        ];
        let found = model_findings(&records);
        let keys: Vec<(&str, &str)> = found
            .iter()
            .map(|f| (f.model.as_str(), f.test.as_str()))
            .collect();
        assert_eq!(
            keys,
            vec![
                ("M", "password.unique"),
                ("M", "password.derived"),
                ("N", "password.unique")
            ]
        );
        assert_eq!(found[0].units, vec!["a", "b"]);
        assert_eq!(found[0].concerned.as_deref(), Some(&["b".to_string()][..]));
        assert_eq!(found[0].message, "password.unique on M: the whole story");
    }
}
