//! A unit as the suites see it: named actions, identity, declarations and secrets — never the
//! device's own commands.
//!
//! `Device` owns the unit's open interfaces (opened on first use, reopened after a drop) and runs
//! action recipes from the board file step by step, every wait bounded by a timeout.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::board::{
    Body, ChunkEncoding, Interface, ModbusWriteTarget, Model, MqttBroker, SecretSpec,
    SerialEndpoint, Step, Unit,
};
use crate::iface::modbus::ModbusLink;
use crate::iface::mqtt::{split_address, MqttLink, MqttParams};
use crate::iface::serial::{Console, LinkError, Matched, Outcomes};
use crate::secret::{Redactor, SecretValue};
use crate::template::Vars;
use crate::transcript::Transcript;

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
}

/// An open connection of one of the unit's interfaces.
enum Link {
    Console(Console),
    Mqtt(MqttLink),
    Modbus(ModbusLink),
    Http(Arc<crate::iface::http::HttpClient>),
}

impl Link {
    fn is_closed(&self) -> bool {
        match self {
            Link::Console(c) => c.is_closed(),
            Link::Mqtt(m) => m.is_closed(),
            Link::Modbus(m) => m.is_closed(),
            Link::Http(_) => false,
        }
    }

    /// Switches the link to the test's transcript, recording what was left over from before
    /// the test there (marked as such) and dropping it from what the test will match.
    fn begin(&mut self, t: &Transcript) {
        match self {
            Link::Console(c) => {
                c.set_transcript(t.clone());
                c.drain_before_test();
            }
            Link::Mqtt(m) => {
                m.set_transcript(t.clone());
                m.drain_before_test();
            }
            Link::Modbus(m) => m.set_transcript(t.clone()),
            Link::Http(_) => {}
        }
    }
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
            memo: BTreeMap::new(),
            env: env.clone(),
            http: None,
            findings: Vec::new(),
            liveness: crate::test::Liveness::NoExchange,
            unreachable: None,
        }
    }

    /// What the run provides (broker, baseline).
    pub fn env(&self) -> &RunEnv {
        &self.env
    }

    /// Renders a template of the board (e.g. a declared URL) with the unit's variables.
    pub fn render(&self, t: &crate::template::Template) -> Result<String, String> {
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
                                detail,
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
                LinkError::Protocol(_) => self.liveness = Liveness::Answered,
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
        let Some(SecretSpec::FromAction { action, capture }) = self.unit.password.clone() else {
            return Ok(None);
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
        let start = Instant::now();
        let mut out = ActionOutcome::default();
        let args: BTreeMap<String, SecretValue> = args
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        self.transcript.note(format!(
            "action {name}({})",
            args.iter()
                .map(|(k, v)| if v.is_secret() {
                    format!("{k}={}", crate::secret::REDACTED)
                } else {
                    format!("{k}={:?}", v.expose())
                })
                .collect::<Vec<_>>()
                .join(", ")
        ));
        for (k, v) in data {
            self.transcript
                .note(format!("action {name}: data {k} = {} bytes", v.len()));
        }
        let r = self
            .run_inner(name, args, data.clone(), &mut out, 0)
            .await
            .map(|()| ActionOutcome::default());
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

    /// The open link of interface `iface`, opened (or reopened after a drop) on demand.
    async fn link(&mut self, iface: &str, timeout: Duration) -> Result<&mut Link, LinkError> {
        if self.links.get(iface).is_some_and(Link::is_closed) {
            self.links.remove(iface);
        }
        if !self.links.contains_key(iface) {
            let spec =
                self.model
                    .interfaces
                    .get(iface)
                    .cloned()
                    .ok_or_else(|| LinkError::Open {
                        endpoint: iface.to_string(),
                        detail: "no such interface".into(),
                    })?;
            let globals = &self.globals;
            let render = |t: &crate::template::Template| {
                t.render(globals)
                    .map(|r| r.text)
                    .map_err(|detail| LinkError::Open {
                        endpoint: iface.to_string(),
                        detail,
                    })
            };
            let t = self.transcript.clone();
            let link = match &spec {
                Interface::Serial(s) => match &s.endpoint {
                    SerialEndpoint::Tty(p) => {
                        let path = render(p)?;
                        t.note(format!("{iface}: opening {path}"));
                        Link::Console(Console::open_tty(iface, &path, s.baud, t)?)
                    }
                    SerialEndpoint::Tcp(a) => {
                        let addr = render(a)?;
                        t.note(format!("{iface}: connecting to {addr}"));
                        Link::Console(Console::open_tcp(iface, &addr, timeout, t).await?)
                    }
                },
                Interface::Mqtt(m) => {
                    let addr = match &m.broker {
                        MqttBroker::Embedded => match globals.get("broker.address") {
                            Some(a) => a.expose().to_string(),
                            None => {
                                return Err(LinkError::Open {
                                    endpoint: iface.into(),
                                    detail: "no embedded broker is running".into(),
                                })
                            }
                        },
                        MqttBroker::Address(a) => render(a)?,
                    };
                    let (host, port) = split_address(&addr).map_err(|detail| LinkError::Open {
                        endpoint: iface.into(),
                        detail,
                    })?;
                    let client_id = match &m.client_id {
                        Some(c) => render(c)?,
                        None => format!("hilsec-{}", self.unit.name),
                    };
                    let credentials = match (&m.username, &m.password) {
                        (Some(u), p) => {
                            let pass = match p {
                                Some(p) => {
                                    let r =
                                        p.render(globals).map_err(|detail| LinkError::Open {
                                            endpoint: iface.to_string(),
                                            detail,
                                        })?;
                                    for s in &r.secrets {
                                        self.redactor.add(s);
                                    }
                                    r.text
                                }
                                None => String::new(),
                            };
                            Some((render(u)?, pass))
                        }
                        _ => None,
                    };
                    let params = MqttParams {
                        host,
                        port,
                        client_id,
                        credentials,
                    };
                    Link::Mqtt(MqttLink::connect(iface, &params, timeout, t).await?)
                }
                Interface::Http(h) => {
                    let mut ca = Vec::new();
                    if let Some(c) = &h.ca {
                        ca.push(std::path::PathBuf::from(render(c)?));
                    }
                    let opts = crate::iface::http::HttpOptions {
                        ca,
                        timeout,
                        ..Default::default()
                    };
                    let c = crate::iface::http::HttpClient::new(&opts).map_err(|e| {
                        LinkError::Open {
                            endpoint: iface.to_string(),
                            detail: e.to_string(),
                        }
                    })?;
                    Link::Http(Arc::new(c))
                }
                Interface::ModbusTcp(m) => {
                    let addr = render(&m.address)?;
                    Link::Modbus(
                        ModbusLink::connect_tcp(iface, &addr, m.unit_id, timeout, t).await?,
                    )
                }
                Interface::ModbusRtu(m) => match &m.endpoint {
                    SerialEndpoint::Tty(p) => {
                        let path = render(p)?;
                        Link::Modbus(ModbusLink::open_rtu_tty(
                            iface, &path, m.baud, m.unit_id, t,
                        )?)
                    }
                    SerialEndpoint::Tcp(a) => {
                        let addr = render(a)?;
                        Link::Modbus(
                            ModbusLink::connect_rtu_tcp(iface, &addr, m.unit_id, timeout, t)
                                .await?,
                        )
                    }
                },
            };
            self.links.insert(iface.to_string(), link);
        }
        self.links
            .get_mut(iface)
            .ok_or_else(|| LinkError::Closed("link vanished".into()))
    }

    fn iface_timeout(&self, on: &str) -> Duration {
        self.model
            .interfaces
            .get(on)
            .map(Interface::default_timeout)
            .unwrap_or(crate::board::DEFAULT_STEP_TIMEOUT)
    }

    fn run_inner<'a>(
        &'a mut self,
        name: &'a str,
        args: BTreeMap<String, SecretValue>,
        data: Data,
        out: &'a mut ActionOutcome,
        depth: usize,
    ) -> futures::future::BoxFuture<'a, Result<(), ActionError>> {
        Box::pin(async move {
            if depth > 8 {
                return Err(ActionError::TooDeep {
                    action: name.into(),
                });
            }
            let action = self
                .model
                .actions
                .get(name)
                .cloned()
                .ok_or_else(|| ActionError::NotDefined(name.to_string()))?;
            let mut vars = self.globals.clone();
            let mut blobs = Data::new();
            for p in &action.params {
                if let Some(d) = data.get(p) {
                    let n = d.len();
                    vars.insert(format!("{p}.size"), SecretValue::plain(n.to_string()));
                    vars.insert(
                        format!("{p}.size_hi"),
                        SecretValue::plain(((n >> 16) & 0xffff).to_string()),
                    );
                    vars.insert(
                        format!("{p}.size_lo"),
                        SecretValue::plain((n & 0xffff).to_string()),
                    );
                    blobs.insert(p.clone(), d.clone());
                    continue;
                }
                let v = args
                    .get(p)
                    .cloned()
                    .ok_or_else(|| ActionError::MissingParam {
                        action: name.into(),
                        param: p.clone(),
                    })?;
                let v = if action.secret_params.contains(p) && !v.is_secret() {
                    SecretValue::secret(v.expose())
                } else {
                    v
                };
                vars.insert(p.clone(), v);
            }
            // Subscribe before anything is sent, so an answer that comes fast is not missed.
            for step in action.steps.iter().flat_map(Step::walk) {
                if let Step::Await { on, filter, .. } = step {
                    if let Ok(f) = filter.render(&vars) {
                        let timeout = self.iface_timeout(on);
                        let link =
                            self.link(on, timeout)
                                .await
                                .map_err(|source| ActionError::Link {
                                    action: name.into(),
                                    step: "(subscribe)".into(),
                                    source,
                                })?;
                        if let Link::Mqtt(m) = link {
                            m.subscribe(&f.text, timeout).await.map_err(|source| {
                                ActionError::Link {
                                    action: name.into(),
                                    step: "(subscribe)".into(),
                                    source,
                                }
                            })?;
                        }
                    }
                }
            }
            let mut ctx = StepCtx {
                action: name,
                vars,
                blobs,
                depth,
                done: false,
            };
            self.run_steps(&action.steps, &mut ctx, out, "").await?;
            if !action.cleanup.is_empty() {
                // Cleanup neither changes the verdict nor the captures the caller sees.
                let mut scratch = ActionOutcome::default();
                let mut ctx = StepCtx {
                    action: name,
                    vars: ctx.vars.clone(),
                    blobs: Data::new(),
                    depth,
                    done: false,
                };
                self.run_steps(&action.cleanup, &mut ctx, &mut scratch, "cleanup ")
                    .await?;
            }
            Ok(())
        })
    }

    /// Runs `steps` in order; `prefix` numbers nested steps in error messages ("3.2").
    fn run_steps<'a, 'c: 'a>(
        &'a mut self,
        steps: &'a [Step],
        ctx: &'a mut StepCtx<'c>,
        out: &'a mut ActionOutcome,
        prefix: &'a str,
    ) -> futures::future::BoxFuture<'a, Result<(), ActionError>> {
        Box::pin(async move {
            for (i, step) in steps.iter().enumerate() {
                let step_no = format!("{prefix}{}", i + 1);
                self.run_step(step, ctx, out, &step_no).await?;
                if out.rejected.is_some() || ctx.done {
                    return Ok(());
                }
            }
            Ok(())
        })
    }

    async fn run_step(
        &mut self,
        step: &Step,
        ctx: &mut StepCtx<'_>,
        out: &mut ActionOutcome,
        step_no: &str,
    ) -> Result<(), ActionError> {
        let name = ctx.action;
        let link_err = |source| ActionError::Link {
            action: name.into(),
            step: step_no.to_string(),
            source,
        };
        let tmpl_err = |message| ActionError::Template {
            action: name.into(),
            step: step_no.to_string(),
            message,
        };
        match step {
            Step::Send {
                on,
                text,
                flush,
                timeout,
            } => {
                let r = text.render(&ctx.vars).map_err(tmpl_err)?;
                for s in &r.secrets {
                    self.redactor.add(s);
                }
                let timeout = *timeout;
                let Link::Console(c) = self.link(on, timeout).await.map_err(link_err)? else {
                    return Err(tmpl_err(format!("interface {on:?} is not a console")));
                };
                if *flush {
                    c.flush();
                }
                c.send(r.text.as_bytes(), &r.redacted, timeout)
                    .await
                    .map_err(link_err)?;
            }
            Step::Expect {
                on,
                pattern,
                accept,
                reject,
                timeout,
            } => {
                let Link::Console(c) = self.link(on, *timeout).await.map_err(link_err)? else {
                    return Err(tmpl_err(format!("interface {on:?} is not a console")));
                };
                let outcomes = Outcomes {
                    expect: pattern,
                    accept: accept.as_ref(),
                    reject: reject.as_ref(),
                };
                let m = c
                    .expect_outcomes(outcomes, *timeout)
                    .await
                    .map_err(link_err)?;
                ctx.conclude(m, out);
            }
            Step::Wait(d) => tokio::time::sleep(*d).await,
            Step::Call {
                action: callee,
                args: cargs,
            } => {
                let mut a = BTreeMap::new();
                for (k, t) in cargs {
                    let r = t.render(&ctx.vars).map_err(tmpl_err)?;
                    let v = if r.secrets.is_empty() {
                        SecretValue::plain(r.text)
                    } else {
                        SecretValue::secret(r.text)
                    };
                    a.insert(k.clone(), v);
                }
                // An `accept` in the callee ends the callee, not this action.
                self.run_inner(callee, a, Data::new(), out, ctx.depth + 1)
                    .await?;
                if out.rejected.is_some() {
                    return Ok(());
                }
                for (k, v) in &out.captures {
                    ctx.vars.insert(k.clone(), SecretValue::plain(v.clone()));
                }
            }
            Step::Chunks {
                data,
                size,
                encoding,
                steps,
            } => {
                let bytes = ctx
                    .blobs
                    .get(data)
                    .cloned()
                    .ok_or_else(|| tmpl_err(format!("no data {data:?} was passed")))?;
                let total = bytes.len();
                self.transcript.note(format!(
                    "action {name}: sending {total} bytes of {data} in chunks of {size}"
                ));
                for (index, chunk) in bytes.chunks(*size).enumerate() {
                    let offset = index * size;
                    let mut inner = StepCtx {
                        action: name,
                        vars: ctx.vars.clone(),
                        blobs: ctx.blobs.clone(),
                        depth: ctx.depth,
                        done: false,
                    };
                    let text = match encoding {
                        ChunkEncoding::Base64 => Some(base64::Engine::encode(
                            &base64::engine::general_purpose::STANDARD,
                            chunk,
                        )),
                        ChunkEncoding::Hex => {
                            Some(chunk.iter().map(|b| format!("{b:02x}")).collect())
                        }
                        ChunkEncoding::Raw => None,
                    };
                    if let Some(t) = text {
                        inner.vars.insert("chunk".into(), SecretValue::plain(t));
                    }
                    inner.blobs.insert("chunk".into(), Arc::new(chunk.to_vec()));
                    let put = |v: &mut Vars, k: &str, n: usize| {
                        v.insert(k.into(), SecretValue::plain(n.to_string()));
                    };
                    put(&mut inner.vars, "offset", offset);
                    put(&mut inner.vars, "offset_hi", (offset >> 16) & 0xffff);
                    put(&mut inner.vars, "offset_lo", offset & 0xffff);
                    put(&mut inner.vars, "length", chunk.len());
                    put(&mut inner.vars, "end", offset + chunk.len());
                    put(&mut inner.vars, "index", index);
                    let nested = format!("{step_no}.");
                    // Chunk transfers are long: the transcript keeps a note per chunk, not
                    // every byte of every chunk twice.
                    self.run_steps(steps, &mut inner, out, &nested).await?;
                    if inner.done {
                        // An `accept` inside the loop ends the whole action.
                        for (k, v) in &out.captures {
                            ctx.vars.insert(k.clone(), SecretValue::plain(v.clone()));
                        }
                        ctx.done = true;
                        return Ok(());
                    }
                    if out.rejected.is_some() {
                        return Ok(());
                    }
                }
            }
            Step::Publish {
                on,
                topic,
                body,
                qos,
                retain,
            } => {
                let topic = topic.render(&ctx.vars).map_err(tmpl_err)?.text;
                let (payload, shown) = match body {
                    Body::Text(ts) => match ts.first() {
                        Some(t) => {
                            let r = t.render(&ctx.vars).map_err(tmpl_err)?;
                            for s in &r.secrets {
                                self.redactor.add(s);
                            }
                            (r.text.into_bytes(), Some(r.redacted))
                        }
                        None => (Vec::new(), None),
                    },
                    Body::Data(d) => (
                        ctx.blobs
                            .get(d)
                            .map(|b| b.as_ref().clone())
                            .ok_or_else(|| tmpl_err(format!("no data {d:?} was passed")))?,
                        None,
                    ),
                };
                let timeout = self.iface_timeout(on);
                let Link::Mqtt(m) = self.link(on, timeout).await.map_err(link_err)? else {
                    return Err(tmpl_err(format!("interface {on:?} is not MQTT")));
                };
                m.publish(&topic, payload, *qos, *retain, shown.as_deref())
                    .await
                    .map_err(link_err)?;
            }
            Step::Await {
                on,
                filter,
                pattern,
                accept,
                reject,
                timeout,
            } => {
                let filter = filter.render(&ctx.vars).map_err(tmpl_err)?.text;
                let Link::Mqtt(m) = self.link(on, *timeout).await.map_err(link_err)? else {
                    return Err(tmpl_err(format!("interface {on:?} is not MQTT")));
                };
                let outcomes = Outcomes {
                    expect: pattern,
                    accept: accept.as_ref(),
                    reject: reject.as_ref(),
                };
                let got = m
                    .await_outcomes(&filter, outcomes, *timeout)
                    .await
                    .map_err(link_err)?;
                ctx.conclude(got, out);
            }
            Step::ModbusRead {
                on,
                table,
                address,
                count,
                pattern,
                accept,
                reject,
                capture,
                timeout,
            } => {
                let deadline = Instant::now() + *timeout;
                loop {
                    let left = deadline.saturating_duration_since(Instant::now());
                    let Link::Modbus(m) = self.link(on, left).await.map_err(link_err)? else {
                        return Err(tmpl_err(format!("interface {on:?} is not Modbus")));
                    };
                    let values = m
                        .read(
                            *table,
                            *address,
                            *count,
                            left.max(Duration::from_millis(100)),
                        )
                        .await
                        .map_err(link_err)?;
                    let text = values
                        .iter()
                        .map(|v| v.to_string())
                        .collect::<Vec<_>>()
                        .join(" ");
                    if let Some(r) = reject {
                        if r.is_match(text.as_bytes()) {
                            out.rejected = Some(text);
                            return Ok(());
                        }
                    }
                    if let Some(a) = accept {
                        if let Some(c) = a.captures(text.as_bytes()) {
                            let mut caps = named_captures(a, &c);
                            if let Some(name) = capture {
                                caps.insert(name.clone(), text.clone());
                                for (i, v) in values.iter().enumerate() {
                                    caps.insert(format!("{name}.{i}"), v.to_string());
                                }
                            }
                            ctx.conclude(
                                Matched {
                                    accepted: true,
                                    text: text.clone(),
                                    captures: caps,
                                    ..Default::default()
                                },
                                out,
                            );
                            return Ok(());
                        }
                    }
                    let caps = match pattern {
                        None => Some(BTreeMap::new()),
                        Some(p) => p.captures(text.as_bytes()).map(|c| {
                            p.capture_names()
                                .flatten()
                                .filter_map(|n| {
                                    c.name(n).map(|m| {
                                        (
                                            n.to_string(),
                                            String::from_utf8_lossy(m.as_bytes()).into_owned(),
                                        )
                                    })
                                })
                                .collect::<BTreeMap<_, _>>()
                        }),
                    };
                    if let Some(mut caps) = caps {
                        if let Some(c) = capture {
                            caps.insert(c.clone(), text.clone());
                            for (i, v) in values.iter().enumerate() {
                                caps.insert(format!("{c}.{i}"), v.to_string());
                            }
                        }
                        ctx.capture(caps, out);
                        break;
                    }
                    if Instant::now() >= deadline {
                        return Err(link_err(LinkError::Timeout {
                            pattern: pattern
                                .as_ref()
                                .map(|p| p.as_str().to_string())
                                .unwrap_or_default(),
                            waited: *timeout,
                            tail: text,
                        }));
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            Step::ModbusWrite {
                on,
                target,
                address,
                values,
                timeout,
            } => {
                let words: Vec<u16> = match values {
                    Body::Text(ts) => {
                        let mut w = Vec::new();
                        for t in ts {
                            let v = t.render(&ctx.vars).map_err(tmpl_err)?.text;
                            let n = parse_register(&v).ok_or_else(|| {
                                tmpl_err(format!(
                                    "{v:?} is not a register value (0-65535, 0x.., true/false)"
                                ))
                            })?;
                            w.push(n);
                        }
                        w
                    }
                    Body::Data(d) => {
                        let b = ctx
                            .blobs
                            .get(d)
                            .ok_or_else(|| tmpl_err(format!("no data {d:?} was passed")))?;
                        b.chunks(2)
                            .map(|c| u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))
                            .collect()
                    }
                };
                let Link::Modbus(m) = self.link(on, *timeout).await.map_err(link_err)? else {
                    return Err(tmpl_err(format!("interface {on:?} is not Modbus")));
                };
                match target {
                    ModbusWriteTarget::Coil => m
                        .write_coil(*address, words.first().copied().unwrap_or(0) != 0, *timeout)
                        .await
                        .map_err(link_err)?,
                    ModbusWriteTarget::Registers => {
                        if words.is_empty() || words.len() > 123 {
                            return Err(tmpl_err(format!(
                                "{} registers cannot be written at once (1 to 123)",
                                words.len()
                            )));
                        }
                        m.write_registers(*address, words, *timeout)
                            .await
                            .map_err(link_err)?
                    }
                }
            }
            Step::HttpGet {
                on,
                url,
                auth,
                pattern,
                accept,
                reject,
            } => {
                let url = url.render(&ctx.vars).map_err(tmpl_err)?.text;
                let creds = match auth {
                    Some((u, p)) => {
                        let u = u.render(&ctx.vars).map_err(tmpl_err)?.text;
                        let p = p.render(&ctx.vars).map_err(tmpl_err)?;
                        for s in &p.secrets {
                            self.redactor.add(s);
                        }
                        Some((u, p.text))
                    }
                    None => None,
                };
                let timeout = self.iface_timeout(on);
                let Link::Http(client) = self.link(on, timeout).await.map_err(link_err)? else {
                    return Err(tmpl_err(format!("interface {on:?} is not HTTP")));
                };
                let client = client.clone();
                let x = client
                    .get(
                        &url,
                        creds.as_ref().map(|(u, p)| (u.as_str(), p.as_str())),
                        &self.transcript,
                        on,
                    )
                    .await
                    .map_err(|e| {
                        link_err(match e {
                            crate::iface::http::HttpError::Timeout { url, waited } => {
                                LinkError::Timeout {
                                    pattern: format!("an answer from {url}"),
                                    waited,
                                    tail: String::new(),
                                }
                            }
                            other => LinkError::Closed(other.to_string()),
                        })
                    })?;
                let mut text = format!("HTTP {}\n", x.status).into_bytes();
                text.extend_from_slice(&x.body);
                if let Some(r) = reject {
                    if r.is_match(&text) {
                        out.rejected = Some(format!("HTTP {}", x.status));
                        return Ok(());
                    }
                }
                if let Some(a) = accept {
                    if let Some(c) = a.captures(&text) {
                        let m = Matched {
                            accepted: true,
                            text: format!("HTTP {}", x.status),
                            captures: named_captures(a, &c),
                            ..Default::default()
                        };
                        ctx.conclude(m, out);
                        return Ok(());
                    }
                }
                match pattern.captures(&text) {
                    Some(c) => {
                        let caps = pattern
                            .capture_names()
                            .flatten()
                            .filter_map(|n| {
                                c.name(n).map(|m| {
                                    (
                                        n.to_string(),
                                        String::from_utf8_lossy(m.as_bytes()).into_owned(),
                                    )
                                })
                            })
                            .collect();
                        ctx.capture(caps, out);
                    }
                    None => {
                        return Err(link_err(LinkError::Protocol(format!(
                        "{url} answered HTTP {}, which matches neither /{}/ nor the reject pattern",
                        x.status,
                        pattern.as_str()
                    ))))
                    }
                }
            }
            Step::ModbusIdentify {
                on,
                regular,
                capture,
                timeout,
            } => {
                let Link::Modbus(m) = self.link(on, *timeout).await.map_err(link_err)? else {
                    return Err(tmpl_err(format!("interface {on:?} is not Modbus")));
                };
                let objects = m.identify(*regular, *timeout).await.map_err(link_err)?;
                let caps = objects
                    .into_iter()
                    .map(|(k, v)| match capture {
                        Some(p) => (format!("{p}_{k}"), v),
                        None => (k, v),
                    })
                    .collect();
                ctx.capture(caps, out);
            }
        }
        Ok(())
    }
}

/// Variables and data of the action being run.
struct StepCtx<'a> {
    action: &'a str,
    vars: Vars,
    blobs: Data,
    depth: usize,
    /// An `accept` matched: the action's remaining steps are skipped.
    done: bool,
}

