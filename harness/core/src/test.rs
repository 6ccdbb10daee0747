//! What a conformance test is: an id, the provisions it evidences, its scope (one unit, or all
//! units of a model), and an async body that uses only actions and declarations.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::board::{Model, Unit};
use crate::device::{ActionError, Device, RunEnv};

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
    /// Structured figures behind the verdict (e.g. a measured guess rate, a support end date),
    /// written to `results.json` as the record's `data`, so later runs read them typed.
    pub data: Option<serde_json::Value>,
    /// Per-model tests: the units the finding concerns (`None`: the verdict is about the model
    /// as a whole). Each unit's record then says in constant size whether it is concerned.
    pub concerned: Option<Vec<String>>,
}

impl Outcome {
    pub fn new(verdict: Verdict, message: impl Into<String>) -> Self {
        Outcome {
            verdict,
            message: message.into(),
            data: None,
            concerned: None,
        }
    }
    /// Attaches structured figures (see [`Outcome::data`]).
    pub fn with_data(mut self, data: serde_json::Value) -> Self {
        self.data = Some(data);
        self
    }
    /// Names the units a per-model finding concerns (see [`Outcome::concerned`]).
    pub fn concerning(mut self, units: Vec<String>) -> Self {
        self.concerned = Some(units);
        self
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
    /// Board actions the test may run (`login_*`: every `login_<surface>` action), for `hilsec
    /// list`; the harness's own `sync`, `recover` and `read_identity` are not listed.
    pub actions: &'static [&'static str],
}

/// Action names as a test lists them, with `prefix*` expanded to the model's actions of that
/// prefix (e.g. `login_*`: every login surface).
pub fn expand_actions(names: &[&str], model: &Model) -> Vec<String> {
    let mut out = Vec::new();
    for a in names {
        match a.strip_suffix('*') {
            Some(prefix) => out.extend(
                model
                    .actions
                    .keys()
                    .filter(|k| k.starts_with(prefix))
                    .cloned(),
            ),
            None => out.push(a.to_string()),
        }
    }
    out
}

/// A conformance test. Per-unit tests implement `run_unit`, per-model tests `run_model`.
#[async_trait::async_trait]
pub trait Test: Send + Sync {
    fn info(&self) -> &TestInfo;

    /// The actions this test would run on `model`: [`TestInfo::actions`] with `login_*`
    /// expanded to the model's login surfaces. Tests whose actions come from declarations
    /// (e.g. the update action's name) override it.
    fn actions(&self, model: &Model) -> Vec<String> {
        expand_actions(self.info().actions, model)
    }

    /// `Some(reason)` when the test does not apply to this model (e.g. an action it needs is not
    /// declared, or the declarations exclude it).
    fn not_applicable(&self, _model: &Model) -> Option<String> {
        None
    }

