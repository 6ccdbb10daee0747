//! Steps: one `{ verb = ... }` table of an action's recipe, checked and built.
//!
//! A step has exactly one verb; keys its verb does not use are refused (never silently
//! ignored); its interface must exist and suit the verb (`send` on serial, `publish` on MQTT,
//! ...); every template may only use variables that exist at that point of the recipe:
//! parameters, captures of earlier steps (and of called actions), the loop variables inside
//! `chunks`, and the unit-wide ones of [`super::vars`]. `known` carries what earlier steps
//! defined through the recipe, in order.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

use serde_spanned::Spanned;

use super::calls::callee_captures;
use super::diag::{later, Diag};
use super::interfaces::missing_iface_msg;
use super::model::{RawBoardFile, StepSection};
use super::values::{compile_bytes_regex, parse_duration, parse_template};
use super::vars::{check_global_var, chunk_vars, identify_fields, param_fields};
use super::{
    Body, ChunkEncoding, DebugOp, EmulatorOp, FlashFormat, Interface, ModbusTable,
    ModbusWriteTarget, PowerOp, Step, DEFAULT_STEP_TIMEOUT,
};
use crate::template::Template;

/// The names a step may use as its verb; exactly one per step.
const VERBS: &[&str] = &[
    "send",
    "expect",
    "wait",
    "call",
    "chunks",
    "publish",
    "await",
    "read_holding",
    "read_input",
    "read_coils",
    "read_discrete",
    "write_register",
    "write_registers",
    "write_coil",
    "identify",
    "get",
    "post",
    "ssh_auth",
    "read_memory",
    "write_memory",
    "debug",
    "emulator",
    "flash",
    "power",
];

fn verbs_of(s: &StepSection) -> Vec<&'static str> {
    let present = [
        s.send.is_some(),
        s.expect.is_some()
            && s.await_topic.is_none()
            && !is_modbus_read(s)
            && s.get.is_none()
            && s.post.is_none()
            && s.read_memory.is_none(),
        s.wait.is_some(),
        s.call.is_some(),
        s.chunks.is_some(),
        s.publish.is_some(),
        s.await_topic.is_some(),
        s.read_holding.is_some(),
        s.read_input.is_some(),
        s.read_coils.is_some(),
        s.read_discrete.is_some(),
        s.write_register.is_some(),
        s.write_registers.is_some(),
        s.write_coil.is_some(),
        s.identify.is_some(),
        s.get.is_some(),
        s.post.is_some(),
        s.ssh_auth.is_some(),
        s.read_memory.is_some(),
        s.write_memory.is_some(),
        s.debug.is_some(),
        s.emulator.is_some(),
        s.flash.is_some(),
        s.power.is_some(),
    ];
    VERBS
        .iter()
        .zip(present)
        .filter(|(_, p)| *p)
        .map(|(v, _)| *v)
        .collect()
}

/// The default interface of `power` steps: the board's power interface when it has exactly
/// one; `Ok(None)` with none (an emulated unit's own power); `Err` with several (the step
/// must name one).
fn power_interface(interfaces: &BTreeMap<String, Interface>) -> Result<Option<String>, String> {
    let power: Vec<&String> = interfaces
        .iter()
        .filter(|(_, i)| i.kind() == "power")
        .map(|(n, _)| n)
        .collect();
    match power.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some((*one).clone())),
        several => Err(several
            .iter()
            .map(|n| n.as_str())
            .collect::<Vec<_>>()
            .join(", ")),
    }
}

fn is_modbus_read(s: &StepSection) -> bool {
    s.read_holding.is_some()
        || s.read_input.is_some()
        || s.read_coils.is_some()
        || s.read_discrete.is_some()
}

