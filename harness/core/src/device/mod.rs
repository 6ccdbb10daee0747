//! A unit as the suites see it: named actions, identity, declarations and secrets — never the
//! device's own commands.
//!
//! `Device` owns the unit's open interfaces (opened on first use, reopened after a drop) and runs
//! action recipes from the board file step by step, every wait bounded by a timeout.
//!
//! This module is the facade: the public API the runner and the suites use, and what the device
//! tracks across actions (liveness, confirmed findings, an unreachable link, memo, secrets).
//! How links are opened lives in `link` and what each step kind does in `steps`, so that
//! neither is in the way of reading the other.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::board::{Interface, Model, SecretSpec, Unit};
use crate::iface::serial::Console;
use crate::iface::LinkError;
use crate::secret::{Redactor, SecretValue};
use crate::template::Vars;
use crate::transcript::Transcript;

mod emulated;
pub use emulated::LockTestTarget;
mod link;
mod network;
pub use network::{OwnBroker, SurfaceScan};
mod steps;

use link::Link;

/// Why an action could not be carried out. These are never a device *refusal* (see
/// [`ActionOutcome::rejected`]); they mean the harness could not get an answer.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    #[error("the board defines no action {0:?}")]
    NotDefined(String),
    #[error("action {action:?}, step {step}: {source}")]
    Link {
        action: String,
        step: String,
        #[source]
        source: LinkError,
    },
    #[error("action {action:?}, step {step}: {message}")]
    Template {
        action: String,
        step: String,
        message: String,
    },
    /// The emulator could not do what a step asked (reset, power cycle): a bench problem.
    #[error("action {action:?}, step {step}: emulator: {message}")]
    Emulator {
        action: String,
        step: String,
        message: String,
    },
    #[error("action {action:?} needs parameter {param:?}")]
    MissingParam { action: String, param: String },
    #[error("the unit's password comes from action {action:?}, which captured no {capture:?}")]
    NoCapture { action: String, capture: String },
    #[error("action {action:?}: actions nest too deeply")]
    TooDeep { action: String },
}

impl ActionError {
    /// True when the device stopped answering or the link dropped (as opposed to a harness or
    /// board-file problem).
    pub fn is_device_silence(&self) -> bool {
        matches!(
            self,
            ActionError::Link {
                source: LinkError::Timeout { .. } | LinkError::Closed(_),
                ..
            }
        )
    }

    /// True when the link closed under the action (as opposed to waiting in vain).
    pub fn is_link_closed(&self) -> bool {
        matches!(
            self,
            ActionError::Link {
                source: LinkError::Closed(_),
                ..
            }
        )
    }
}

/// What an action produced.
#[derive(Debug, Clone, Default)]
pub struct ActionOutcome {
    /// `Some(text)` when a `reject` pattern matched: the device refused (e.g. "Login incorrect").
    pub rejected: Option<String>,
    /// Named captures of all `expect` steps.
    pub captures: BTreeMap<String, String>,
    /// `Some(text)` when an `accept` pattern matched (`text` is what it matched, trimmed, e.g.
    /// the shell prompt `#`; for `get`, `HTTP <status>`; for an MQTT `await`, the payload; for
    /// a Modbus read, the values): the device was already where the action's remaining steps would
    /// have brought it (a login that gave a shell right after the user name, so no password
    /// was asked), and those steps were skipped. The action counts as accepted. Set also when
    /// the `accept` matched in an action this one called (whose remaining steps were skipped;
    /// the caller's went on). `None` when the action ran all its steps or was refused.
    pub shortcut: Option<String>,
    pub elapsed: Duration,
}

impl ActionOutcome {
    pub fn accepted(&self) -> bool {
        self.rejected.is_none()
    }
}

/// How long a fetch of a declared URL may take when the board declares no http interface.
pub const DISCLOSURE_HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// What a run provides to every unit besides its board file.
#[derive(Debug, Clone, Default)]
pub struct RunEnv {
    /// The embedded MQTT broker, when one was started.
    pub broker: Option<std::net::SocketAddr>,
    /// An earlier run's `results.json` (`--baseline`), for tests that compare with it.
    pub baseline: Option<Arc<serde_json::Value>>,
    /// Where the runner's events go, for progress of long steps (a flash).
    pub events: Option<tokio::sync::mpsc::UnboundedSender<crate::event::Event>>,
}

/// Bytes passed to an action (e.g. an update image), by parameter name.
pub type Data = BTreeMap<String, Arc<Vec<u8>>>;

