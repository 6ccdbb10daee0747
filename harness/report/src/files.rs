//! The machine-readable artefacts: `journal.jsonl`, evidence files and `results.json`.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use hilsec_core::event::{rfc3339, Event, TestRecord, UnitInfo};
use hilsec_core::results::{model_findings, SCHEMA_VERSION};
use serde::Serialize;

use crate::{ReportError, Reporter};

/// Appends one JSON line per finished test and flushes it to the OS immediately. The first
/// line of each per-model finding (model and test) also carries the whole finding as
/// `model_finding`, so a run killed before `results.json` is written still has it once.
pub struct JournalReporter {
    path: PathBuf,
    file: File,
    findings_written: HashSet<(String, String, String)>,
}

/// A journal line: the test record, plus the model's finding on its first unit.
#[derive(Serialize)]
struct JournalLine<'a> {
    #[serde(flatten)]
    record: &'a TestRecord,
    #[serde(skip_serializing_if = "Option::is_none")]
    model_finding: Option<ModelFindingRecord>,
}

impl JournalReporter {
    pub fn create(out: &Path) -> Result<Self, ReportError> {
        let path = out.join("journal.jsonl");
        let file = File::create(&path).map_err(|e| ReportError::write(&path, e))?;
        Ok(JournalReporter {
            path,
            file,
            findings_written: HashSet::new(),
        })
    }
}

