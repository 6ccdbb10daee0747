//! A unit as the suites see it: named actions, identity, declarations and secrets — never the
//! device's own commands.
//!
//! `Device` owns the unit's open interfaces (opened on first use, reopened after a drop) and runs
//! action recipes from the board file step by step, every wait bounded by a timeout.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::board::{Interface, Model, SecretSpec, SerialEndpoint, Step, Unit};
use crate::iface::serial::{Console, LinkError};
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
        step: usize,
        #[source]
        source: LinkError,
    },
    #[error("action {action:?}, step {step}: {message}")]
    Template {
        action: String,
        step: usize,
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
    pub elapsed: Duration,
}

impl ActionOutcome {
    pub fn accepted(&self) -> bool {
        self.rejected.is_none()
    }
}

/// One unit with its interfaces.
pub struct Device {
    pub unit: Unit,
    pub model: Arc<Model>,
    globals: Vars,
    consoles: HashMap<String, Console>,
    transcript: Transcript,
    redactor: Redactor,
    password: Option<SecretValue>,
}

impl Device {
    pub fn new(unit: Unit, model: Arc<Model>, emulator_vars: &BTreeMap<String, String>) -> Device {
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
            consoles: HashMap::new(),
            transcript: Transcript::new(),
            redactor,
            password,
        }
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

    /// Starts a fresh transcript (one per test) and drops stale input.
    pub fn begin_test(&mut self) -> Transcript {
        self.transcript = Transcript::new();
        for c in self.consoles.values_mut() {
            c.set_transcript(self.transcript.clone());
            c.flush();
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
                    format!("{k}=«secret»")
                } else {
                    format!("{k}={:?}", v.expose())
                })
                .collect::<Vec<_>>()
                .join(", ")
        ));
        self.run_inner(name, args, &mut out, 0).await?;
        out.elapsed = start.elapsed();
        self.transcript.note(match &out.rejected {
            Some(r) => format!(
                "action {name}: refused by the device ({r:?}) after {} ms",
                out.elapsed.as_millis()
            ),
            None => format!("action {name}: done after {} ms", out.elapsed.as_millis()),
        });
        Ok(out)
    }

    async fn console(&mut self, iface: &str, timeout: Duration) -> Result<&mut Console, LinkError> {
        let stale = self.consoles.get(iface).is_some_and(Console::is_closed);
        if stale {
            self.consoles.remove(iface);
        }
        if !self.consoles.contains_key(iface) {
            let spec = match self.model.interfaces.get(iface) {
                Some(Interface::Serial(s)) => s.clone(),
                None => {
                    return Err(LinkError::Open {
                        endpoint: iface.to_string(),
                        detail: "no such interface".into(),
                    })
                }
            };
            let render = |t: &crate::template::Template| {
                t.render(&self.globals)
                    .map(|r| r.text)
                    .map_err(|detail| LinkError::Open {
                        endpoint: iface.to_string(),
                        detail,
                    })
            };
            let c = match &spec.endpoint {
                SerialEndpoint::Tty(t) => {
                    let path = render(t)?;
                    self.transcript.note(format!("{iface}: opening {path}"));
                    Console::open_tty(iface, &path, spec.baud, self.transcript.clone())?
                }
                SerialEndpoint::Tcp(t) => {
                    let addr = render(t)?;
                    self.transcript
                        .note(format!("{iface}: connecting to {addr}"));
                    Console::open_tcp(iface, &addr, timeout, self.transcript.clone()).await?
                }
            };
            self.consoles.insert(iface.to_string(), c);
        }
        self.consoles
            .get_mut(iface)
            .ok_or_else(|| LinkError::Closed("console vanished".into()))
    }

    fn run_inner<'a>(
        &'a mut self,
        name: &'a str,
        args: BTreeMap<String, SecretValue>,
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
            for p in &action.params {
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
            for (i, step) in action.steps.iter().enumerate() {
                let step_no = i + 1;
                let link_err = |source| ActionError::Link {
                    action: name.into(),
                    step: step_no,
                    source,
                };
                match step {
                    Step::Send { on, text, flush } => {
                        let r = text
                            .render(&vars)
                            .map_err(|message| ActionError::Template {
                                action: name.into(),
                                step: step_no,
                                message,
                            })?;
                        for s in &r.secrets {
                            self.redactor.add(s);
                        }
                        let timeout = self
                            .model
                            .interfaces
                            .get(on)
                            .map(Interface::default_timeout)
                            .unwrap_or(crate::board::DEFAULT_STEP_TIMEOUT);
                        let c = self.console(on, timeout).await.map_err(link_err)?;
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
                        reject,
                        timeout,
                    } => {
                        let c = self.console(on, *timeout).await.map_err(link_err)?;
                        let m = c
                            .expect(pattern, reject.as_ref(), *timeout)
                            .await
                            .map_err(link_err)?;
                        if m.rejected {
                            out.rejected = Some(m.text.trim().to_string());
                            return Ok(());
                        }
                        for (k, v) in m.captures {
                            vars.insert(k.clone(), SecretValue::plain(v.clone()));
                            out.captures.insert(k, v);
                        }
                    }
                    Step::Wait(d) => tokio::time::sleep(*d).await,
                    Step::Call {
                        action: callee,
                        args: cargs,
                    } => {
                        let mut a = BTreeMap::new();
                        for (k, t) in cargs {
                            let r = t.render(&vars).map_err(|message| ActionError::Template {
                                action: name.into(),
                                step: step_no,
                                message,
                            })?;
                            let v = if r.secrets.is_empty() {
                                SecretValue::plain(r.text)
                            } else {
                                SecretValue::secret(r.text)
                            };
                            a.insert(k.clone(), v);
                        }
                        self.run_inner(callee, a, out, depth + 1).await?;
                        if out.rejected.is_some() {
                            return Ok(());
                        }
                        for (k, v) in &out.captures {
                            vars.insert(k.clone(), SecretValue::plain(v.clone()));
                        }
                    }
                }
            }
            Ok(())
        })
    }
}