/// One unit with its interfaces.
pub struct Device {
    pub unit: Unit,
    pub model: Arc<Model>,
    globals: Vars,
    links: HashMap<String, Link>,
    transcript: Transcript,
    redactor: Redactor,
    password: Option<SecretValue>,
    memo: BTreeMap<String, String>,
    env: RunEnv,
    http: Option<Arc<crate::iface::http::HttpClient>>,
    /// Device failures confirmed by the running test (see [`Device::confirm_finding`]).
    findings: Vec<String>,
    /// How the last exchange with the device ended (see [`crate::test::settle`]).
    liveness: crate::test::Liveness,
    /// Why a link of the unit could not be opened, once that happened: the unit is unreachable.
    unreachable: Option<String>,
    /// Console expects answered so far (see `run_action_with_data`: a link found closed
    /// before any answer of an action is reconnected and the action started over).
    console_answers: u64,
    /// Endpoints connected once per attempt (SSH logins, the own broker) that answered at least
    /// once: a connection refused there later is the unit turning us away (a lockout, a
    /// connection limit), not an unreachable unit.
    reached: std::collections::BTreeSet<String>,
    /// Set by a step that sends a request once per attempt (HTTP, an SSH login) when it fails:
    /// the action is not started over, which would send the credential twice.
    no_retry: bool,
    /// The unit's emulator, for `emulator` steps and the console it connected at start.
    emulator: Option<crate::emulator::EmulatorHandle>,
}

impl Device {
    pub fn new(
        unit: Unit,
        model: Arc<Model>,
        emulator_vars: &BTreeMap<String, String>,
        env: &RunEnv,
    ) -> Device {
        let mut globals = Vars::new();
        let mut put = |k: &str, v: Option<&String>| {
            if let Some(v) = v {
                globals.insert(k.to_string(), SecretValue::plain(v.clone()));
            }
        };
        put("unit.name", Some(&unit.name));
        put("unit.serial", unit.serial.as_ref());
        put("unit.mac", unit.mac.as_ref());
        put("unit.address", unit.address.as_ref());
        put("unit.firmware", unit.firmware.as_ref());
        put("model.name", Some(&model.name));
        put("model.manufacturer", model.manufacturer.as_ref());
        put(
            "declarations.login_user",
            Some(&model.declarations.login_user),
        );
        for (k, v) in &unit.vars {
            put(&format!("unit.{k}"), Some(v));
        }
        let dir = model.source.parent().map(|d| {
            let d = if d.as_os_str().is_empty() {
                std::path::Path::new(".")
            } else {
                d
            };
            d.canonicalize()
                .unwrap_or_else(|_| d.to_path_buf())
                .display()
                .to_string()
        });
        put("board.dir", dir.as_ref());
        if let Some(b) = env.broker {
            put("broker.address", Some(&b.to_string()));
            put("broker.host", Some(&b.ip().to_string()));
            put("broker.port", Some(&b.port().to_string()));
        }
        for (k, v) in emulator_vars {
            put(&format!("emulator.{k}"), Some(v));
        }
        let mut redactor = Redactor::default();
        let mut password = None;
        if let Some(SecretSpec::Known(p)) = &unit.password {
            redactor.add(p);
            globals.insert("secret.password".into(), SecretValue::secret(p.clone()));
            password = Some(SecretValue::secret(p.clone()));
        }
        Device {
            unit,
            model,
            globals,
            links: HashMap::new(),
            transcript: Transcript::new(),
            redactor,
            password,
            emulator: None,
            memo: BTreeMap::new(),
            env: env.clone(),
            http: None,
            findings: Vec::new(),
            liveness: crate::test::Liveness::NoExchange,
            unreachable: None,
            console_answers: 0,
            reached: std::collections::BTreeSet::new(),
            no_retry: false,
        }
    }

    /// A device whose interface `iface` is already open on `console` (e.g. one end of
    /// `tokio::io::duplex` given to [`Console::from_stream`]), with no emulator variables and
    /// a default [`RunEnv`]. For tests of recipes against a scripted peer, and for programs that
    /// embed the harness and open consoles themselves. `iface` should name a serial interface
    /// of `model` (its timeout is the steps' default); if the console closes, the next step on it
    /// reopens the interface as the board file describes it.
    pub fn with_console(
        unit: Unit,
        model: Arc<Model>,
        iface: &str,
        mut console: Console,
    ) -> Device {
        let mut d = Device::new(unit, model, &BTreeMap::new(), &RunEnv::default());
        console.set_transcript(d.transcript.clone());
        d.links.insert(iface.to_string(), Link::Console(console));
        d
    }

