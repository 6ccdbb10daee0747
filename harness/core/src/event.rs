//! Runner events: the only thing reporters see. The runner knows nothing of XML, JSON or
//! terminals; reporters subscribe to these events.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::test::Verdict;

/// Identity of a unit as reported with every result.
#[derive(Debug, Clone, Serialize)]
pub struct UnitInfo {
    pub name: String,
    pub model: String,
    pub manufacturer: Option<String>,
    pub serial: Option<String>,
    pub mac: Option<String>,
    pub firmware: Option<String>,
    pub board_file: PathBuf,
    pub emulated: bool,
    /// The board file and the model file it extends, hashed when the unit was planned.
    pub board_files: Vec<crate::results::BoardFileMeta>,
}

/// One finished test on one unit.
#[derive(Debug, Clone, Serialize)]
pub struct TestRecord {
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
    /// Time the test started (RFC 3339, UTC).
    pub started_at: String,
    /// Structured figures behind the verdict (e.g. `guesses_per_hour`, `support_end`), as the
    /// test attached them; later runs read them back through [`crate::results`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Value>,
    /// Per-model tests: the finding judged across the model's units. Every unit's record
    /// shares it (one allocation), carries a constant-size message about itself, and reporters
    /// write the finding once per model.
    #[serde(skip)]
    pub model_finding: Option<std::sync::Arc<ModelFinding>>,
    /// The rendered, redacted transcript (written by the evidence reporter).
    #[serde(skip)]
    pub evidence_text: Option<String>,
}

impl TestRecord {
    /// The record without its transcript, for consumers that keep records until the end of the
    /// run (summaries, results.json, junit.xml): the evidence is written once, as it arrives.
    pub fn without_evidence(&self) -> TestRecord {
        TestRecord {
            board: self.board.clone(),
            model: self.model.clone(),
            suite: self.suite.clone(),
            test: self.test.clone(),
            verdict: self.verdict,
            provisions: self.provisions.clone(),
            message: self.message.clone(),
            duration_ms: self.duration_ms,
            evidence: self.evidence.clone(),
            started_at: self.started_at.clone(),
            data: self.data.clone(),
            model_finding: self.model_finding.clone(),
            evidence_text: None,
        }
    }
}

/// A per-model test's outcome, judged once across all units of the model.
#[derive(Debug, Clone, Serialize)]
pub struct ModelFinding {
    pub model: String,
    pub suite: String,
    pub test: String,
    pub verdict: Verdict,
    pub provisions: Vec<String>,
    /// The whole finding, redacted.
    pub message: String,
    /// Every unit judged.
    pub units: Vec<String>,
    /// The units the finding concerns, when the test named them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub concerned: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Value>,
}

#[derive(Debug, Clone)]
pub enum Event {
    RunStarted {
        units: Vec<UnitInfo>,
        /// Tests planned per unit (including not-applicable ones).
        planned: Vec<(String, usize)>,
        started: SystemTime,
    },
    UnitStarted {
        unit: String,
    },
    TestStarted {
        unit: String,
        test: String,
    },
    TestFinished(Box<TestRecord>),
    UnitFinished {
        unit: String,
    },
    /// A long step of a unit's test is under way (e.g. "flash swd: 42% (12800/30492 bytes)"):
    /// for a live display only; the evidence has its own notes.
    Progress {
        unit: String,
        activity: String,
    },
    RunFinished {
        interrupted: bool,
        duration: Duration,
    },
}

/// Formats a time as RFC 3339 UTC with milliseconds.
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_rfc3339() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        assert_eq!(rfc3339(t), "2023-11-14T22:13:20.123Z");
    }
}
