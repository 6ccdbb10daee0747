//! The step interpreter: runs an action's recipe (its steps, then its cleanup) on the unit's
//! links, one function per step kind.
//!
//! Kept apart from the [`Device`] facade so that what a step *means* (render its templates,
//! talk on its interface within its timeout, conclude refused / accepted early / go on with
//! captures) can be read and tested kind by kind, without the public API or the per-interface
//! open code in the way. A step reaches its interface only through [`Device::link`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use regex::bytes::Regex;

use super::emulated::MemoryRead;
use super::link::Link;
use super::{ActionError, ActionOutcome, Data, Device};
use crate::board::{Body, ChunkEncoding, ModbusTable, ModbusWriteTarget, Step};
use crate::iface::modbus::ModbusLink;
use crate::iface::mqtt::MqttLink;
use crate::iface::serial::{Console, Matched, Outcomes};
use crate::iface::LinkError;
use crate::secret::SecretValue;
use crate::template::{Template, Vars};

/// Most levels of `call` nesting before an action is refused as [`ActionError::TooDeep`].
const MAX_DEPTH: usize = 8;

/// Variables and data of the action being run.
pub(super) struct StepCtx<'a> {
    action: &'a str,
    pub(super) vars: Vars,
    blobs: Data,
    depth: usize,
    /// An `accept` matched: the action's remaining steps are skipped.
    done: bool,
}

/// Where a step is (action name and step number), to build its errors.
pub(super) struct At<'s> {
    action: &'s str,
    step: &'s str,
}

impl<'s> At<'s> {
    pub(super) fn new(action: &'s str, step: &'s str) -> At<'s> {
        At { action, step }
    }

    pub(super) fn link(&self, source: LinkError) -> ActionError {
        ActionError::Link {
            action: self.action.into(),
            step: self.step.to_string(),
            source,
        }
    }

    pub(super) fn emulator(&self, message: String) -> ActionError {
        ActionError::Emulator {
            action: self.action.into(),
            step: self.step.to_string(),
            message,
        }
    }

    pub(super) fn tmpl(&self, message: String) -> ActionError {
        ActionError::Template {
            action: self.action.into(),
            step: self.step.to_string(),
            message,
        }
    }
}

