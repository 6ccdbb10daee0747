//! hilsec-report: reporters fed by runner events.
//!
//! Each reporter subscribes to the same event stream: the terminal view, `journal.jsonl` (a line
//! per finished test, flushed at once so a killed run keeps its record),
//! `evidence/<board>/<test>.log`, and at the end the whole-run artefacts `results.json`,
//! `junit.xml` and `report.html`, all three rendered from one [`ResultsFile`] so that `hilsec
//! merge` and `hilsec report` write them exactly as a run does. None of them influences a
//! verdict; the runner knows nothing about any of these formats.

mod files;
pub mod html;
pub mod junit;
pub mod merge;
pub mod provisions;
mod terminal;

use std::io;
use std::path::{Path, PathBuf};

use hilsec_core::event::Event;

pub use files::{write_whole_run, EvidenceReporter, JournalReporter, ResultsFile, ResultsReporter};
pub use terminal::TerminalReporter;

/// Why a reporter could not write its artefact.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot serialize {what}: {detail}")]
    Serialize { what: &'static str, detail: String },
    /// report.html's template failed to render (a bug of the template, not of the data).
    #[error("cannot render report.html: {detail}")]
    Template { detail: String },
}

impl ReportError {
    pub(crate) fn write(path: &Path, source: io::Error) -> Self {
        ReportError::Write {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// A subscriber to runner events.
pub trait Reporter: Send {
    fn on_event(&mut self, event: &Event) -> Result<(), ReportError>;
}

/// Feeds every event to every reporter; the first error of each reporter is kept and the
/// reporter is not called again (one broken output must not stop the others).
pub struct Fanout {
    reporters: Vec<(Box<dyn Reporter>, Option<ReportError>)>,
}

impl Fanout {
    pub fn new(reporters: Vec<Box<dyn Reporter>>) -> Self {
        Fanout {
            reporters: reporters.into_iter().map(|r| (r, None)).collect(),
        }
    }

    pub fn on_event(&mut self, event: &Event) {
        for (r, err) in &mut self.reporters {
            if err.is_none() {
                if let Err(e) = r.on_event(event) {
                    *err = Some(e);
                }
            }
        }
    }

    /// Errors reporters met, for the CLI to print.
    pub fn errors(self) -> Vec<ReportError> {
        self.reporters.into_iter().filter_map(|(_, e)| e).collect()
    }
}
