//! Board files: what hardware exists and how to drive it, validated into typed form.
//!
//! `model` is the file's shape as written; `load` reads files (following `extends`), checks
//! every reference, regex, duration and template, and produces the resolved types below. The
//! rest of the harness only ever sees resolved boards: nothing runs on a file that has errors.

pub mod diag;
mod load;
pub mod model;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use regex::bytes::Regex;

pub use diag::{BoardError, BoardErrors};
pub use load::{load_boards, LoadMode};
pub use model::PasswordMechanism;

use crate::template::Template;

/// The units of one model found in the given board files.
#[derive(Debug, Clone)]
pub struct Board {
    pub model: Arc<Model>,
    pub units: Vec<Unit>,
}

/// What all units of a model share.
#[derive(Debug)]
pub struct Model {
    pub name: String,
    pub manufacturer: Option<String>,
    /// The file the model was defined in.
    pub source: PathBuf,
    pub firmware: Option<String>,
    pub declarations: Declarations,
    pub emulator: Option<Emulator>,
    pub interfaces: BTreeMap<String, Interface>,
    pub actions: BTreeMap<String, Action>,
}

impl Model {
    pub fn has_action(&self, name: &str) -> bool {
        self.actions.contains_key(name)
    }
}

/// The manufacturer's declarations with defaults applied.
#[derive(Debug, Clone)]
pub struct Declarations {
    pub password_mechanism: Option<PasswordMechanism>,
    pub login_user: String,
    pub min_password_length: usize,
    pub brute_force_attempts: usize,
    pub throttle_threshold: Duration,
    pub public_identifiers: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmulatorKind {
    Sim,
    Qemu,
    Renode,
    Process,
}

#[derive(Debug, Clone)]
pub struct Emulator {
    pub kind: EmulatorKind,
    pub command: String,
    pub args: Vec<Template>,
    pub ready: regex::Regex,
    pub ready_timeout: Duration,
}

#[derive(Debug, Clone)]
pub enum Interface {
    Serial(SerialSpec),
}

impl Interface {
    pub fn default_timeout(&self) -> Duration {
        match self {
            Interface::Serial(s) => s.timeout,
        }
    }
}

#[derive(Debug, Clone)]
pub struct SerialSpec {
    pub endpoint: SerialEndpoint,
    pub baud: u32,
    pub timeout: Duration,
}

#[derive(Debug, Clone)]
pub enum SerialEndpoint {
    Tty(Template),
    Tcp(Template),
}

#[derive(Debug, Clone)]
pub struct Action {
    pub name: String,
    pub params: Vec<String>,
    pub secret_params: Vec<String>,
    pub steps: Vec<Step>,
}

#[derive(Debug, Clone)]
pub enum Step {
    Send {
        on: String,
        text: Template,
        flush: bool,
    },
    Expect {
        on: String,
        pattern: Regex,
        reject: Option<Regex>,
        timeout: Duration,
    },
    Wait(Duration),
    Call {
        action: String,
        args: BTreeMap<String, Template>,
    },
}

/// One physical or emulated unit.
#[derive(Debug, Clone)]
pub struct Unit {
    pub name: String,
    pub serial: Option<String>,
    pub mac: Option<String>,
    pub firmware: Option<String>,
    pub password: Option<SecretSpec>,
    pub vars: BTreeMap<String, String>,
    /// The file the unit was declared in.
    pub source: PathBuf,
}

/// Where a unit's secret comes from, resolved as far as possible at load time.
#[derive(Clone, PartialEq, Eq)]
pub enum SecretSpec {
    /// Known now (a value in the board file or an environment variable).
    Known(String),
    /// Read from the device by running `action` and taking its capture `capture`.
    FromAction { action: String, capture: String },
}

impl std::fmt::Debug for SecretSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretSpec::Known(_) => f.write_str("Known(«redacted»)"),
            SecretSpec::FromAction { action, capture } => {
                write!(f, "FromAction({action}.{capture})")
            }
        }
    }
}

/// Default timeout of a step when neither it nor its interface sets one.
pub const DEFAULT_STEP_TIMEOUT: Duration = Duration::from_secs(10);