/// Named groups of `re` that took part in the match, as text.
fn named_captures(
    re: &regex::bytes::Regex,
    c: &regex::bytes::Captures<'_>,
) -> BTreeMap<String, String> {
    re.capture_names()
        .flatten()
        .filter_map(|n| {
            c.name(n).map(|m| {
                (
                    n.to_string(),
                    String::from_utf8_lossy(m.as_bytes()).into_owned(),
                )
            })
        })
        .collect()
}

impl StepCtx<'_> {
    /// Applies the outcome of a step that waited for the device: refused, accepted early
    /// (the rest of the action is skipped), or go on with its captures.
    fn conclude(&mut self, m: Matched, out: &mut ActionOutcome) {
        if m.rejected {
            out.rejected = Some(m.text.trim().to_string());
            return;
        }
        if m.accepted {
            out.shortcut = Some(m.text.trim().to_string());
            self.done = true;
        }
        self.capture(m.captures, out);
    }

    fn capture(&mut self, caps: BTreeMap<String, String>, out: &mut ActionOutcome) {
        for (k, v) in caps {
            self.vars.insert(k.clone(), SecretValue::plain(v.clone()));
            out.captures.insert(k, v);
        }
    }
}

/// A register or coil value as written in a board file.
fn parse_register(v: &str) -> Option<u16> {
    let v = v.trim();
    match v {
        "true" | "on" => return Some(1),
        "false" | "off" => return Some(0),
        _ => {}
    }
    if let Some(h) = v.strip_prefix("0x") {
        return u16::from_str_radix(h, 16).ok();
    }
    v.parse().ok()
}