    /// What the run provides (broker, baseline).
    pub fn env(&self) -> &RunEnv {
        &self.env
    }

    /// Renders a template of the board (e.g. a declared URL) with the unit's variables.
    pub fn render(
        &self,
        t: &crate::template::Template,
    ) -> Result<String, crate::template::UnboundVar> {
        t.render(&self.globals).map(|r| r.text)
    }

    /// GET a URL the board declares (manufacturer pages), trusting the declared CAs; the
    /// exchange goes into the evidence.
    pub async fn http_get(
        &mut self,
        url: &str,
        basic_auth: Option<(&str, &str)>,
    ) -> Result<crate::iface::http::HttpExchange, crate::iface::http::HttpError> {
        let client = match &self.http {
            Some(c) => c.clone(),
            None => {
                let mut ca = Vec::new();
                if let Some(dd) = &self.model.declarations.disclosure {
                    for t in &dd.ca {
                        let p = self.render(t).map_err(|detail| {
                            crate::iface::http::HttpError::Tls {
                                path: std::path::PathBuf::from("[declarations.disclosure] ca"),
                                detail: detail.to_string(),
                            }
                        })?;
                        ca.push(std::path::PathBuf::from(p));
                    }
                }
                // The board's http interface says how long its web servers may take.
                let timeout = self
                    .model
                    .interfaces
                    .values()
                    .find_map(|i| match i {
                        Interface::Http(h) => Some(h.timeout),
                        _ => None,
                    })
                    .unwrap_or(DISCLOSURE_HTTP_TIMEOUT);
                let opts = crate::iface::http::HttpOptions {
                    ca,
                    timeout,
                    ..Default::default()
                };
                let c = Arc::new(crate::iface::http::HttpClient::new(&opts)?);
                self.http = Some(c.clone());
                c
            }
        };
        if let Some((_, p)) = basic_auth {
            self.redactor.add(p);
        }
        client.get(url, basic_auth, &self.transcript, "http").await
    }

    /// Facts a test leaves for later tests of the same unit (e.g. that the positive control of
    /// the update suite succeeded). Lives as long as the run.
    pub fn memo(&mut self) -> &mut BTreeMap<String, String> {
        &mut self.memo
    }

    /// Variables for templates outside actions (e.g. emulator arguments).
    /// The loopback ports chosen for the unit, as `{port.NAME}`.
    pub fn set_ports(&mut self, ports: &BTreeMap<String, u16>) {
        for (k, v) in ports {
            self.globals
                .insert(format!("port.{k}"), SecretValue::plain(v.to_string()));
        }
    }

    /// Gives the device its emulator (reset and power-cycle steps, the console connected at
    /// start).
    pub fn attach_emulator(&mut self, e: crate::emulator::EmulatorHandle) {
        self.emulator = Some(e);
    }

    /// The rendered `tcp` address of serial interface `iface`, if it is one.
    pub fn tcp_address(&self, iface: &str) -> Option<String> {
        match self.model.interfaces.get(iface)? {
            crate::board::Interface::Serial(crate::board::SerialSpec {
                endpoint: crate::board::SerialEndpoint::Tcp(a),
                ..
            }) => a.render(&self.globals).ok().map(|r| r.text),
            _ => None,
        }
    }

    pub fn globals(&self) -> &Vars {
        &self.globals
    }

    pub fn redactor(&self) -> &Redactor {
        &self.redactor
    }

    /// Marks a further string as secret for this unit's evidence.
    pub fn add_secret(&mut self, s: &str) {
        self.redactor.add(s);
    }

    /// Declares a value public (e.g. an entry of a published default-credential list), so it is
    /// shown in evidence even when the unit happens to use it as its password.
    pub fn mark_public(&mut self, value: &str) {
        self.redactor.add_public(value);
    }

    /// Records a device failure the test has just seen in a usable answer (e.g. a default
    /// credential accepted). It stands even if the test later errors or runs out of time: the
    /// runner turns such an end into `fail` with the finding (see [`crate::test::settle`]).
    pub fn confirm_finding(&mut self, text: impl Into<String>) {
        let text = text.into();
        self.transcript.note(format!("finding: {text}"));
        self.findings.push(text);
    }

    /// The findings confirmed in the current test, and how its last exchange ended: what the
    /// runner settles the verdict with. Resets both for the next test.
    pub fn take_end_state(&mut self) -> crate::test::EndState {
        crate::test::EndState {
            findings: std::mem::take(&mut self.findings),
            liveness: std::mem::take(&mut self.liveness),
            exited: None,
        }
    }