#[allow(clippy::too_many_arguments)]
/// Builds one step of `action`; `None` when it has errors (reported in `d`).
pub(crate) fn build_step(
    d: &mut Diag,
    raw: &RawBoardFile,
    action: &str,
    step: &Spanned<StepSection>,
    action_on: Option<&str>,
    interfaces: &BTreeMap<String, Interface>,
    known: &mut BTreeSet<String>,
    emulator_vars: &BTreeSet<String>,
    params: &[String],
) -> Option<Step> {
    let span = step.span();
    let s = step.get_ref();
    let verbs = verbs_of(s);
    if verbs.len() != 1 {
        d.at(
            Some(span),
            format!(
                "action {action:?}: each step needs exactly one verb ({}), found {}",
                VERBS.join(", "),
                if verbs.is_empty() {
                    "none".to_string()
                } else {
                    verbs.join(", ")
                }
            ),
            Some("split it into several steps"),
        );
        return None;
    }
    let verb = verbs[0];
    // Keys a verb does not use are errors, not silently ignored.
    let takes_outcomes = matches!(
        verb,
        "expect"
            | "await"
            | "get"
            | "post"
            | "read_holding"
            | "read_input"
            | "read_coils"
            | "read_discrete"
    );
    let http = matches!(verb, "get" | "post");
    for (key, present, ok) in [
        (
            "accept",
            s.accept.as_ref().map(|a| a.span()),
            takes_outcomes,
        ),
        (
            "reject",
            s.reject.as_ref().map(|a| a.span()),
            takes_outcomes || verb == "read_memory",
        ),
        (
            "timeout",
            s.timeout.as_ref().map(|a| a.span()),
            !matches!(
                verb,
                "wait" | "call" | "chunks" | "publish" | "get" | "post" | "emulator" | "power"
            ),
        ),
        (
            "user",
            s.user.as_ref().map(|a| a.span()),
            http || verb == "ssh_auth",
        ),
        (
            "password",
            s.password.as_ref().map(|a| a.span()),
            http || verb == "ssh_auth",
        ),
        ("auth", s.auth.as_ref().map(|a| a.span()), http),
        ("form", s.form.as_ref().map(|a| a.span()), verb == "post"),
        (
            "length",
            s.length.as_ref().map(|a| a.span()),
            verb == "read_memory",
        ),
        (
            "format",
            s.format.as_ref().map(|a| a.span()),
            verb == "flash",
        ),
        ("base", s.base.as_ref().map(|a| a.span()), verb == "flash"),
        (
            "verify",
            s.verify.as_ref().map(|a| a.span()),
            verb == "flash",
        ),
        (
            "encoding",
            s.encoding.as_ref().map(|a| a.span()),
            verb == "chunks" || verb == "read_memory",
        ),
    ] {
        if let (Some(sp), false) = (present, ok) {
            d.at(
                Some(sp),
                format!("action {action:?}: a `{verb}` step does not take `{key}`"),
                Some(match key {
                    "timeout" if http => "an HTTP request waits as long as its interface's `timeout`; set it there",
                    "user" | "password" => "`user` and `password` go with `get`, `post` (HTTP authentication) and `ssh_auth`",
                    "auth" => "`auth` (\"basic\" or \"digest\") goes with `get` and `post`",
                    "form" => "`form` goes with `post`",
                    "timeout" if verb == "power" => "a power step waits as long as its power interface's `timeout`; set it there",
                    "timeout" => "only steps that wait for the device take `timeout` (send, expect, await, Modbus steps)",
                    "verify" => "`verify` goes with `flash`",
                    "encoding" => "`encoding` goes with `chunks` (base64, hex, raw) and `read_memory` (hex, text)",
                    _ => "`accept` and `reject` go with `expect` (console), `await`, Modbus reads, `get` and `post`",
                }),
            );
            return None;
        }
    }
    let on = match &s.on {
        Some(on) => {
            if !raw.interfaces.contains_key(on.get_ref()) {
                d.at(
                    Some(on.span()),
                    missing_iface_msg(on.get_ref(), raw),
                    Some("declare it under [interfaces.NAME]"),
                );
                return None;
            }
            Some(on.get_ref().clone())
        }
        None => action_on.map(str::to_string),
    };
    // A power step's default is the board's power interface, not the action's (a console,
    // say); without one, an emulated unit's own power.
    let action_power =
        action_on.filter(|a| interfaces.get(*a).is_some_and(|i| i.kind() == "power"));
    let on = if verb == "power" && s.on.is_none() && action_power.is_none() {
        match power_interface(interfaces) {
            Ok(on) => on,
            Err(several) => {
                d.at(
                    Some(span),
                    format!("action {action:?}: the board has several power interfaces ({several}); say which this `power` step switches"),
                    Some("add on = \"NAME\" to the step"),
                );
                return None;
            }
        }
    } else {
        on
    };
    if verb == "power" && on.is_none() && raw.emulator.is_none() {
        d.at(
            Some(span),
            format!("action {action:?}: a `power` step needs a power interface, and the board declares none"),
            Some("declare one, e.g. [interfaces.power] kind = \"power\", driver = \"command\", on_command = \"...\", off_command = \"...\" (see boards/README.md, \"Power control\")"),
        );
        return None;
    }
    let needs_iface = !matches!(verb, "wait" | "call" | "chunks" | "emulator" | "power");
    if needs_iface && on.is_none() {
        d.at(Some(span), format!("action {action:?}: this step talks to the device but the board declares no interface"), Some("declare one under [interfaces.NAME]"));
        return None;
    }
    let on = on.unwrap_or_default();
    // The step's verb must suit its interface's kind.
    if needs_iface {
        let want: &[&str] = match verb {
            "send" | "expect" => &["serial", "rtt", "telnet", "ssh", "labgrid"],
            "publish" | "await" => &["mqtt"],
            "get" | "post" => &["http"],
            "ssh_auth" => &["ssh"],
            "read_memory" | "write_memory" | "debug" | "flash" => &["gdb", "probe-rs"],
            _ => &["modbus-tcp", "modbus-rtu"],
        };
        if let Some(i) = interfaces.get(&on) {
            if !want.contains(&i.kind()) {
                // At the step's `on` when it names the interface, else at the step.
                d.at(
                    Some(s.on.as_ref().map_or(span.clone(), |o| o.span())),
                    format!(
                        "action {action:?}: `{verb}` needs a {} interface, but {on:?} is {}",
                        want.join(" or "),
                        i.kind()
                    ),
                    Some("name the right interface with `on`, or set the action's `on`"),
                );
                return None;
            }
        }
    }
    if verb == "power" {
        if let Some(i) =
            s.on.as_ref()
                .and_then(|o| interfaces.get(o.get_ref()).map(|i| (o, i)))
        {
            if i.1.kind() != "power" {
                d.at(
                    Some(i.0.span()),
                    format!(
                        "action {action:?}: `power` needs a power interface, but {:?} is {}",
                        i.0.get_ref(),
                        i.1.kind()
                    ),
                    Some("name a power interface with `on`, or leave `on` out to use the board's"),
                );
                return None;
            }
        }
    }
    let timeout = match &s.timeout {
        Some(t) => parse_duration(d, t)?,
        None => interfaces
            .get(&on)
            .map(Interface::default_timeout)
            .unwrap_or(DEFAULT_STEP_TIMEOUT),
    };
    // The variables of template `t`, written at `at`.
    let check_vars = |d: &mut Diag, t: &Template, at: Range<usize>, known: &BTreeSet<String>| {
        for v in t.vars() {
            // At the placeholder itself when it is written as is.
            let at = d.narrow(at.clone(), &format!("{{{v}}}"));
            if v.contains('.') {
                let (base, field) = v.split_once('.').unwrap_or((v, ""));
                if params.iter().any(|p| p == base) {
                    // `{image.size}` of a data parameter.
                    if !param_fields().any(|f| f == field) {
                        d.at(
                            Some(at.clone()),
                            format!("action {action:?}: {{{v}}}: a parameter has only {{{base}.size}}, {{{base}.size_hi}} and {{{base}.size_lo}} (when bytes are passed)"),
                            None,
                        );
                    }
                    continue;
                }
                if known.contains(base) {
                    // `{NAME.0}` of a register capture.
                    if field.is_empty() || !field.bytes().all(|b| b.is_ascii_digit()) {
                        d.at(
                            Some(at.clone()),
                            format!("action {action:?}: {{{v}}}: a capture has only numbered parts ({{{base}.0}}, {{{base}.1}}, ...)"),
                            None,
                        );
                    }
                    continue;
                }
                if let Err(msg) = check_global_var(v, emulator_vars) {
                    d.at(
                        Some(at.clone()),
                        format!("action {action:?}: {msg}"),
                        Some("a data parameter's size is {NAME.size} only in an action whose `params` include NAME; the variables are listed under Templates in boards/README.md"),
                    );
                }
            } else if !known.contains(v) {
                d.at(
                    Some(at.clone()),
                    format!("action {action:?}: {{{v}}} is neither a parameter of the action nor captured by an earlier step"),
                    Some("add it to `params`, or capture it with a named group (?P<NAME>...) in an earlier `expect`"),
                );
            }
        }
    };
    let template = |d: &mut Diag, src: &Spanned<String>, known: &BTreeSet<String>| {
        let t = parse_template(d, src)?;
        check_vars(d, &t, src.span(), known);
        Some(t)
    };
    let data_ref = |d: &mut Diag, name: &Spanned<String>, known: &BTreeSet<String>| {
        let at = name.span();
        let name = name.get_ref();
        if !known.contains(name) {
            d.at(
                Some(at),
                format!("action {action:?}: data {name:?} is neither a parameter of the action nor the chunk of an enclosing `chunks` loop"),
                Some("add it to `params`; the suite passes the bytes (e.g. `image`)"),
            );
        }
        name.to_string()
    };
    let regex_opt = |d: &mut Diag,
                     r: &Option<Spanned<String>>,
                     key: &str|
     -> Result<Option<regex::bytes::Regex>, ()> {
        match r {
            Some(r) => compile_bytes_regex(d, r, key).map(Some).ok_or(()),
            None => Ok(None),
        }
    };
    match verb {
        "send" => {
            let t = template(d, s.send.as_ref()?, known)?;
            Some(Step::Send {
                on,
                text: t,
                flush: s.flush.unwrap_or(false),
                timeout,
            })
        }
        "expect" => {
            let pattern = compile_bytes_regex(d, s.expect.as_ref()?, "expect")?;
            let accept = regex_opt(d, &s.accept, "accept").ok()?;
            let reject = regex_opt(d, &s.reject, "reject").ok()?;
            known.extend(pattern.capture_names().flatten().map(str::to_string));
            if let Some(a) = &accept {
                known.extend(a.capture_names().flatten().map(str::to_string));
            }
            Some(Step::Expect {
                on,
                pattern,
                accept,
                reject,
                timeout,
            })
        }
        "wait" => Some(Step::Wait(parse_duration(d, s.wait.as_ref()?)?)),
        "call" => {
            let call = s.call.as_ref()?;
            let mut args = BTreeMap::new();
            for (k, v) in &s.args {
                args.insert(k.clone(), template(d, v, known)?);
            }
            // The callee's captures become visible to later steps.
            callee_captures(raw, call.get_ref(), known);
            Some(Step::Call {
                action: call.get_ref().clone(),
                args,
            })
        }
        "chunks" => {
            let data = s.chunks.as_ref()?;
            let data_name = data_ref(d, data, known);
            let encoding = match s.encoding.as_ref().map(|e| e.get_ref().as_str()) {
                None | Some("raw") => ChunkEncoding::Raw,
                Some("base64") => ChunkEncoding::Base64,
                Some("hex") => ChunkEncoding::Hex,
                Some(other) => {
                    let sp = s.encoding.as_ref().map(|e| e.span());
                    d.at(
                        sp,
                        format!("unknown chunk encoding {other:?}"),
                        Some("use \"base64\", \"hex\" or \"raw\""),
                    );
                    return None;
                }
            };
            let size = s.size.as_ref().map_or(256, |n| *n.get_ref());
            if size == 0 || size > 1 << 20 {
                d.at(
                    s.size.as_ref().map(|n| n.span()),
                    format!("chunk size {size} is out of range"),
                    Some("use 1 to 1048576 bytes"),
                );
                return None;
            }
            if s.steps.is_empty() {
                d.at(Some(span.clone()), "a `chunks` loop needs `steps`", None);
                return None;
            }
            let mut inner_known = known.clone();
            inner_known.extend(chunk_vars().map(str::to_string));
            let mut steps = Vec::new();
            for st in &s.steps {
                if let Some(st) = build_step(
                    d,
                    raw,
                    action,
                    st,
                    Some(&on).filter(|o| !o.is_empty()).map(String::as_str),
                    interfaces,
                    &mut inner_known,
                    emulator_vars,
                    params,
                ) {
                    steps.push(st);
                }
            }
            Some(Step::Chunks {
                data: data_name,
                size,
                encoding,
                steps,
            })
        }
        "publish" => {
            let topic = template(d, s.publish.as_ref()?, known)?;
            let body = match (&s.payload, &s.data) {
                (Some(p), None) => Body::Text(vec![template(d, p, known)?]),
                (None, Some(n)) => Body::Data(data_ref(d, n, known)),
                (None, None) => Body::Text(vec![]),
                (Some(p), Some(n)) => {
                    d.at(
                        Some(later(p.span(), n.span())),
                        "a publish carries either `payload` (text) or `data` (bytes), not both",
                        None,
                    );
                    return None;
                }
            };
            let qos = s.qos.as_ref().map_or(1, |q| *q.get_ref());
            if qos > 2 {
                d.at(
                    s.qos.as_ref().map(|q| q.span()),
                    format!("qos {qos} does not exist"),
                    Some("use 0, 1 or 2"),
                );
                return None;
            }
            Some(Step::Publish {
                on,
                topic,
                body,
                qos,
                retain: s.retain.unwrap_or(false),
            })
        }
        "await" => {
            let filter = template(d, s.await_topic.as_ref()?, known)?;
            let pattern = match &s.expect {
                Some(p) => compile_bytes_regex(d, p, "expect")?,
                None => regex::bytes::Regex::new("").ok()?,
            };
            let accept = regex_opt(d, &s.accept, "accept").ok()?;
            let reject = regex_opt(d, &s.reject, "reject").ok()?;
            known.extend(pattern.capture_names().flatten().map(str::to_string));
            if let Some(a) = &accept {
                known.extend(a.capture_names().flatten().map(str::to_string));
            }
            Some(Step::Await {
                on,
                filter,
                pattern,
                accept,
                reject,
                timeout,
            })
        }
        "read_holding" | "read_input" | "read_coils" | "read_discrete" => {
            let (table, address) = match verb {
                "read_holding" => (ModbusTable::Holding, s.read_holding),
                "read_input" => (ModbusTable::Input, s.read_input),
                "read_coils" => (ModbusTable::Coils, s.read_coils),
                _ => (ModbusTable::Discrete, s.read_discrete),
            };
            let count = s.count.as_ref().map_or(1, |c| *c.get_ref());
            if count == 0 || count > 125 {
                d.at(
                    s.count.as_ref().map(|c| c.span()),
                    format!("count {count} is out of range"),
                    Some("Modbus reads 1 to 125 registers at once"),
                );
                return None;
            }
            let pattern = regex_opt(d, &s.expect, "expect").ok()?;
            let accept = regex_opt(d, &s.accept, "accept").ok()?;
            let reject = regex_opt(d, &s.reject, "reject").ok()?;
            for p in [&pattern, &accept].into_iter().flatten() {
                known.extend(p.capture_names().flatten().map(str::to_string));
            }
            if let Some(c) = &s.capture {
                known.insert(c.clone());
            }
            Some(Step::ModbusRead {
                on,
                table,
                address: address?,
                count,
                pattern,
                accept,
                reject,
                capture: s.capture.clone(),
                timeout,
            })
        }
        "write_register" | "write_registers" | "write_coil" => {
            let (target, address) = match verb {
                "write_coil" => (ModbusWriteTarget::Coil, s.write_coil),
                "write_register" => (ModbusWriteTarget::Registers, s.write_register),
                _ => (ModbusWriteTarget::Registers, s.write_registers),
            };
            let values = match (&s.value, s.values.is_empty(), &s.data) {
                (Some(v), true, None) => Body::Text(vec![template(d, v, known)?]),
                (None, false, None) if verb == "write_registers" => {
                    let mut ts = Vec::new();
                    for v in &s.values {
                        ts.push(template(d, v, known)?);
                    }
                    if ts.len() > 123 {
                        // At the first value too many.
                        d.at(
                            s.values.get(123).map(|v| v.span()),
                            "at most 123 registers per write",
                            Some("split the write into several steps"),
                        );
                        return None;
                    }
                    Body::Text(ts)
                }
                (None, true, Some(n)) if verb == "write_registers" => {
                    Body::Data(data_ref(d, n, known))
                }
                _ => {
                    d.at(
                        Some(span.clone()),
                        format!(
                            "`{verb}` needs {}",
                            if verb == "write_registers" {
                                "exactly one of `values` (a list) or `data` (bytes)"
                            } else {
                                "`value`"
                            }
                        ),
                        None,
                    );
                    return None;
                }
            };
            Some(Step::ModbusWrite {
                on,
                target,
                address: address?,
                values,
                timeout,
            })
        }
        "get" | "post" => {
            use crate::iface::http::{HttpAuthScheme, HttpMethod};
            let (method, url) = if verb == "get" {
                (HttpMethod::Get, s.get.as_ref()?)
            } else {
                (HttpMethod::Post, s.post.as_ref()?)
            };
            let url = template(d, url, known)?;
            let auth = match (&s.user, &s.password) {
                (Some(u), Some(p)) => Some((template(d, u, known)?, template(d, p, known)?)),
                (None, None) => None,
                (u, p) => {
                    d.at(
                        u.as_ref().or(p.as_ref()).map(|v| v.span()),
                        "HTTP authentication needs both `user` and `password`",
                        None,
                    );
                    return None;
                }
            };
            let scheme = match &s.auth {
                None => HttpAuthScheme::Basic,
                Some(a) => match a.get_ref().as_str() {
                    "basic" => HttpAuthScheme::Basic,
                    "digest" => HttpAuthScheme::Digest,
                    other => {
                        d.at(
                            Some(a.span()),
                            format!("unknown HTTP authentication {other:?}"),
                            Some("use \"basic\" (the default) or \"digest\"; a login form is a `post` step with `form`"),
                        );
                        return None;
                    }
                },
            };
            if let (Some(a), None) = (&s.auth, &auth) {
                d.at(Some(a.span()), "`auth` needs `user` and `password`", None);
                return None;
            }
            let mut form = Vec::new();
            if let Some(f) = &s.form {
                for (name, value) in f.get_ref() {
                    form.push((name.clone(), template(d, value, known)?));
                }
            }
            let pattern = match &s.expect {
                Some(p) => compile_bytes_regex(d, p, "expect")?,
                None => regex::bytes::Regex::new("").ok()?,
            };
            let accept = regex_opt(d, &s.accept, "accept").ok()?;
            let reject = regex_opt(d, &s.reject, "reject").ok()?;
            known.extend(pattern.capture_names().flatten().map(str::to_string));
            if let Some(a) = &accept {
                known.extend(a.capture_names().flatten().map(str::to_string));
            }
            Some(Step::Http {
                on,
                method,
                url,
                auth,
                scheme,
                form,
                pattern,
                accept,
                reject,
            })
        }
        "ssh_auth" => {
            use crate::iface::ssh::SshAuthMethod;
            let m = s.ssh_auth.as_ref()?;
            let method = match m.get_ref().as_str() {
                "password" => SshAuthMethod::Password,
                "keyboard-interactive" => SshAuthMethod::KeyboardInteractive,
                other => {
                    d.at(
                        Some(m.span()),
                        format!("unknown SSH authentication method {other:?}"),
                        Some("use \"password\" or \"keyboard-interactive\""),
                    );
                    return None;
                }
            };
            let (Some(u), Some(p)) = (&s.user, &s.password) else {
                d.at(
                    Some(span.clone()),
                    "`ssh_auth` needs `user` and `password`",
                    Some("add e.g. user = \"{user}\", password = \"{password}\""),
                );
                return None;
            };
            Some(Step::SshAuth {
                on,
                method,
                user: template(d, u, known)?,
                password: template(d, p, known)?,
                timeout,
            })
        }
        "read_memory" => {
            let address = template(d, s.read_memory.as_ref()?, known)?;
            let Some(length) = s.length.as_ref() else {
                d.at(
                    Some(span.clone()),
                    "`read_memory` needs `length` (bytes)",
                    Some("add e.g. length = 32"),
                );
                return None;
            };
            let length = *length.get_ref();
            if length == 0 || length > super::MAX_DEBUG_ACCESS {
                d.at(
                    s.length.as_ref().map(|l| l.span()),
                    format!("length {length} is out of range"),
                    Some("read 1 to 65536 bytes per step"),
                );
                return None;
            }
            let text = match &s.encoding {
                None => false,
                Some(e) => match e.get_ref().as_str() {
                    "hex" => false,
                    "text" => true,
                    other => {
                        d.at(
                            Some(e.span()),
                            format!("unknown memory encoding {other:?}"),
                            Some("use \"hex\" (the default) or \"text\" (the bytes up to the first NUL or erased byte, as UTF-8)"),
                        );
                        return None;
                    }
                },
            };
            let pattern = regex_opt(d, &s.expect, "expect").ok()?;
            let reject = regex_opt(d, &s.reject, "reject").ok()?;
            if let Some(p) = &pattern {
                known.extend(p.capture_names().flatten().map(str::to_string));
            }
            if let Some(c) = &s.capture {
                known.insert(c.clone());
            }
            Some(Step::ReadMemory {
                on,
                address,
                length,
                text,
                pattern,
                reject,
                capture: s.capture.clone(),
                timeout,
            })
        }
        "write_memory" => {
            let address = template(d, s.write_memory.as_ref()?, known)?;
            let Some(value) = s.value.as_ref() else {
                d.at(
                    Some(span.clone()),
                    "`write_memory` needs `value` (the bytes in hex, e.g. \"deadbeef\")",
                    None,
                );
                return None;
            };
            let data = template(d, value, known)?;
            Some(Step::WriteMemory {
                on,
                address,
                data,
                timeout,
            })
        }
        "debug" => {
            let op = s.debug.as_ref()?;
            let op = match op.get_ref().as_str() {
                "halt" => DebugOp::Halt,
                "resume" => DebugOp::Resume,
                "reset" => DebugOp::Reset,
                "reset_halt" => DebugOp::ResetHalt,
                other => {
                    d.at(
                        Some(op.span()),
                        format!("unknown debug operation {other:?}"),
                        Some("use \"halt\", \"resume\", \"reset\" or \"reset_halt\""),
                    );
                    return None;
                }
            };
            if let (DebugOp::Reset | DebugOp::ResetHalt, Some(Interface::Gdb(g))) =
                (op, interfaces.get(&on))
            {
                if g.reset_command.is_none() {
                    d.at(
                        s.debug.as_ref().map(|o| o.span()),
                        format!("action {action:?}: gdb interface {on:?} has no `reset_command`, so it cannot reset"),
                        Some("add the server's reset command to the interface, e.g. reset_command = \"system_reset\" (QEMU) or \"reset halt\" (OpenOCD)"),
                    );
                    return None;
                }
            }
            Some(Step::Debug { on, op, timeout })
        }
        "flash" => {
            let file = s.flash.as_ref()?;
            let allowed = interfaces
                .get(&on)
                .and_then(Interface::debug_policy)
                .is_some_and(|p| p.allow_flash);
            if !allowed {
                d.at(
                    Some(file.span()),
                    format!("action {action:?}: interface {on:?} does not allow flashing"),
                    Some("flashing overwrites the unit's firmware: say so on the debug interface with allow_flash = true"),
                );
                return None;
            }
            let format = match &s.format {
                None => None,
                Some(f) => match f.get_ref().as_str() {
                    "elf" => Some(FlashFormat::Elf),
                    "hex" => Some(FlashFormat::Hex),
                    "bin" => Some(FlashFormat::Bin),
                    other => {
                        d.at(
                            Some(f.span()),
                            format!("unknown image format {other:?}"),
                            Some("use \"elf\", \"hex\" (Intel HEX) or \"bin\" (with `base`)"),
                        );
                        return None;
                    }
                },
            };
            let base = match &s.base {
                None => None,
                Some(b) => match super::parse_address(b.get_ref()) {
                    Some(a) => Some(a),
                    None => {
                        d.at(
                            Some(b.span()),
                            format!("{:?} is not an address", b.get_ref()),
                            Some("write it in hex, e.g. base = \"0x08000000\""),
                        );
                        return None;
                    }
                },
            };
            // The format as far as it is known now: given, or implied by a literal path.
            let literal = !file.get_ref().contains('{');
            let known_format = format.or(literal.then(|| FlashFormat::from_path(file.get_ref())));
            if known_format == Some(FlashFormat::Bin) && base.is_none() {
                d.at(
                    Some(s.format.as_ref().map_or(file.span(), |f| f.span())),
                    "a raw binary (\"bin\") image needs `base`: the address its first byte goes to",
                    Some("add e.g. base = \"0x08000000\""),
                );
                return None;
            }
            if let (Some(b), Some(FlashFormat::Elf | FlashFormat::Hex)) = (&s.base, known_format) {
                d.at(
                    Some(b.span()),
                    "`base` is only for raw binaries: ELF and Intel HEX images carry their addresses",
                    Some("remove `base`, or say format = \"bin\""),
                );
                return None;
            }
            if let Some(Interface::Gdb(g)) = interfaces.get(&on) {
                if g.reset_command.is_none() {
                    d.at(
                        Some(file.span()),
                        format!("action {action:?}: a flash ends with a reset, and gdb interface {on:?} has no `reset_command`"),
                        Some("add the server's reset command to the interface, e.g. reset_command = \"system_reset\" (QEMU) or \"reset halt\" (OpenOCD)"),
                    );
                    return None;
                }
            }
            let file = template(d, file, known)?;
            Some(Step::Flash {
                on,
                file,
                format,
                base,
                verify: s.verify.as_ref().is_none_or(|v| *v.get_ref()),
                timeout,
            })
        }
        "power" => {
            let op = s.power.as_ref()?;
            let op = match op.get_ref().as_str() {
                "on" => PowerOp::On,
                "off" => PowerOp::Off,
                "cycle" => PowerOp::Cycle,
                other => {
                    d.at(
                        Some(op.span()),
                        format!("unknown power operation {other:?}"),
                        Some("use \"on\", \"off\" or \"cycle\""),
                    );
                    return None;
                }
            };
            let on = if on.is_empty() { None } else { Some(on) };
            Some(Step::Power { on, op, timeout })
        }
        "emulator" => {
            let op = s.emulator.as_ref()?;
            let op = match op.get_ref().as_str() {
                "reset" => EmulatorOp::Reset,
                "power_cycle" => EmulatorOp::PowerCycle,
                other => {
                    d.at(
                        Some(op.span()),
                        format!("unknown emulator operation {other:?}"),
                        Some("use \"reset\" (warm) or \"power_cycle\""),
                    );
                    return None;
                }
            };
            if raw.emulator.is_none() {
                d.at(
                    Some(span.clone()),
                    format!("action {action:?}: an `emulator` step needs an [emulator] section"),
                    Some("a physical unit is reset through a debug port (`debug = \"reset\"`) or its own console"),
                );
                return None;
            }
            Some(Step::Emulator(op))
        }
        "identify" => {
            let level = s.identify.as_ref()?;
            let regular = match level.get_ref().as_str() {
                "basic" => false,
                "regular" => true,
                other => {
                    d.at(
                        Some(level.span()),
                        format!("unknown identification level {other:?}"),
                        Some("use \"basic\" or \"regular\""),
                    );
                    return None;
                }
            };
            let prefix = s.capture.clone();
            for f in identify_fields() {
                known.insert(match &prefix {
                    Some(p) => format!("{p}_{f}"),
                    None => f.to_string(),
                });
            }
            Some(Step::ModbusIdentify {
                on,
                regular,
                capture: prefix,
                timeout,
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::testutil::{error, load, HEAD};
    use super::super::Step;

    #[test]
    fn accept_is_parsed_on_expect_await_reads_and_get() {
        let text = format!(
            "{HEAD}
[interfaces.mqtt]
kind = \"mqtt\"

[interfaces.modbus]
kind = \"modbus-tcp\"
address = \"127.0.0.1:502\"

[interfaces.web]
kind = \"http\"

[actions.login]
steps = [
  {{ send = \"admin\\n\" }},
  {{ expect = 'Password: $', accept = '(?P<prompt>[#$]) $', reject = 'Login incorrect' }},
  {{ send = \"{{prompt}}\\n\" }},
  {{ await = \"t\", on = \"mqtt\", expect = 'a', accept = 'b' }},
  {{ read_holding = 1, on = \"modbus\", expect = '^1$', accept = '^2$' }},
  {{ get = \"http://x/\", on = \"web\", expect = '^HTTP 401', accept = '^HTTP 200' }},
]
"
        );
        let m = load("accept", &text).expect("loads");
        let steps = &m.actions["login"].steps;
        match &steps[1] {
            Step::Expect { accept, reject, .. } => {
                assert_eq!(
                    accept.as_ref().map(|r| r.as_str()),
                    Some("(?P<prompt>[#$]) $")
                );
                assert!(reject.is_some());
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            &steps[3],
            Step::Await {
                accept: Some(_),
                ..
            }
        ));
        assert!(matches!(
            &steps[4],
            Step::ModbusRead {
                accept: Some(_),
                ..
            }
        ));
        assert!(matches!(
            &steps[5],
            Step::Http {
                accept: Some(_),
                ..
            }
        ));
    }

    #[test]
    fn a_bad_accept_regex_names_its_place() {
        let text = format!(
            "{HEAD}
[actions.login]
steps = [
  {{ expect = 'Password: $', accept = '([#$] $' }},
]
"
        );
        let (line, col, msg, help) = error("bad-accept", &text);
        assert_eq!((line, col), (10, 38), "{msg}");
        assert!(msg.contains("invalid regex in `accept`"), "{msg}");
        assert!(help.is_some());
    }

    #[test]
    fn keys_a_verb_ignores_are_refused() {
        for (step, key) in [
            ("{ send = \"x\", accept = 'y' }", "accept"),
            ("{ wait = \"1s\", timeout = \"2s\" }", "timeout"),
            ("{ send = \"x\", reject = 'y' }", "reject"),
        ] {
            let text = format!("{HEAD}\n[actions.a]\nsteps = [\n  {step},\n]\n");
            let (line, _col, msg, help) = error("ignored", &text);
            assert_eq!(line, 10, "{msg}");
            assert!(msg.contains(&format!("does not take `{key}`")), "{msg}");
            assert!(help.is_some());
        }
    }

    #[test]
    fn a_send_timeout_is_honoured() {
        let text =
            format!("{HEAD}\n[actions.a]\nsteps = [\n  {{ send = \"x\", timeout = \"3s\" }},\n]\n");
        let m = load("send-timeout", &text).expect("loads");
        match &m.actions["a"].steps[0] {
            Step::Send { timeout, .. } => assert_eq!(*timeout, Duration::from_secs(3)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unknown_template_variables_are_refused() {
        // Reported at the placeholder, not at the step.
        for (tmpl, words, want_col) in [
            ("{foo.bar}", "unknown variable {foo.bar}", 13),
            ("{image.size}", "unknown variable {image.size}", 13),
            ("{user.size_lo}x{user.nope}", "{user.nope}", 28),
        ] {
            let text = format!(
                "{HEAD}\n[actions.a]\nparams = [\"user\"]\nsteps = [\n  {{ send = \"{tmpl}\" }},\n]\n"
            );
            let (line, col, msg, _) = error("vars", &text);
            assert_eq!((line, col), (11, want_col), "{msg}");
            assert!(msg.contains(words), "{msg}");
        }
    }

    /// `HEAD` + an action `a` with `params` and `steps` (steps start on line 11).
    fn action(params: &str, steps: &str) -> String {
        [
            HEAD,
            "\n[actions.a]\nparams = [",
            params,
            "]\nsteps = [\n",
            steps,
            "]\n",
        ]
        .concat()
    }

    #[test]
    fn each_step_has_exactly_one_verb() {
        let (line, col, msg, help) = error(
            "two-verbs",
            &action("", "  { send = \"x\", wait = \"1s\" },\n"),
        );
        assert_eq!((line, col), (11, 3), "{msg}");
        assert!(
            msg.contains("exactly one verb") && msg.contains("found send, wait"),
            "{msg}"
        );
        assert!(help.is_some());
        let (_, _, msg, _) = error("no-verb", &action("", "  { flush = true },\n"));
        assert!(msg.contains("found none"), "{msg}");
    }

    #[test]
    fn a_verb_must_suit_its_interface() {
        let (line, col, msg, _) = error(
            "publish-serial",
            &action("", "  { publish = \"t\", payload = \"x\" },\n"),
        );
        assert_eq!((line, col), (11, 3), "{msg}");
        assert!(
            msg.contains("`publish` needs a mqtt interface, but \"console\" is serial"),
            "{msg}"
        );
        let (line, col, msg, _) = error(
            "publish-on-serial",
            &action("", "  { publish = \"t\", on = \"console\" },\n"),
        );
        assert_eq!((line, col), (11, 25), "at the step's `on`: {msg}");
        let (_, col, msg, _) = error(
            "on-missing",
            &action("", "  { send = \"x\", on = \"uart9\" },\n"),
        );
        assert_eq!(col, 22, "{msg}");
        assert!(
            msg.contains("interface \"uart9\" is not declared (declared: console)"),
            "{msg}"
        );
    }

    #[test]
    fn captures_become_variables_of_later_steps_only() {
        let before = action(
            "",
            "  { send = \"{who}\\n\" },\n  { expect = '(?P<who>\\w+)> $' },\n",
        );
        let (line, _, msg, _) = error("capture-late", &before);
        assert_eq!(line, 11, "{msg}");
        assert!(msg.contains("{who} is neither a parameter"), "{msg}");
        let after = action(
            "",
            "  { expect = '(?P<who>\\w+)> $' },\n  { send = \"{who}\\n\" },\n",
        );
        assert!(load("capture-ok", &after).is_ok());
    }

    #[test]
    fn loop_variables_exist_only_inside_chunks() {
        let inside = action(
            "\"image\"",
            "  { chunks = \"image\", size = 4, encoding = \"hex\", steps = [\n    { send = \"{offset} {chunk} {image.size_hi}\\n\" },\n  ] },\n",
        );
        let m = load("chunks-ok", &inside).expect("loads");
        match &m.actions["a"].steps[0] {
            Step::Chunks { size, steps, .. } => {
                assert_eq!(*size, 4);
                assert_eq!(steps.len(), 1);
            }
            other => panic!("{other:?}"),
        }
        let outside = action("\"image\"", "  { send = \"{offset}\" },\n");
        let (line, col, msg, _) = error("chunks-outside", &outside);
        assert_eq!((line, col), (11, 13), "at the placeholder: {msg}");
        assert!(msg.contains("{offset} is neither a parameter"), "{msg}");
        let no_param = action(
            "",
            "  { chunks = \"image\", steps = [ { wait = \"1ms\" } ] },\n",
        );
        let (_, _, msg, _) = error("chunks-no-param", &no_param);
        assert!(
            msg.contains("data \"image\" is neither a parameter"),
            "{msg}"
        );
    }

    #[test]
    fn a_data_parameter_has_only_its_sizes() {
        let (line, col, msg, _) = error(
            "param-field",
            &action("\"image\"", "  { send = \"{image.crc}\" },\n"),
        );
        assert_eq!((line, col), (11, 13), "at the placeholder: {msg}");
        assert!(msg.contains("a parameter has only {image.size}"), "{msg}");
    }

    #[test]
    fn identify_captures_are_variables() {
        let text = [
            "[model]\nname = \"T\"\n\n[interfaces.modbus]\nkind = \"modbus-tcp\"\naddress = \"127.0.0.1:502\"\n",
            "\n[interfaces.console]\nkind = \"serial\"\npath = \"/dev/null\"\n",
            "\n[actions.a]\nsteps = [\n  { identify = \"basic\", capture = \"id\" },\n  { send = \"{id_vendor} {id_model_name}\", on = \"console\" },\n]\n",
        ]
        .concat();
        assert!(
            load("identify", &text).is_ok(),
            "{:?}",
            load("identify", &text).err()
        );
    }

    #[test]
    fn a_step_timeout_is_bounded_and_defaults_to_the_interface() {
        let m = load("expect-default", &action("", "  { expect = 'x' },\n")).expect("loads");
        match &m.actions["a"].steps[0] {
            Step::Expect { timeout, .. } => assert_eq!(*timeout, super::DEFAULT_STEP_TIMEOUT),
            other => panic!("{other:?}"),
        }
        let (line, col, msg, _) = error(
            "expect-long",
            &action("", "  { expect = 'x', timeout = \"25h\" },\n"),
        );
        assert_eq!((line, col), (11, 29), "{msg}");
        assert!(msg.contains("longer than 24 hours"), "{msg}");
    }
}