impl Reporter for JournalReporter {
    fn on_event(&mut self, event: &Event) -> Result<(), ReportError> {
        if let Event::TestFinished(rec) = event {
            let model_finding = rec.model_finding.as_ref().and_then(|f| {
                self.findings_written
                    .insert((f.model.clone(), f.suite.clone(), f.test.clone()))
                    .then(|| ModelFindingRecord::from(f.as_ref()))
            });
            let entry = JournalLine {
                record: rec.as_ref(),
                model_finding,
            };
            let mut line = serde_json::to_vec(&entry).map_err(|e| ReportError::Serialize {
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

/// The shapes of `results.json`, shared with its readers (`--baseline`, tests): see
/// [`hilsec_core::results`].
pub use hilsec_core::results::{Counts, ResultsFile};
use hilsec_core::results::{ModelFindingRecord, ResultRecord, RunMeta, UnitMeta};

/// Orders records by unit (in board order) and then by the order tests finished on the unit.
pub(crate) fn ordered<'a>(units: &[UnitInfo], records: &'a [TestRecord]) -> Vec<&'a TestRecord> {
    let index: std::collections::HashMap<&str, usize> = units
        .iter()
        .enumerate()
        .map(|(i, u)| (u.name.as_str(), i))
        .collect();
    let mut v: Vec<&TestRecord> = records.iter().collect();
    // Stable: tests of a unit keep the order they finished in.
    v.sort_by_key(|r| index.get(r.board.as_str()).copied().unwrap_or(usize::MAX));
    v
}

/// Collects records and, when the run finishes, writes the three whole-run artefacts from one
/// [`ResultsFile`]: `results.json`, `junit.xml` and `report.html`. `hilsec merge` and `hilsec
/// report` render the same files from a `results.json` through [`write_whole_run`], so a
/// merged folder is written exactly as one run's would be.
pub struct ResultsReporter {
    out: PathBuf,
    shard: Option<String>,
    units: Vec<UnitInfo>,
    started: Option<SystemTime>,
    records: Vec<TestRecord>,
}

impl ResultsReporter {
    pub fn new(out: &Path) -> Self {
        ResultsReporter {
            out: out.to_path_buf(),
            shard: None,
            units: Vec::new(),
            started: None,
            records: Vec::new(),
        }
    }

    /// Marks the results as shard `I/N` of a run (`run.shard`).
    pub fn with_shard(mut self, shard: Option<String>) -> Self {
        self.shard = shard;
        self
    }
}

impl Reporter for ResultsReporter {
    fn on_event(&mut self, event: &Event) -> Result<(), ReportError> {
        match event {
            Event::RunStarted { units, started, .. } => {
                self.units = units.clone();
                self.started = Some(*started);
            }
            Event::TestFinished(rec) => self.records.push(rec.without_evidence()),
            Event::RunFinished {
                interrupted,
                duration,
            } => {
                let mut counts = Counts::default();
                for r in &self.records {
                    counts.add(r.verdict);
                }
                let started = self.started.unwrap_or_else(SystemTime::now);
                let ordered = ordered(&self.units, &self.records);
                let file = ResultsFile {
                    run: RunMeta {
                        schema: SCHEMA_VERSION,
                        tool: "hilsec".into(),
                        version: env!("CARGO_PKG_VERSION").into(),
                        started: rfc3339(started),
                        finished: rfc3339(SystemTime::now()),
                        duration_ms: duration.as_millis() as u64,
                        interrupted: *interrupted,
                        units: self.units.iter().map(UnitMeta::from).collect(),
                        counts,
                        shard: self.shard.clone(),
                        merged_from: Vec::new(),
                    },
                    tests: ordered.iter().map(|r| ResultRecord::from(*r)).collect(),
                    model_findings: model_findings(ordered.iter().copied()),
                };
                // The records are in the file now; do not hold them twice.
                self.records = Vec::new();
                write_whole_run(&file, &self.out)?;
            }
            _ => {}
        }
        Ok(())
    }
}

/// Writes `results.json`, `junit.xml` and `report.html` into `out`. Each is attempted even if
/// an earlier one failed (one broken artefact must not cost the others); the first failure is
/// returned.
pub fn write_whole_run(file: &ResultsFile, out: &Path) -> Result<(), ReportError> {
    let json = write_atomically(&out.join("results.json"), |w| {
        serde_json::to_writer_pretty(w, file).map_err(std::io::Error::from)
    });
    let junit = crate::junit::write(file, out);
    let html = crate::html::write(file, out);
    json.and(junit).and(html)
}

/// Writes to a temporary file and renames it, so a reader never sees half a file. `write`
/// serialises straight into the file (a large run's report is never whole in memory). On any
/// failure the temporary file is removed.
pub(crate) fn write_atomically(
    path: &Path,
    write: impl FnOnce(&mut std::io::BufWriter<fs::File>) -> std::io::Result<()>,
) -> Result<(), ReportError> {
    use std::io::Write as _;
    let tmp = path.with_extension("tmp");
    let written = fs::File::create(&tmp).and_then(|file| {
        let mut w = std::io::BufWriter::new(file);
        write(&mut w)?;
        w.flush()
    });
    let done = written
        .map_err(|e| ReportError::write(&tmp, e))
        .and_then(|()| fs::rename(&tmp, path).map_err(|e| ReportError::write(path, e)));
    if done.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    done
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use hilsec_core::event::ModelFinding;
    use hilsec_core::test::Verdict;

    use super::*;

    /// A fresh folder under the system's temporary directory, removed on drop.
    struct TempDir(PathBuf);
    impl TempDir {
        fn new(tag: &str) -> Self {
            let nanos = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default();
            let p = std::env::temp_dir().join(format!(
                "hilsec-report-{tag}-{}-{nanos}",
                std::process::id()
            ));
            fs::create_dir_all(&p).expect("temp dir");
            TempDir(p)
        }
    }
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn unit(name: &str) -> UnitInfo {
        UnitInfo {
            name: name.into(),
            model: "SimPlug S1".into(),
            manufacturer: Some("Simulated Plugs Ltd".into()),
            serial: None,
            mac: None,
            firmware: None,
            board_file: PathBuf::from("boards/sim/simplug-s1.toml"),
            emulated: true,
            board_files: Vec::new(),
        }
    }

    fn record(
        board: &str,
        test: &str,
        message: &str,
        data: Option<serde_json::Value>,
        finding: Option<Arc<ModelFinding>>,
    ) -> Event {
        Event::TestFinished(Box::new(TestRecord {
            board: board.into(),
            model: "SimPlug S1".into(),
            suite: "disclosure".into(),
            test: test.into(),
            verdict: if finding.is_some() {
                Verdict::Fail
            } else {
                Verdict::Pass
            },
            provisions: vec!["PSTI Sch.1 para 3".into()],
            message: message.into(),
            duration_ms: 3,
            evidence: None,
            started_at: "2026-01-01T00:00:00.000Z".into(),
            data,
            model_finding: finding,
            evidence_text: None,
        }))
    }

    fn events() -> Vec<Event> {
        let finding = Arc::new(ModelFinding {
            model: "SimPlug S1".into(),
            suite: "password".into(),
            test: "password.unique-per-unit".into(),
            verdict: Verdict::Fail,
            provisions: vec!["EN 303 645 5.1-1".into()],
            message: "sim-plug-1 and sim-plug-2 share one password (the whole finding)".into(),
            units: vec!["sim-plug-1".into(), "sim-plug-2".into()],
            concerned: Some(vec!["sim-plug-1".into(), "sim-plug-2".into()]),
            data: Some(serde_json::json!({"groups": 1})),
        });
        vec![
            Event::RunStarted {
                units: vec![unit("sim-plug-1"), unit("sim-plug-2")],
                planned: vec![],
                started: SystemTime::now(),
            },
            record(
                "sim-plug-2",
                "support.period-published",
                "ends on 2030-12-31",
                Some(serde_json::json!({"support_end": "2030-12-31"})),
                None,
            ),
            record(
                "sim-plug-1",
                "password.unique-per-unit",
                "concerned",
                None,
                Some(finding.clone()),
            ),
            record(
                "sim-plug-2",
                "password.unique-per-unit",
                "concerned",
                None,
                Some(finding),
            ),
            Event::RunFinished {
                interrupted: false,
                duration: Duration::from_millis(1500),
            },
        ]
    }

    #[test]
    fn results_json_lists_each_model_finding_once_and_keeps_data() {
        let dir = TempDir::new("json");
        let mut r = ResultsReporter::new(&dir.0);
        for e in events() {
            r.on_event(&e).expect("event");
        }
        let text = fs::read_to_string(dir.0.join("results.json")).expect("results.json");
        let file = ResultsFile::from_json_str(&text).expect("typed");
        assert_eq!(file.run.schema, SCHEMA_VERSION);
        assert_eq!(file.run.units.len(), 2);
        assert_eq!(file.run.counts.fail, 2);
        assert_eq!(file.run.counts.pass, 1);
        // Units in board order.
        let boards: Vec<&str> = file.tests.iter().map(|t| t.board.as_str()).collect();
        assert_eq!(boards, vec!["sim-plug-1", "sim-plug-2", "sim-plug-2"]);
        assert_eq!(file.model_findings.len(), 1, "{text}");
        let f = &file.model_findings[0];
        assert_eq!(f.test, "password.unique-per-unit");
        assert!(f.message.contains("the whole finding"));
        assert_eq!(f.units, vec!["sim-plug-1", "sim-plug-2"]);
        assert_eq!(f.verdict, Verdict::Fail);
        // The per-unit records keep their own short message; the finding is not repeated.
        for t in file
            .tests
            .iter()
            .filter(|t| t.test == "password.unique-per-unit")
        {
            assert_eq!(t.message, "concerned");
        }
        assert_eq!(text.matches("the whole finding").count(), 1);
        let support = file
            .record("sim-plug-2", "support.period-published")
            .expect("record");
        assert_eq!(
            support.data,
            Some(serde_json::json!({"support_end": "2030-12-31"}))
        );
        assert!(file
            .record("sim-plug-1", "password.unique-per-unit")
            .is_some_and(|r| r.data.is_none()));
    }

    #[test]
    fn journal_carries_a_model_finding_on_its_first_line_only() {
        let dir = TempDir::new("journal");
        let mut r = JournalReporter::create(&dir.0).expect("journal");
        for e in events() {
            r.on_event(&e).expect("event");
        }
        let text = fs::read_to_string(dir.0.join("journal.jsonl")).expect("journal");
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("json line"))
            .collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].get("model_finding").is_none());
        assert_eq!(lines[0]["data"]["support_end"], "2030-12-31");
        assert_eq!(
            lines[1]["model_finding"]["units"],
            serde_json::json!(["sim-plug-1", "sim-plug-2"])
        );
        assert_eq!(lines[1]["message"], "concerned");
        assert!(lines[2].get("model_finding").is_none());
    }
}