    /// `Some(reason)` when the test does not apply to `unit` of `model` in a run with `env`
    /// (e.g. a comparison with `--baseline` when none was given, or the baseline has no record
    /// of the unit). The runner decides per-unit tests with this, and `hilsec list` shows the
    /// same decision. By default: [`Test::not_applicable`].
    fn not_applicable_in(&self, model: &Model, _unit: &Unit, _env: &RunEnv) -> Option<String> {
        self.not_applicable(model)
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

/// How the device's last exchange in a test ended: the basis of the rule that `pass` and `fail`
/// need a usable answer from the device.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Liveness {
    /// No exchange with the device in this test (e.g. a judgement on declarations only).
    #[default]
    NoExchange,
    /// The last action got an answer the recipe understood (a match or a refusal).
    Answered,
    /// The last action waited in vain: the device said nothing usable within the timeout.
    Silent(String),
    /// The link closed under the last action (EOF, hang-up, reset connection).
    Closed(String),
}

impl Liveness {
    /// True when the device's last word was a usable answer (or there was no exchange).
    pub fn usable(&self) -> bool {
        matches!(self, Liveness::NoExchange | Liveness::Answered)
    }
}

/// What the runner knows about a unit when a test body has ended (or was cut off).
#[derive(Debug, Clone, Default)]
pub struct EndState {
    /// Device failures the test confirmed from usable answers while it ran
    /// ([`Device::confirm_finding`]), in order.
    pub findings: Vec<String>,
    /// How the device's last exchange ended.
    pub liveness: Liveness,
    /// `Some(status)` when the unit's process is known to have exited.
    pub exited: Option<String>,
}

/// The one rule every per-unit verdict passes through, whatever the test's own care:
///
/// 1. A confirmed finding stands: if the test confirmed a device failure from a usable answer
///    and then ended in `error`/`inconclusive` (a later timeout, the test's time limit, a dead
///    link), the verdict is `fail` with the finding, and the message adds what could not be
///    completed.
/// 2. Otherwise `pass` and `fail` need a usable answer: when the device's last exchange was
///    silence or a closed link, or its process has exited, the verdict becomes `error`, saying
///    what the test would have concluded.
pub fn settle(outcome: Outcome, end: &EndState) -> Outcome {
    if !end.findings.is_empty() {
        return match outcome.verdict {
            Verdict::Fail => outcome,
            _ => {
                let mut o = Outcome {
                    verdict: Verdict::Fail,
                    message: format!(
                        "{}; the test could not complete after that: {}",
                        end.findings.join("; "),
                        outcome.message
                    ),
                    ..outcome
                };
                o.concerned = None;
                o
            }
        };
    }
    if !matches!(outcome.verdict, Verdict::Pass | Verdict::Fail) {
        return outcome;
    }
    let why = if let Some(st) = &end.exited {
        Some(format!("the unit's process has exited ({st})"))
    } else {
        match &end.liveness {
            Liveness::Silent(e) => Some(format!("the device went silent ({e})")),
            Liveness::Closed(e) => Some(format!("the link to the device closed ({e})")),
            _ => None,
        }
    };
    match why {
        Some(why) => Outcome {
            verdict: Verdict::Error,
            message: format!(
                "no usable answer from the device at the end of the test: {why}; a {} needs one (the test would have said: {})",
                outcome.verdict, outcome.message
            ),
            ..outcome
        },
        None => outcome,
    }
}

#[cfg(test)]
mod settle_tests {
    use super::*;

    fn end(findings: &[&str], liveness: Liveness, exited: Option<&str>) -> EndState {
        EndState {
            findings: findings.iter().map(|s| s.to_string()).collect(),
            liveness,
            exited: exited.map(str::to_string),
        }
    }

    #[test]
    fn pass_after_silence_is_error() {
        let o = settle(
            Outcome::pass("locked out"),
            &end(&[], Liveness::Silent("no match".into()), None),
        );
        assert_eq!(o.verdict, Verdict::Error);
        assert!(o.message.contains("locked out"), "{}", o.message);
    }

    #[test]
    fn fail_after_closed_link_is_error() {
        let o = settle(
            Outcome::fail("bricked"),
            &end(&[], Liveness::Closed("EOF".into()), None),
        );
        assert_eq!(o.verdict, Verdict::Error);
    }

    #[test]
    fn exited_process_voids_a_pass() {
        let o = settle(
            Outcome::pass("ok"),
            &end(&[], Liveness::Answered, Some("signal 9")),
        );
        assert_eq!(o.verdict, Verdict::Error);
        assert!(o.message.contains("signal 9"));
    }

    #[test]
    fn confirmed_finding_survives_a_later_error() {
        let o = settle(
            Outcome::error("timed out"),
            &end(&["ACCEPTED root/admin"], Liveness::Silent("x".into()), None),
        );
        assert_eq!(o.verdict, Verdict::Fail);
        assert!(o.message.contains("root/admin") && o.message.contains("timed out"));
    }

    #[test]
    fn usable_answers_keep_the_verdict() {
        for v in [Verdict::Pass, Verdict::Fail] {
            let o = settle(Outcome::new(v, "m"), &end(&[], Liveness::Answered, None));
            assert_eq!(o.verdict, v);
        }
        let o = settle(
            Outcome::inconclusive("m"),
            &end(&[], Liveness::Silent("x".into()), None),
        );
        assert_eq!(o.verdict, Verdict::Inconclusive);
    }
}