    /// How the last exchange with the device ended.
    pub fn liveness(&self) -> &crate::test::Liveness {
        &self.liveness
    }

    /// `Some(cause)` once a link of the unit could not be opened at all: its remaining tests
    /// cannot reach it.
    pub fn unreachable(&self) -> Option<&str> {
        self.unreachable.as_deref()
    }

    fn observe(&mut self, r: &Result<ActionOutcome, ActionError>) {
        use crate::test::Liveness;
        match r {
            Ok(_) => self.liveness = Liveness::Answered,
            Err(ActionError::Link { source, .. }) => match source {
                LinkError::Timeout { .. } => self.liveness = Liveness::Silent(source.to_string()),
                LinkError::Closed(_) | LinkError::Write(_) => {
                    self.liveness = Liveness::Closed(source.to_string())
                }
                LinkError::Open { .. } => {
                    self.liveness = Liveness::Closed(source.to_string());
                    if self.unreachable.is_none() {
                        self.unreachable = Some(source.to_string());
                    }
                }
                LinkError::Protocol(_) | LinkError::Refused(_) => {
                    self.liveness = Liveness::Answered
                }
            },
            Err(_) => {}
        }
    }

    /// Starts a fresh transcript (one per test). What the open links received since their last
    /// read (a late prompt, the rest of a flood) is recorded in it as *before test* (bounded)
    /// and dropped from the match buffers, so the test's first `expect` sees only new bytes.
    pub fn begin_test(&mut self) -> Transcript {
        self.findings.clear();
        self.liveness = crate::test::Liveness::NoExchange;
        self.transcript = Transcript::new();
        // An SSH session belongs to the test that logged in: no later test runs in the shell
        // of whatever login was accepted last (a universal default's, say).
        self.links.retain(|_, l| !matches!(l, Link::Ssh(_)));
        for l in self.links.values_mut() {
            l.begin(&self.transcript);
        }
        self.transcript.clone()
    }

    pub fn transcript(&self) -> &Transcript {
        &self.transcript
    }

    /// Adds a note to the current test's evidence.
    pub fn note(&self, text: impl AsRef<str>) {
        self.transcript.note(text)
    }

    pub fn has_action(&self, name: &str) -> bool {
        self.model.has_action(name)
    }

    /// The unit's own password: known from the board file, or read once through its action.
    pub async fn unit_password(&mut self) -> Result<Option<SecretValue>, ActionError> {
        if self.password.is_some() {
            return Ok(self.password.clone());
        }
        let (action, capture) = match self.unit.password.clone() {
            Some(SecretSpec::FromAction { action, capture }) => (action, capture),
            Some(SecretSpec::FromMemory {
                on,
                address,
                length,
            }) => {
                return self
                    .password_from_memory(&on, address, length)
                    .await
                    .map(Some)
            }
            _ => return Ok(None),
        };
        let out = self.run_action(&action, &[]).await?;
        let Some(p) = out.captures.get(&capture) else {
            return Err(ActionError::NoCapture { action, capture });
        };
        self.redactor.add(p);
        let v = SecretValue::secret(p.clone());
        self.globals.insert("secret.password".into(), v.clone());
        self.password = Some(v.clone());
        Ok(Some(v))
    }

    /// The unit's password as the board declares it sits in memory (OTP, a configuration
    /// region): read quietly through debug port `on` (the bytes never reach the evidence),
    /// text up to the first NUL or erased byte.
    async fn password_from_memory(
        &mut self,
        on: &str,
        address: u64,
        length: usize,
    ) -> Result<SecretValue, ActionError> {
        let at = steps::At::new("(unit password)", "read from memory");
        let timeout = self.iface_timeout(on);
        let dbg = self.debug_link(&at, on, timeout).await?;
        let mut dbg = dbg.lock().await;
        dbg.set_quiet(true);
        let read = tokio::time::timeout(
            timeout + Duration::from_secs(5),
            dbg.read_memory(address, length),
        )
        .await;
        dbg.set_quiet(false);
        drop(dbg);
        let bytes = match read {
            Ok(r) => r.map_err(|e| at.link(e))?,
            Err(_) => {
                return Err(at.link(LinkError::Timeout {
                    pattern: "an answer to read_memory".into(),
                    waited: timeout,
                    tail: String::new(),
                }))
            }
        };
        let end = bytes
            .iter()
            .position(|b| *b == 0 || *b == 0xff)
            .unwrap_or(bytes.len());
        let text = std::str::from_utf8(&bytes[..end])
            .ok()
            .filter(|t| !t.is_empty() && t.chars().all(|c| !c.is_control()))
            .ok_or_else(|| {
                at.link(LinkError::Protocol(format!(
                    "the {length} bytes at {address:#010x} hold no password text (empty, erased, or not printable UTF-8); check the address the board declares"
                )))
            })?
            .to_string();
        self.redactor.add(&text);
        self.transcript.note(format!(
            "read the unit's password through {on}: {} bytes at {address:#010x} (not shown)",
            text.len()
        ));
        let v = SecretValue::secret(text);
        self.globals.insert("secret.password".into(), v.clone());
        self.password = Some(v.clone());
        Ok(v)
    }

