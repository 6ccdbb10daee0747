//! The machine-readable artefacts: `journal.jsonl`, evidence files and `results.json`.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use hilsec_core::event::{rfc3339, Event, TestRecord, UnitInfo};
use hilsec_core::test::Verdict;
use serde::{Deserialize, Serialize};

use crate::{ReportError, Reporter};

/// Appends one JSON line per finished test and flushes it to the OS immediately.
pub struct JournalReporter {
    path: PathBuf,
    file: File,
}

impl JournalReporter {
    pub fn create(out: &Path) -> Result<Self, ReportError> {
        let path = out.join("journal.jsonl");
        let file = File::create(&path).map_err(|e| ReportError::write(&path, e))?;
        Ok(JournalReporter { path, file })
    }
}

impl Reporter for JournalReporter {
    fn on_event(&mut self, event: &Event) -> Result<(), ReportError> {
        if let Event::TestFinished(rec) = event {
            let mut line =
                serde_json::to_vec(rec.as_ref()).map_err(|e| ReportError::Serialize {
                    what: "journal line",
                    detail: e.to_string(),
                })?;
            line.push(b'\n');
            // One write per line: a kill between lines never leaves half a record.
            self.file
                .write_all(&line)
                .and_then(|_| self.file.flush())
                .map_err(|e| ReportError::write(&self.path, e))?;
        }
        Ok(())
    }
}

/// Writes each test's transcript to `evidence/<board>/<test>.log`.
pub struct EvidenceReporter {
    out: PathBuf,
}

impl EvidenceReporter {
    pub fn new(out: &Path) -> Self {
        EvidenceReporter {
            out: out.to_path_buf(),
        }
    }
}

impl Reporter for EvidenceReporter {
    fn on_event(&mut self, event: &Event) -> Result<(), ReportError> {
        if let Event::TestFinished(rec) = event {
            if let (Some(rel), Some(text)) = (&rec.evidence, &rec.evidence_text) {
                let path = self.out.join(rel);
                if let Some(dir) = path.parent() {
                    fs::create_dir_all(dir).map_err(|e| ReportError::write(dir, e))?;
                }
                fs::write(&path, text).map_err(|e| ReportError::write(&path, e))?;
            }
        }
        Ok(())
    }
}

/// The shape of `results.json` (also read back by `--baseline` in later suites and by tests).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResultsFile {
    pub run: RunSection,
    pub tests: Vec<TestEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunSection {
    pub tool: String,
    pub version: String,
    pub started: String,
    pub finished: String,
    pub duration_ms: u64,
    pub interrupted: bool,
    pub units: Vec<serde_json::Value>,
    pub counts: Counts,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
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

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TestEntry {
    pub board: String,
    pub model: String,
    pub suite: String,
    pub test: String,
    pub verdict: Verdict,
    pub provisions: Vec<String>,
    pub message: String,
    pub duration_ms: u64,
    pub evidence: Option<String>,
    #[serde(default)]
    pub started_at: Option<String>,
}

impl From<&TestRecord> for TestEntry {
    fn from(r: &TestRecord) -> Self {
        TestEntry {
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
        }
    }
}

/// Orders records by unit (in board order) and then by the order tests finished on the unit.
pub(crate) fn ordered<'a>(units: &[UnitInfo], records: &'a [TestRecord]) -> Vec<&'a TestRecord> {
    let mut v: Vec<&TestRecord> = records.iter().collect();
    v.sort_by_key(|r| {
        units
            .iter()
            .position(|u| u.name == r.board)
            .unwrap_or(usize::MAX)
    });
    v
}

/// Collects records and writes `results.json` when the run finishes.
pub struct JsonReporter {
    path: PathBuf,
    units: Vec<UnitInfo>,
    started: Option<SystemTime>,
    records: Vec<TestRecord>,
}

impl JsonReporter {
    pub fn new(out: &Path) -> Self {
        JsonReporter {
            path: out.join("results.json"),
            units: Vec::new(),
            started: None,
            records: Vec::new(),
        }
    }
}

impl Reporter for JsonReporter {
    fn on_event(&mut self, event: &Event) -> Result<(), ReportError> {
        match event {
            Event::RunStarted { units, started, .. } => {
                self.units = units.clone();
                self.started = Some(*started);
            }
            Event::TestFinished(rec) => self.records.push((**rec).clone()),
            Event::RunFinished {
                interrupted,
                duration,
            } => {
                let mut counts = Counts::default();
                for r in &self.records {
                    counts.add(r.verdict);
                }
                let started = self.started.unwrap_or_else(SystemTime::now);
                let file = ResultsFile {
                    run: RunSection {
                        tool: "hilsec".into(),
                        version: env!("CARGO_PKG_VERSION").into(),
                        started: rfc3339(started),
                        finished: rfc3339(SystemTime::now()),
                        duration_ms: duration.as_millis() as u64,
                        interrupted: *interrupted,
                        units: self
                            .units
                            .iter()
                            .filter_map(|u| serde_json::to_value(u).ok())
                            .collect(),
                        counts,
                    },
                    tests: ordered(&self.units, &self.records)
                        .into_iter()
                        .map(TestEntry::from)
                        .collect(),
                };
                let text =
                    serde_json::to_string_pretty(&file).map_err(|e| ReportError::Serialize {
                        what: "results.json",
                        detail: e.to_string(),
                    })?;
                write_atomically(&self.path, text.as_bytes())?;
            }
            _ => {}
        }
        Ok(())
    }
}

/// Writes to a temporary file and renames it, so a reader never sees half a file.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), ReportError> {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, bytes).map_err(|e| ReportError::write(&tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| ReportError::write(path, e))
}
