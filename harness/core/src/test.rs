//! What a conformance test is: an id, the provisions it evidences, its scope (one unit, or all
//! units of a model), and an async body that uses only actions and declarations.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::board::Model;
use crate::device::{ActionError, Device};

/// The result class of a test, as in TS 103 701 plus `error` for harness/bench failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Pass,
    Fail,
    Inconclusive,
    NotApplicable,
    Error,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "fail",
            Verdict::Inconclusive => "inconclusive",
            Verdict::NotApplicable => "not_applicable",
            Verdict::Error => "error",
        }
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A verdict with the reason a person reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub verdict: Verdict,
    pub message: String,
}

impl Outcome {
    pub fn new(verdict: Verdict, message: impl Into<String>) -> Self {
        Outcome {
            verdict,
            message: message.into(),
        }
    }
    pub fn pass(m: impl Into<String>) -> Self {
        Self::new(Verdict::Pass, m)
    }
    pub fn fail(m: impl Into<String>) -> Self {
        Self::new(Verdict::Fail, m)
    }
    pub fn inconclusive(m: impl Into<String>) -> Self {
        Self::new(Verdict::Inconclusive, m)
    }
    pub fn not_applicable(m: impl Into<String>) -> Self {
        Self::new(Verdict::NotApplicable, m)
    }
    pub fn error(m: impl Into<String>) -> Self {
        Self::new(Verdict::Error, m)
    }
}

impl From<ActionError> for Outcome {
    /// The harness could not get an answer: never a device `fail`.
    fn from(e: ActionError) -> Self {
        if e.is_device_silence() {
            Outcome::error(format!("no usable answer from the device: {e}"))
        } else {
            Outcome::error(e.to_string())
        }
    }
}

/// Whether a test looks at one unit or at all units of a model together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Unit,
    Model,
}

/// The static description of a test.
#[derive(Debug, Clone)]
pub struct TestInfo {
    /// Stable id, e.g. `password.universal-default-rejected`: CI systems track tests by it.
    pub id: &'static str,
    pub suite: &'static str,
    pub title: &'static str,
    /// Provisions evidenced, written like `EN 303 645 5.1-1`.
    pub provisions: &'static [&'static str],
    pub scope: Scope,
    pub timeout: Duration,
}

/// A conformance test. Per-unit tests implement `run_unit`, per-model tests `run_model`.
#[async_trait::async_trait]
pub trait Test: Send + Sync {
    fn info(&self) -> &TestInfo;

    /// `Some(reason)` when the test does not apply to this model (e.g. an action it needs is not
    /// declared, or the declarations exclude it).
    fn not_applicable(&self, _model: &Model) -> Option<String> {
        None
    }

    async fn run_unit(&self, _dev: &mut Device) -> Outcome {
        Outcome::error("this test has no per-unit body")
    }

    /// Runs once for all units of a model; the outcome is reported on every unit.
    async fn run_model(&self, _devs: &mut [Device]) -> Outcome {
        Outcome::error("this test has no per-model body")
    }
}

/// A named group of tests, run in order.
#[derive(Clone)]
pub struct Suite {
    pub name: &'static str,
    pub description: &'static str,
    pub tests: Vec<Arc<dyn Test>>,
}