    /// Runs a named action with arguments.
    pub async fn run_action(
        &mut self,
        name: &str,
        args: &[(&str, SecretValue)],
    ) -> Result<ActionOutcome, ActionError> {
        self.run_action_with_data(name, args, &Data::new()).await
    }

    /// Runs a named action with text arguments and data (bytes) arguments.
    pub async fn run_action_with_data(
        &mut self,
        name: &str,
        args: &[(&str, SecretValue)],
        data: &Data,
    ) -> Result<ActionOutcome, ActionError> {
        // A password kept in the unit's memory is read before the first action, so recipes
        // can use {secret.password} as with one written in the board file; not before
        // `prepare`, which may first have to power the unit on.
        if self.password.is_none() && name != "prepare" {
            if let Some(SecretSpec::FromMemory {
                on,
                address,
                length,
            }) = self.unit.password.clone()
            {
                self.password_from_memory(&on, address, length).await?;
            }
        }
        let start = Instant::now();
        let mut out = ActionOutcome::default();
        // A parameter the action declares secret is secret whoever passes it (a password the
        // suite generated included), from the first line of evidence on: one form everywhere.
        let secret_params = self
            .model
            .actions
            .get(name)
            .map(|a| a.secret_params.clone())
            .unwrap_or_default();
        let args: BTreeMap<String, SecretValue> = args
            .iter()
            .map(|(k, v)| {
                let v = if secret_params.iter().any(|p| p == k) && !v.is_secret() {
                    SecretValue::secret(v.expose())
                } else {
                    v.clone()
                };
                if v.is_secret() {
                    self.redactor.add(v.expose());
                }
                (k.to_string(), v)
            })
            .collect();
        self.transcript.note(format!(
            "action {name}({})",
            args.iter()
                .map(
                    |(k, v)| if v.is_secret() && !self.redactor.is_public(v.expose()) {
                        format!("{k}={}", crate::secret::REDACTED)
                    } else {
                        format!("{k}={:?}", v.expose())
                    }
                )
                .collect::<Vec<_>>()
                .join(", ")
        ));
        for (k, v) in data {
            self.transcript
                .note(format!("action {name}: data {k} = {} bytes", v.len()));
        }
        // Every action is a new web session: one login attempt's cookies never reach the next.
        for l in self.links.values() {
            if let Link::Http(c) = l {
                c.new_session();
            }
        }
        let answered = self.console_answers;
        self.no_retry = false;
        let mut r = self
            .run_inner(name, args.clone(), data.clone(), &mut out, 0)
            .await
            .map(|()| ActionOutcome::default());
        if let Err(ActionError::Link {
            source: LinkError::Closed(why),
            ..
        }) = &r
        {
            if self.console_answers == answered && !self.no_retry {
                // No expect was answered before the link closed: the device had ended the session
                // before this action began (a logout, a login program that exits after three
                // failures). Connect again and start the action over, once.
                self.transcript.note(format!(
                    "action {name}: the link closed before the device answered anything of this action ({why}); connecting again and starting the action over"
                ));
                out = ActionOutcome::default();
                r = self
                    .run_inner(name, args, data.clone(), &mut out, 0)
                    .await
                    .map(|()| ActionOutcome::default());
            }
        }
        self.observe(&r);
        r?;
        out.elapsed = start.elapsed();
        self.transcript.note(match (&out.rejected, &out.shortcut) {
            (Some(r), _) => format!(
                "action {name}: refused by the device ({r:?}) after {} ms",
                out.elapsed.as_millis()
            ),
            (None, Some(a)) => format!(
                "action {name}: accepted early ({a:?}; remaining steps skipped) after {} ms",
                out.elapsed.as_millis()
            ),
            (None, None) => format!("action {name}: done after {} ms", out.elapsed.as_millis()),
        });
        Ok(out)
    }
}