impl Device {
    /// Runs action `name` with `args` and `data` at nesting `depth`: binds its parameters,
    /// subscribes its `await` filters, runs its steps, then its cleanup (after a refusal or an
    /// early accept too; not after an error).
    pub(super) fn run_inner<'a>(
        &'a mut self,
        name: &'a str,
        args: BTreeMap<String, SecretValue>,
        data: Data,
        out: &'a mut ActionOutcome,
        depth: usize,
    ) -> futures::future::BoxFuture<'a, Result<(), ActionError>> {
        Box::pin(async move {
            if depth > MAX_DEPTH {
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
            self.subscribe_awaits(name, &action.steps, &vars).await?;
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

    /// Subscribes every `await` filter of `steps` before anything is sent, so an answer that
    /// comes fast is not missed.
    async fn subscribe_awaits(
        &mut self,
        name: &str,
        steps: &[Step],
        vars: &Vars,
    ) -> Result<(), ActionError> {
        let at = At {
            action: name,
            step: "(subscribe)",
        };
        for step in steps.iter().flat_map(Step::walk) {
            if let Step::Await { on, filter, .. } = step {
                if let Ok(f) = filter.render(vars) {
                    let timeout = self.iface_timeout(on);
                    let link = self.link(on, timeout).await.map_err(|e| at.link(e))?;
                    if let Link::Mqtt(m) = link {
                        m.subscribe(&f.text, timeout)
                            .await
                            .map_err(|e| at.link(e))?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Runs `steps` in order until one refuses or accepts early; `prefix` numbers nested steps
    /// in error messages ("3.2").
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

    /// Runs one step: dispatches on its kind.
    async fn run_step(
        &mut self,
        step: &Step,
        ctx: &mut StepCtx<'_>,
        out: &mut ActionOutcome,
        step_no: &str,
    ) -> Result<(), ActionError> {
        let at = At {
            action: ctx.action,
            step: step_no,
        };
        match step {
            Step::Send {
                on,
                text,
                flush,
                timeout,
            } => self.step_send(&at, ctx, on, text, *flush, *timeout).await,
            Step::Expect {
                on,
                pattern,
                accept,
                reject,
                timeout,
            } => {
                let outcomes = Outcomes {
                    expect: pattern,
                    accept: accept.as_ref(),
                    reject: reject.as_ref(),
                };
                self.step_expect(&at, ctx, out, on, outcomes, *timeout)
                    .await
            }
            Step::Wait(d) => {
                tokio::time::sleep(*d).await;
                Ok(())
            }
            Step::Emulator(op) => self.step_emulator(&at, *op).await,
            Step::ReadMemory {
                on,
                address,
                length,
                text,
                pattern,
                reject,
                capture,
                timeout,
            } => {
                let read = MemoryRead {
                    address,
                    length: *length,
                    text: *text,
                    pattern: pattern.as_ref(),
                    reject: reject.as_ref(),
                    capture: capture.as_deref(),
                };
                self.step_read_memory(&at, ctx, out, on, read, *timeout)
                    .await
            }
            Step::WriteMemory {
                on,
                address,
                data,
                timeout,
            } => {
                self.step_write_memory(&at, ctx, on, address, data, *timeout)
                    .await
            }
            Step::Debug { on, op, timeout } => self.step_debug(&at, on, *op, *timeout).await,
            Step::Flash {
                on,
                file,
                format,
                base,
                verify,
                timeout,
            } => {
                let flash = super::emulated::FlashStep {
                    on,
                    file,
                    format: *format,
                    base: *base,
                    verify: *verify,
                    timeout: *timeout,
                };
                self.step_flash(&at, ctx, flash).await
            }
            Step::Power { on, op, timeout } => {
                self.step_power(&at, on.as_deref(), *op, *timeout).await
            }
            Step::Call { action, args } => self.step_call(&at, ctx, out, action, args).await,
            Step::Chunks {
                data,
                size,
                encoding,
                steps,
            } => {
                self.step_chunks(&at, ctx, out, data, *size, *encoding, steps)
                    .await
            }
            Step::Publish {
                on,
                topic,
                body,
                qos,
                retain,
            } => {
                self.step_publish(&at, ctx, on, topic, body, *qos, *retain)
                    .await
            }
            Step::Await {
                on,
                filter,
                pattern,
                accept,
                reject,
                timeout,
            } => {
                let outcomes = Outcomes {
                    expect: pattern,
                    accept: accept.as_ref(),
                    reject: reject.as_ref(),
                };
                self.step_await(&at, ctx, out, on, filter, outcomes, *timeout)
                    .await
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
                let read = ModbusRead {
                    table: *table,
                    address: *address,
                    count: *count,
                    pattern: pattern.as_ref(),
                    accept: accept.as_ref(),
                    reject: reject.as_ref(),
                    capture: capture.as_deref(),
                };
                self.step_modbus_read(&at, ctx, out, on, read, *timeout)
                    .await
            }
            Step::ModbusWrite {
                on,
                target,
                address,
                values,
                timeout,
            } => {
                self.step_modbus_write(&at, ctx, on, *target, *address, values, *timeout)
                    .await
            }
            Step::ModbusIdentify {
                on,
                regular,
                capture,
                timeout,
            } => {
                self.step_modbus_identify(&at, ctx, out, on, *regular, capture.as_deref(), *timeout)
                    .await
            }
            Step::Http {
                on,
                method,
                url,
                auth,
                scheme,
                form,
                pattern,
                accept,
                reject,
            } => {
                let outcomes = Outcomes {
                    expect: pattern,
                    accept: accept.as_ref(),
                    reject: reject.as_ref(),
                };
                let req = HttpStep {
                    method: *method,
                    url,
                    auth: auth.as_ref(),
                    scheme: *scheme,
                    form,
                };
                // Boxed: the request's future is large, and this function's future is part
                // of every nested `call`'s.
                Box::pin(self.step_http(&at, ctx, out, on, req, outcomes)).await
            }
            Step::SshAuth {
                on,
                method,
                user,
                password,
                timeout,
            } => {
                // Boxed: an SSH handshake's future is large (see `step_http`).
                Box::pin(self.step_ssh_auth(&at, ctx, out, on, *method, (user, password), *timeout))
                    .await
            }
        }
    }

    /// The console of interface `on`, opened on demand; another kind is a board mistake.
    async fn console(
        &mut self,
        at: &At<'_>,
        on: &str,
        timeout: Duration,
    ) -> Result<&mut Console, ActionError> {
        let transcript = self.transcript.clone();
        match self.link(on, timeout).await.map_err(|e| at.link(e))? {
            Link::Console(c) => Ok(c),
            Link::Ssh(p) => {
                if p.console.is_none() {
                    let Some(session) = p.session.as_mut() else {
                        return Err(at.link(LinkError::Closed(format!(
                            "no SSH session on {on:?}: an `ssh_auth` step of this test must log in first"
                        ))));
                    };
                    let shell = Box::pin(session.open_shell(on, timeout, transcript))
                        .await
                        .map_err(|e| at.link(e))?;
                    p.console = Some(shell);
                }
                p.console.as_mut().ok_or_else(|| {
                    at.link(LinkError::Closed(format!(
                        "the SSH shell of {on:?} is gone"
                    )))
                })
            }
            _ => Err(at.tmpl(format!("interface {on:?} is not a console"))),
        }
    }

    /// The MQTT link of interface `on`, opened on demand.
    async fn mqtt(
        &mut self,
        at: &At<'_>,
        on: &str,
        timeout: Duration,
    ) -> Result<&mut MqttLink, ActionError> {
        match self.link(on, timeout).await.map_err(|e| at.link(e))? {
            Link::Mqtt(m) => Ok(m),
            _ => Err(at.tmpl(format!("interface {on:?} is not MQTT"))),
        }
    }

    /// The Modbus link of interface `on`, opened on demand.
    async fn modbus(
        &mut self,
        at: &At<'_>,
        on: &str,
        timeout: Duration,
    ) -> Result<&mut ModbusLink, ActionError> {
        match self.link(on, timeout).await.map_err(|e| at.link(e))? {
            Link::Modbus(m) => Ok(m),
            _ => Err(at.tmpl(format!("interface {on:?} is not Modbus"))),
        }
    }

    /// `send`: renders the text (its secrets join the redactor), optionally drops what the
    /// console received so far, and writes it within the step's timeout.
    async fn step_send(
        &mut self,
        at: &At<'_>,
        ctx: &StepCtx<'_>,
        on: &str,
        text: &Template,
        flush: bool,
        timeout: Duration,
    ) -> Result<(), ActionError> {
        let r = text.render(&ctx.vars).map_err(|e| at.tmpl(e.to_string()))?;
        for s in &r.secrets {
            self.redactor.add(s);
        }
        let c = self.console(at, on, timeout).await?;
        if flush {
            c.flush();
        }
        c.send(r.text.as_bytes(), &r.redacted, timeout)
            .await
            .map_err(|e| at.link(e))
    }

    /// `expect`: waits on the console for the earliest of `expect`, `accept` and `reject`.
    async fn step_expect(
        &mut self,
        at: &At<'_>,
        ctx: &mut StepCtx<'_>,
        out: &mut ActionOutcome,
        on: &str,
        outcomes: Outcomes<'_>,
        timeout: Duration,
    ) -> Result<(), ActionError> {
        let c = self.console(at, on, timeout).await?;
        let m = c
            .expect_outcomes(outcomes, timeout)
            .await
            .map_err(|e| at.link(e))?;
        self.console_answers += 1;
        ctx.conclude(m, out);
        Ok(())
    }

    /// `call`: runs another action with rendered arguments (secret if a secret went in). An
    /// `accept` in the callee ends the callee, not this action; its captures become variables
    /// of this one.
    async fn step_call(
        &mut self,
        at: &At<'_>,
        ctx: &mut StepCtx<'_>,
        out: &mut ActionOutcome,
        callee: &str,
        args: &BTreeMap<String, Template>,
    ) -> Result<(), ActionError> {
        let mut a = BTreeMap::new();
        for (k, t) in args {
            let r = t.render(&ctx.vars).map_err(|e| at.tmpl(e.to_string()))?;
            let v = if r.secrets.is_empty() {
                SecretValue::plain(r.text)
            } else {
                SecretValue::secret(r.text)
            };
            a.insert(k.clone(), v);
        }
        self.run_inner(callee, a, Data::new(), out, ctx.depth + 1)
            .await?;
        if out.rejected.is_some() {
            return Ok(());
        }
        for (k, v) in &out.captures {
            ctx.vars.insert(k.clone(), SecretValue::plain(v.clone()));
        }
        Ok(())
    }

    /// `chunks`: runs the nested steps once per chunk of a data parameter, with `{chunk}`,
    /// `{offset}`, ... set. An `accept` inside ends the whole action; a refusal ends the loop.
    #[allow(clippy::too_many_arguments)]
    async fn step_chunks(
        &mut self,
        at: &At<'_>,
        ctx: &mut StepCtx<'_>,
        out: &mut ActionOutcome,
        data: &str,
        size: usize,
        encoding: ChunkEncoding,
        steps: &[Step],
    ) -> Result<(), ActionError> {
        let name = ctx.action;
        let bytes = ctx
            .blobs
            .get(data)
            .cloned()
            .ok_or_else(|| at.tmpl(format!("no data {data:?} was passed")))?;
        let total = bytes.len();
        self.transcript.note(format!(
            "action {name}: sending {total} bytes of {data} in chunks of {size}"
        ));
        for (index, chunk) in bytes.chunks(size).enumerate() {
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
                ChunkEncoding::Hex => Some(chunk.iter().map(|b| format!("{b:02x}")).collect()),
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
            let nested = format!("{}.", at.step);
            // Chunk transfers are long: the transcript keeps a note per chunk, not every byte
            // of every chunk twice.
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
        Ok(())
    }

    /// `publish`: an MQTT message of rendered text (shown redacted) or of passed bytes.
    #[allow(clippy::too_many_arguments)]
    async fn step_publish(
        &mut self,
        at: &At<'_>,
        ctx: &StepCtx<'_>,
        on: &str,
        topic: &Template,
        body: &Body,
        qos: u8,
        retain: bool,
    ) -> Result<(), ActionError> {
        let topic = topic
            .render(&ctx.vars)
            .map_err(|e| at.tmpl(e.to_string()))?
            .text;
        let (payload, shown) = match body {
            Body::Text(ts) => match ts.first() {
                Some(t) => {
                    let r = t.render(&ctx.vars).map_err(|e| at.tmpl(e.to_string()))?;
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
                    .ok_or_else(|| at.tmpl(format!("no data {d:?} was passed")))?,
                None,
            ),
        };
        let timeout = self.iface_timeout(on);
        let m = self.mqtt(at, on, timeout).await?;
        m.publish(&topic, payload, qos, retain, shown.as_deref())
            .await
            .map_err(|e| at.link(e))
    }

    /// `await`: waits for an MQTT message on the filter (subscribed when the action began)
    /// whose payload matches one of the outcomes.
    #[allow(clippy::too_many_arguments)]
    async fn step_await(
        &mut self,
        at: &At<'_>,
        ctx: &mut StepCtx<'_>,
        out: &mut ActionOutcome,
        on: &str,
        filter: &Template,
        outcomes: Outcomes<'_>,
        timeout: Duration,
    ) -> Result<(), ActionError> {
        let filter = filter
            .render(&ctx.vars)
            .map_err(|e| at.tmpl(e.to_string()))?
            .text;
        let m = self.mqtt(at, on, timeout).await?;
        let got = m
            .await_outcomes(&filter, outcomes, timeout)
            .await
            .map_err(|e| at.link(e))?;
        ctx.conclude(got, out);
        Ok(())
    }

    /// Modbus reads: polls (every 100 ms) until the values, space-separated, match `reject`,
    /// `accept` or the pattern, or the step's timeout passes.
    async fn step_modbus_read(
        &mut self,
        at: &At<'_>,
        ctx: &mut StepCtx<'_>,
        out: &mut ActionOutcome,
        on: &str,
        read: ModbusRead<'_>,
        timeout: Duration,
    ) -> Result<(), ActionError> {
        let ModbusRead {
            table,
            address,
            count,
            pattern,
            accept,
            reject,
            capture,
        } = read;
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let m = self.modbus(at, on, left).await?;
            let values = m
                .read(table, address, count, left.max(Duration::from_millis(100)))
                .await
                .map_err(|e| at.link(e))?;
            let text = values
                .iter()
                .map(|v| v.to_string())
                .collect::<Vec<_>>()
                .join(" ");
            let with_values = |mut caps: BTreeMap<String, String>| {
                if let Some(name) = capture {
                    caps.insert(name.to_string(), text.clone());
                    for (i, v) in values.iter().enumerate() {
                        caps.insert(format!("{name}.{i}"), v.to_string());
                    }
                }
                caps
            };
            if let Some(r) = reject {
                if r.is_match(text.as_bytes()) {
                    out.rejected = Some(text);
                    return Ok(());
                }
            }
            if let Some(a) = accept {
                if let Some(c) = a.captures(text.as_bytes()) {
                    let caps = with_values(named_captures(a, &c));
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
                Some(p) => p.captures(text.as_bytes()).map(|c| named_captures(p, &c)),
            };
            if let Some(caps) = caps {
                ctx.capture(with_values(caps), out);
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(at.link(LinkError::Timeout {
                    pattern: pattern.map(|p| p.as_str().to_string()).unwrap_or_default(),
                    waited: timeout,
                    tail: text,
                }));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Modbus writes: one coil, or 1 to 123 registers from rendered values or passed bytes
    /// (big-endian per register).
    #[allow(clippy::too_many_arguments)]
    async fn step_modbus_write(
        &mut self,
        at: &At<'_>,
        ctx: &StepCtx<'_>,
        on: &str,
        target: ModbusWriteTarget,
        address: u16,
        values: &Body,
        timeout: Duration,
    ) -> Result<(), ActionError> {
        let words: Vec<u16> = match values {
            Body::Text(ts) => {
                let mut w = Vec::new();
                for t in ts {
                    let v = t
                        .render(&ctx.vars)
                        .map_err(|e| at.tmpl(e.to_string()))?
                        .text;
                    let n = parse_register(&v).ok_or_else(|| {
                        at.tmpl(format!(
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
                    .ok_or_else(|| at.tmpl(format!("no data {d:?} was passed")))?;
                b.chunks(2)
                    .map(|c| u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))
                    .collect()
            }
        };
        let m = self.modbus(at, on, timeout).await?;
        match target {
            ModbusWriteTarget::Coil => m
                .write_coil(address, words.first().copied().unwrap_or(0) != 0, timeout)
                .await
                .map_err(|e| at.link(e)),
            ModbusWriteTarget::Registers => {
                if words.is_empty() || words.len() > 123 {
                    return Err(at.tmpl(format!(
                        "{} registers cannot be written at once (1 to 123)",
                        words.len()
                    )));
                }
                m.write_registers(address, words, timeout)
                    .await
                    .map_err(|e| at.link(e))
            }
        }
    }

    /// Modbus Read Device Identification: the objects become captures (prefixed `capture_`).
    #[allow(clippy::too_many_arguments)]
    async fn step_modbus_identify(
        &mut self,
        at: &At<'_>,
        ctx: &mut StepCtx<'_>,
        out: &mut ActionOutcome,
        on: &str,
        regular: bool,
        capture: Option<&str>,
        timeout: Duration,
    ) -> Result<(), ActionError> {
        let m = self.modbus(at, on, timeout).await?;
        let objects = m.identify(regular, timeout).await.map_err(|e| at.link(e))?;
        let caps = objects
            .into_iter()
            .map(|(k, v)| match capture {
                Some(p) => (format!("{p}_{k}"), v),
                None => (k, v),
            })
            .collect();
        ctx.capture(caps, out);
        Ok(())
    }

    /// `get`/`post`: one HTTP request on interface `on` (its cookies kept for the action),
    /// matched as `HTTP <status>`, a `Redirect: <status> <url>` line per redirect followed, an
    /// empty line, then the body.
    async fn step_http(
        &mut self,
        at: &At<'_>,
        ctx: &mut StepCtx<'_>,
        out: &mut ActionOutcome,
        on: &str,
        req: HttpStep<'_>,
        outcomes: Outcomes<'_>,
    ) -> Result<(), ActionError> {
        use crate::iface::http::{FormField, HttpAuth, HttpRequest};
        let url = req
            .url
            .render(&ctx.vars)
            .map_err(|e| at.tmpl(e.to_string()))?;
        for s in &url.secrets {
            self.redactor.add(s);
        }
        let url = url.text;
        let creds = match req.auth {
            Some((u, p)) => {
                let u = u
                    .render(&ctx.vars)
                    .map_err(|e| at.tmpl(e.to_string()))?
                    .text;
                let p = p.render(&ctx.vars).map_err(|e| at.tmpl(e.to_string()))?;
                for s in &p.secrets {
                    self.redactor.add(s);
                }
                Some((u, p.text))
            }
            None => None,
        };
        let mut form = Vec::new();
        for (name, value) in req.form {
            let r = value
                .render(&ctx.vars)
                .map_err(|e| at.tmpl(e.to_string()))?;
            for s in &r.secrets {
                self.redactor.add(s);
            }
            form.push(FormField {
                name: name.clone(),
                secret: !r.secrets.is_empty(),
                value: r.text,
            });
        }
        let timeout = self.iface_timeout(on);
        let client = match self.link(on, timeout).await.map_err(|e| at.link(e))? {
            Link::Http(client) => client.clone(),
            _ => return Err(at.tmpl(format!("interface {on:?} is not HTTP"))),
        };
        let request = HttpRequest {
            method: req.method,
            url: &url,
            auth: creds.as_ref().map(|(u, p)| HttpAuth {
                scheme: req.scheme,
                user: u,
                password: p,
            }),
            form: &form,
        };
        let x = client.request(&request, &self.transcript, on).await;
        // One request, one attempt: a failed one is not sent again by starting the action over.
        self.no_retry |= x.is_err();
        let x = x.map_err(|e| {
            at.link(match e {
                crate::iface::http::HttpError::Timeout { url, waited } => LinkError::Timeout {
                    pattern: format!("an answer from {url}"),
                    waited,
                    tail: String::new(),
                },
                other => LinkError::Closed(other.to_string()),
            })
        })?;
        self.console_answers += 1;
        let mut text = format!("HTTP {}\n", x.status).into_bytes();
        for (status, to) in &x.redirects {
            text.extend_from_slice(format!("Redirect: {status} {to}\n").as_bytes());
        }
        text.push(b'\n');
        text.extend_from_slice(&x.body);
        let said = match x.redirects.last() {
            Some((_, to)) => format!("HTTP {} after a redirect to {to}", x.status),
            None => format!("HTTP {}", x.status),
        };
        if let Some(r) = outcomes.reject {
            if r.is_match(&text) {
                out.rejected = Some(said);
                return Ok(());
            }
        }
        if let Some(a) = outcomes.accept {
            if let Some(c) = a.captures(&text) {
                let m = Matched {
                    accepted: true,
                    text: said,
                    captures: named_captures(a, &c),
                    ..Default::default()
                };
                ctx.conclude(m, out);
                return Ok(());
            }
        }
        let pattern = outcomes.expect;
        match pattern.captures(&text) {
            Some(c) => {
                ctx.capture(named_captures(pattern, &c), out);
                Ok(())
            }
            None => Err(at.link(LinkError::Protocol(format!(
                "{url} answered {said}, which matches neither /{}/ nor the reject pattern",
                pattern.as_str()
            )))),
        }
    }

    /// `ssh_auth`: one login attempt on a new connection. Accepted: the shell of the session
    /// becomes the interface's console (the previous session is closed). Refused: the action
    /// is rejected, with the methods the server offers.
    #[allow(clippy::too_many_arguments)]
    async fn step_ssh_auth(
        &mut self,
        at: &At<'_>,
        ctx: &mut StepCtx<'_>,
        out: &mut ActionOutcome,
        on: &str,
        method: crate::iface::ssh::SshAuthMethod,
        (user, password): (&Template, &Template),
        timeout: Duration,
    ) -> Result<(), ActionError> {
        use crate::iface::ssh::{SshAuthMethod, SshLogin, SshOptions};
        let user = user
            .render(&ctx.vars)
            .map_err(|e| at.tmpl(e.to_string()))?
            .text;
        let p = password
            .render(&ctx.vars)
            .map_err(|e| at.tmpl(e.to_string()))?;
        for s in &p.secrets {
            self.redactor.add(s);
        }
        let spec = match self.model.interfaces.get(on) {
            Some(crate::board::Interface::Ssh(s)) => s.clone(),
            _ => return Err(at.tmpl(format!("interface {on:?} is not SSH"))),
        };
        let addr = self.render_for(on, &spec.address).map_err(|e| at.link(e))?;
        // One attempt, one connection: the previous session (and its shell) ends here.
        self.links.remove(on);
        let opts = SshOptions {
            host_key: spec.host_key.clone(),
            terminal: spec.terminal.clone().unwrap_or_default(),
            columns: 0,
            rows: 0,
        };
        let how = match method {
            SshAuthMethod::Password => "password",
            SshAuthMethod::KeyboardInteractive => "keyboard-interactive",
        };
        let login = crate::iface::ssh::ssh_login(
            on,
            &addr,
            &user,
            &p.text,
            method,
            &opts,
            timeout,
            &self.transcript,
        )
        .await;
        let login = self.after_reached(&format!("ssh {addr}"), login);
        // One connection, one attempt: a failed one is not made again by starting the action
        // over (the server's count of attempts and the timing would be off).
        self.no_retry |= login.is_err();
        let login = login.map_err(|e| at.link(e))?;
        self.console_answers += 1;
        match login {
            SshLogin::Refused { methods } => {
                out.rejected = Some(format!(
                    "SSH {how} authentication of {user:?} refused (the server offers: {})",
                    if methods.is_empty() {
                        "nothing more".to_string()
                    } else {
                        methods.join(", ")
                    }
                ));
                Ok(())
            }
            SshLogin::Accepted(session) => {
                // The shell is opened by the first `send`/`expect` on the interface.
                self.links.insert(
                    on.to_string(),
                    Link::Ssh(super::link::SshPort {
                        session: Some(session),
                        console: None,
                    }),
                );
                Ok(())
            }
        }
    }
}

/// What an HTTP step asks for.
struct HttpStep<'s> {
    method: crate::iface::http::HttpMethod,
    url: &'s Template,
    auth: Option<&'s (Template, Template)>,
    scheme: crate::iface::http::HttpAuthScheme,
    form: &'s [(String, Template)],
}

/// What a Modbus read step asks for.
struct ModbusRead<'s> {
    table: ModbusTable,
    address: u16,
    count: u16,
    pattern: Option<&'s Regex>,
    accept: Option<&'s Regex>,
    reject: Option<&'s Regex>,
    capture: Option<&'s str>,
}

/// Named groups of `re` that took part in the match, as text.
fn named_captures(re: &Regex, c: &regex::bytes::Captures<'_>) -> BTreeMap<String, String> {
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

    pub(super) fn capture(&mut self, caps: BTreeMap<String, String>, out: &mut ActionOutcome) {
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

#[cfg(test)]
mod tests {
    use super::parse_register;

    #[test]
    fn register_values() {
        assert_eq!(parse_register(" 42 "), Some(42));
        assert_eq!(parse_register("0x1F"), Some(31));
        assert_eq!(parse_register("on"), Some(1));
        assert_eq!(parse_register("false"), Some(0));
        assert_eq!(parse_register("65536"), None);
        assert_eq!(parse_register("x"), None);
    }
}
