//! Reading and validating board files.
//!
//! All problems of all files are collected before returning, so a lab fixes a file in one pass.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_spanned::Spanned;

use super::diag::{BoardError, BoardErrors, Diag};
use super::model::{RawBoardFile, SecretSource, StepSection};
use super::{
    Action, Board, Declarations, Emulator, EmulatorKind, Interface, Model, SecretSpec,
    SerialEndpoint, SerialSpec, Step, Unit, DEFAULT_STEP_TIMEOUT,
};
use crate::template::Template;

/// What the caller will do with the boards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadMode {
    /// `hilsec run` / `list`: files found in folders that declare no unit are model templates
    /// and skipped; a file named explicitly must declare units.
    Run,
    /// `hilsec check-board`: every file is validated, with or without units.
    Check,
}

/// Loads every board file under `paths` (files, or folders searched recursively for `*.toml`).
pub fn load_boards(paths: &[PathBuf], mode: LoadMode) -> Result<Vec<Board>, BoardErrors> {
    let mut errors = Vec::new();
    let mut files: Vec<(PathBuf, bool)> = Vec::new();
    for p in paths {
        match std::fs::metadata(p) {
            Ok(m) if m.is_dir() => match toml_files_under(p) {
                Ok(mut found) => {
                    if found.is_empty() {
                        errors.push(plain_error(
                            p,
                            "folder holds no board files (*.toml)",
                            Some("point --board at a board file or a folder of them"),
                        ));
                    }
                    found.sort();
                    files.extend(found.into_iter().map(|f| (f, false)));
                }
                Err(e) => errors.push(plain_error(p, &format!("cannot read folder: {e}"), None)),
            },
            Ok(_) => files.push((p.clone(), true)),
            Err(e) => errors.push(plain_error(
                p,
                &format!("cannot read board file: {e}"),
                Some("check the path; board files are TOML files or folders of them"),
            )),
        }
    }

    let mut loader = Loader {
        env_optional: mode == LoadMode::Check,
        ..Loader::default()
    };
    let mut boards = Vec::new();
    for (file, explicit) in files {
        match loader.load_file(&file) {
            Ok(Some(board)) => {
                if board.units.is_empty() && explicit && mode == LoadMode::Run {
                    errors.push(plain_error(
                        &file,
                        "declares no [[unit]]: nothing to run",
                        Some("add a [[unit]] table, or write a unit file with `extends = \"this-file.toml\"`"),
                    ));
                } else if !board.units.is_empty() || mode == LoadMode::Check {
                    boards.push(board);
                }
            }
            Ok(None) => {}
            Err(mut e) => errors.append(&mut e),
        }
    }

    // Unit names are result and evidence paths: they must be unique and path-safe.
    let mut seen: HashMap<String, PathBuf> = HashMap::new();
    for b in &boards {
        for u in &b.units {
            if let Some(prev) = seen.insert(u.name.clone(), u.source.clone()) {
                errors.push(plain_error(
                    &u.source,
                    &format!("unit name {:?} is also used in {}", u.name, prev.display()),
                    Some("unit names must be unique across all boards of a run"),
                ));
            }
        }
    }

    if errors.is_empty() {
        Ok(boards)
    } else {
        errors.dedup();
        Err(BoardErrors(errors))
    }
}

fn toml_files_under(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "toml") {
                out.push(path);
            }
        }
    }
    Ok(out)
}

fn plain_error(path: &Path, message: &str, help: Option<&str>) -> BoardError {
    BoardError {
        path: path.to_path_buf(),
        line: 0,
        col: 0,
        message: message.to_string(),
        help: help.map(str::to_string),
    }
}

#[derive(Default)]
struct Loader {
    /// Models already loaded, by canonical path, so units extending one model share it.
    models: HashMap<PathBuf, Arc<Model>>,
    /// `check-board` validates structure on machines that hold no secrets: an unset
    /// environment variable is only an error when the board is about to run.
    env_optional: bool,
}

impl Loader {
    /// Loads one file. `Ok(None)`: a pure model file already loaded through `extends`.
    fn load_file(&mut self, path: &Path) -> Result<Option<Board>, Vec<BoardError>> {
        let text = read_text(path)?;
        let raw: RawBoardFile = toml::from_str(&text).map_err(|e| {
            let mut d = Diag::new(path, &text);
            d.at(
                e.span(),
                e.message().trim().to_string(),
                toml_help(e.message()),
            );
            d.errors
        })?;
        let mut d = Diag::new(path, &text);

        let model = if let Some(ext) = &raw.extends {
            if raw.model.is_some()
                || raw.declarations.is_some()
                || raw.emulator.is_some()
                || !raw.interfaces.is_empty()
                || !raw.actions.is_empty()
            {
                d.at(
                    Some(ext.span()),
                    "a file with `extends` may only declare [[unit]] tables",
                    Some("move model, interfaces, actions, declarations and emulator into the model file"),
                );
                return Err(d.errors);
            }
            let base = path.parent().unwrap_or(Path::new(".")).join(ext.get_ref());
            let key = base.canonicalize().unwrap_or_else(|_| base.clone());
            if let Some(m) = self.models.get(&key) {
                m.clone()
            } else {
                if !base.is_file() {
                    d.at(
                        Some(ext.span()),
                        format!(
                            "extends {:?}, which is not a readable file",
                            base.display().to_string()
                        ),
                        Some("the path is relative to this board file"),
                    );
                    return Err(d.errors);
                }
                let base_text = read_text(&base)?;
                let base_raw: RawBoardFile = toml::from_str(&base_text).map_err(|e| {
                    let mut bd = Diag::new(&base, &base_text);
                    bd.at(
                        e.span(),
                        e.message().trim().to_string(),
                        toml_help(e.message()),
                    );
                    bd.errors
                })?;
                if base_raw.extends.is_some() {
                    d.at(
                        Some(ext.span()),
                        "the extended file itself uses `extends`; only one level is supported",
                        None,
                    );
                    return Err(d.errors);
                }
                let mut bd = Diag::new(&base, &base_text);
                let m = build_model(&base, &base_raw, &mut bd);
                if !bd.errors.is_empty() {
                    return Err(bd.errors);
                }
                let m = Arc::new(m.ok_or_else(Vec::new)?);
                self.models.insert(key, m.clone());
                m
            }
        } else {
            let key = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
            let m = build_model(path, &raw, &mut d);
            match m {
                Some(m) if d.errors.is_empty() => {
                    let m = Arc::new(m);
                    let already = self.models.insert(key, m.clone()).is_some();
                    if already && raw.unit.is_empty() {
                        return Ok(None);
                    }
                    m
                }
                _ => return Err(d.errors),
            }
        };

        let mut units = Vec::new();
        for u in &raw.unit {
            if let Some(unit) = build_unit(path, u, &model, &mut d, self.env_optional) {
                units.push(unit);
            }
        }
        if d.errors.is_empty() {
            Ok(Some(Board { model, units }))
        } else {
            Err(d.errors)
        }
    }
}

fn read_text(path: &Path) -> Result<String, Vec<BoardError>> {
    let bytes = std::fs::read(path).map_err(|e| {
        vec![plain_error(
            path,
            &format!("cannot read board file: {e}"),
            Some("check the path and its permissions"),
        )]
    })?;
    String::from_utf8(bytes).map_err(|e| {
        vec![plain_error(
            path,
            &format!(
                "not UTF-8 text (invalid byte at offset {})",
                e.utf8_error().valid_up_to()
            ),
            Some("board files are UTF-8 TOML"),
        )]
    })
}

fn toml_help(msg: &str) -> Option<&'static str> {
    if msg.contains("unknown field") {
        Some("remove or rename the key; the board-file reference is in boards/README.md")
    } else if msg.contains("missing field") {
        Some("add the key; the board-file reference is in boards/README.md")
    } else if msg.contains("invalid type") {
        Some("check the value's type (string, number, table, array)")
    } else {
        None
    }
}

fn parse_duration(d: &mut Diag, s: &Spanned<String>) -> Option<Duration> {
    match humantime::parse_duration(s.get_ref()) {
        Ok(v) => Some(v),
        Err(e) => {
            d.at(
                Some(s.span()),
                format!("invalid duration {:?}: {e}", s.get_ref()),
                Some("write e.g. \"500ms\", \"10s\" or \"2m\""),
            );
            None
        }
    }
}

fn parse_template(d: &mut Diag, span: std::ops::Range<usize>, src: &str) -> Option<Template> {
    match Template::parse(src) {
        Ok(t) => Some(t),
        Err(e) => {
            d.at(Some(span), format!("invalid template {src:?}: {e}"), None);
            None
        }
    }
}

/// Variables every template of a unit can use.
const UNIT_VARS: &[&str] = &[
    "unit.name",
    "unit.serial",
    "unit.mac",
    "unit.firmware",
    "model.name",
    "model.manufacturer",
    "declarations.login_user",
    "secret.password",
];

fn check_global_var(var: &str, emulator_vars: &BTreeSet<String>) -> Result<(), String> {
    if UNIT_VARS.contains(&var) || var.starts_with("unit.") {
        // `unit.X` for free variables is checked per unit, where `vars` is known.
        return Ok(());
    }
    if let Some(rest) = var.strip_prefix("emulator.") {
        if emulator_vars.contains(rest) {
            return Ok(());
        }
        return Err(format!(
            "{{{var}}}: the emulator's `ready` regex has no named capture {rest:?}{}",
            if emulator_vars.is_empty() {
                String::new()
            } else {
                format!(
                    " (it has: {})",
                    emulator_vars.iter().cloned().collect::<Vec<_>>().join(", ")
                )
            }
        ));
    }
    Err(format!(
        "unknown variable {{{var}}}: known are {}, {{unit.VAR}} for a unit's [unit.vars], {{emulator.NAME}} for captures of the emulator's `ready` regex",
        UNIT_VARS.iter().map(|v| format!("{{{v}}}")).collect::<Vec<_>>().join(", ")
    ))
}

fn build_model(path: &Path, raw: &RawBoardFile, d: &mut Diag) -> Option<Model> {
    let Some(model) = &raw.model else {
        d.at(
            Some(0..0),
            "no [model] table",
            Some("a board file starts with [model] name = \"...\", or is a unit file with `extends = \"model.toml\"`"),
        );
        return None;
    };

    let decl = raw.declarations.clone().unwrap_or_default();
    let throttle_threshold = match &decl.throttle_threshold {
        Some(s) => parse_duration(d, s).unwrap_or(Duration::from_millis(800)),
        None => Duration::from_millis(800),
    };
    let declarations = Declarations {
        password_mechanism: decl.password_mechanism.as_ref().map(|m| *m.get_ref()),
        login_user: decl.login_user.clone().unwrap_or_else(|| "admin".into()),
        min_password_length: decl.min_password_length.unwrap_or(8),
        brute_force_attempts: decl.brute_force_attempts.unwrap_or(8).clamp(2, 1000),
        throttle_threshold,
        public_identifiers: decl.public_identifiers.clone(),
    };

    // Emulator.
    let mut emulator_vars = BTreeSet::new();
    let emulator = raw.emulator.as_ref().and_then(|e| {
        let span = e.span();
        let e = e.get_ref();
        let kind = match e.kind.get_ref().as_str() {
            "sim" => EmulatorKind::Sim,
            "qemu" => EmulatorKind::Qemu,
            "renode" => EmulatorKind::Renode,
            "process" => EmulatorKind::Process,
            other => {
                d.at(
                    Some(e.kind.span()),
                    format!("unknown emulator kind {other:?}"),
                    Some("use \"sim\", \"qemu\", \"renode\" or \"process\""),
                );
                return None;
            }
        };
        let command = e.command.clone().unwrap_or_else(|| {
            match kind {
                EmulatorKind::Sim => "hilsec-simdev",
                EmulatorKind::Qemu => "qemu-system-arm",
                EmulatorKind::Renode => "renode",
                EmulatorKind::Process => "",
            }
            .to_string()
        });
        if command.is_empty() {
            d.at(Some(span.clone()), "emulator kind \"process\" needs `command`", None);
        }
        let ready = match regex::Regex::new(e.ready.get_ref()) {
            Ok(r) => r,
            Err(err) => {
                d.at(Some(e.ready.span()), format!("invalid regex in `ready`: {err}"), None);
                return None;
            }
        };
        emulator_vars.extend(ready.capture_names().flatten().map(str::to_string));
        let ready_timeout = match &e.ready_timeout {
            Some(t) => parse_duration(d, t)?,
            None => Duration::from_secs(20),
        };
        let mut args = Vec::new();
        for a in &e.args {
            if let Some(t) = parse_template(d, span.clone(), a) {
                for v in t.vars() {
                    if v.starts_with("emulator.") {
                        d.at(Some(span.clone()), format!("emulator argument {a:?} uses {{{v}}}, which only exists once the emulator is ready"), None);
                    } else if let Err(msg) = check_global_var(v, &BTreeSet::new()) {
                        d.at(Some(span.clone()), msg, None);
                    }
                }
                args.push(t);
            }
        }
        Some(Emulator {
            kind,
            command,
            args,
            ready,
            ready_timeout,
        })
    });

    // Interfaces.
    let mut interfaces = BTreeMap::new();
    for (name, iface) in &raw.interfaces {
        let span = iface.span();
        let i = iface.get_ref();
        let timeout = match &i.timeout {
            Some(t) => parse_duration(d, t).unwrap_or(DEFAULT_STEP_TIMEOUT),
            None => DEFAULT_STEP_TIMEOUT,
        };
        match i.kind.get_ref().as_str() {
            "serial" => {
                let endpoint = match (&i.path, &i.tcp) {
                    (Some(p), None) => parse_template(d, span.clone(), p).map(SerialEndpoint::Tty),
                    (None, Some(t)) => parse_template(d, span.clone(), t).map(SerialEndpoint::Tcp),
                    _ => {
                        d.at(
                            Some(span.clone()),
                            format!("serial interface {name:?} needs exactly one of `path` (a tty) or `tcp` (host:port)"),
                            None,
                        );
                        None
                    }
                };
                if let Some(ep) = endpoint {
                    let t = match &ep {
                        SerialEndpoint::Tty(t) | SerialEndpoint::Tcp(t) => t,
                    };
                    for v in t.vars() {
                        if let Err(msg) = check_global_var(v, &emulator_vars) {
                            d.at(Some(span.clone()), msg, None);
                        }
                    }
                    interfaces.insert(
                        name.clone(),
                        Interface::Serial(SerialSpec {
                            endpoint: ep,
                            baud: i.baud.unwrap_or(115_200),
                            timeout,
                        }),
                    );
                }
            }
            other => d.at(
                Some(i.kind.span()),
                format!("unknown interface kind {other:?} for interface {name:?}"),
                Some("supported kinds: \"serial\" (tty path or raw TCP)"),
            ),
        }
    }

    // Actions: first the names and parameters (calls may point forward), then the steps.
    let default_iface = raw.interfaces.keys().next().cloned();
    let mut actions = BTreeMap::new();
    for (name, act) in &raw.actions {
        let a = act.get_ref();
        let action_on = match &a.on {
            Some(on) => {
                if !raw.interfaces.contains_key(on.get_ref()) {
                    d.at(
                        Some(on.span()),
                        missing_iface_msg(on.get_ref(), raw),
                        Some("declare it under [interfaces.NAME]"),
                    );
                }
                Some(on.get_ref().clone())
            }
            None => default_iface.clone(),
        };
        for sp in &a.secret_params {
            if !a.params.contains(sp) {
                d.at(
                    Some(act.span()),
                    format!("action {name:?}: secret_params names {sp:?}, which is not in params"),
                    None,
                );
            }
        }
        let mut known: BTreeSet<String> = a.params.iter().cloned().collect();
        let mut steps = Vec::new();
        for step in &a.steps {
            if let Some(s) = build_step(
                d,
                raw,
                name,
                step,
                action_on.as_deref(),
                &interfaces,
                &mut known,
                &emulator_vars,
            ) {
                steps.push(s);
            }
        }
        actions.insert(
            name.clone(),
            Action {
                name: name.clone(),
                params: a.params.clone(),
                secret_params: a.secret_params.clone(),
                steps,
            },
        );
    }
    check_calls(d, raw, &actions);

    Some(Model {
        name: model.name.clone(),
        manufacturer: model.manufacturer.clone(),
        source: path.to_path_buf(),
        firmware: model.firmware.clone(),
        declarations,
        emulator,
        interfaces,
        actions,
    })
}

fn missing_iface_msg(name: &str, raw: &RawBoardFile) -> String {
    let have: Vec<&str> = raw.interfaces.keys().map(String::as_str).collect();
    if have.is_empty() {
        format!("interface {name:?} is not declared (this file declares no interfaces)")
    } else {
        format!(
            "interface {name:?} is not declared (declared: {})",
            have.join(", ")
        )
    }
}

#[allow(clippy::too_many_arguments)]
fn build_step(
    d: &mut Diag,
    raw: &RawBoardFile,
    action: &str,
    step: &Spanned<StepSection>,
    action_on: Option<&str>,
    interfaces: &BTreeMap<String, Interface>,
    known: &mut BTreeSet<String>,
    emulator_vars: &BTreeSet<String>,
) -> Option<Step> {
    let span = step.span();
    let s = step.get_ref();
    let verbs = [
        s.send.is_some(),
        s.expect.is_some(),
        s.wait.is_some(),
        s.call.is_some(),
    ]
    .iter()
    .filter(|b| **b)
    .count();
    if verbs != 1 {
        d.at(
            Some(span),
            format!("action {action:?}: each step needs exactly one of `send`, `expect`, `wait`, `call` (found {verbs})"),
            Some("split it into several steps"),
        );
        return None;
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
    let needs_iface = s.send.is_some() || s.expect.is_some();
    if needs_iface && on.is_none() {
        d.at(Some(span), format!("action {action:?}: this step talks to the device but the board declares no interface"), Some("declare one under [interfaces.NAME]"));
        return None;
    }
    let on = on.unwrap_or_default();
    let timeout = match &s.timeout {
        Some(t) => parse_duration(d, t)?,
        None => interfaces
            .get(&on)
            .map(Interface::default_timeout)
            .unwrap_or(DEFAULT_STEP_TIMEOUT),
    };
    let check_vars = |d: &mut Diag, t: &Template, known: &BTreeSet<String>| {
        for v in t.vars() {
            if v.contains('.') {
                if let Err(msg) = check_global_var(v, emulator_vars) {
                    d.at(
                        Some(span.clone()),
                        format!("action {action:?}: {msg}"),
                        None,
                    );
                }
            } else if !known.contains(v) {
                d.at(
                    Some(span.clone()),
                    format!("action {action:?}: {{{v}}} is neither a parameter of the action nor captured by an earlier step"),
                    Some("add it to `params`, or capture it with a named group (?P<NAME>...) in an earlier `expect`"),
                );
            }
        }
    };
    if let Some(text) = &s.send {
        let t = parse_template(d, span.clone(), text)?;
        check_vars(d, &t, known);
        return Some(Step::Send {
            on,
            text: t,
            flush: s.flush.unwrap_or(false),
        });
    }
    if let Some(pat) = &s.expect {
        let pattern = compile_bytes_regex(d, pat, "expect")?;
        let reject = match &s.reject {
            Some(r) => Some(compile_bytes_regex(d, r, "reject")?),
            None => None,
        };
        known.extend(pattern.capture_names().flatten().map(str::to_string));
        return Some(Step::Expect {
            on,
            pattern,
            reject,
            timeout,
        });
    }
    if let Some(w) = &s.wait {
        return Some(Step::Wait(parse_duration(d, w)?));
    }
    if let Some(call) = &s.call {
        let mut args = BTreeMap::new();
        for (k, v) in &s.args {
            let t = parse_template(d, span.clone(), v)?;
            check_vars(d, &t, known);
            args.insert(k.clone(), t);
        }
        if let Some(callee) = raw.actions.get(call.get_ref()) {
            // The callee's captures become visible to later steps.
            for st in &callee.get_ref().steps {
                if let Some(p) = &st.get_ref().expect {
                    if let Ok(r) = regex::bytes::Regex::new(p.get_ref()) {
                        known.extend(r.capture_names().flatten().map(str::to_string));
                    }
                }
            }
        }
        return Some(Step::Call {
            action: call.get_ref().clone(),
            args,
        });
    }
    None
}

fn compile_bytes_regex(
    d: &mut Diag,
    pat: &Spanned<String>,
    key: &str,
) -> Option<regex::bytes::Regex> {
    match regex::bytes::RegexBuilder::new(pat.get_ref())
        .size_limit(1 << 20)
        .build()
    {
        Ok(r) => Some(r),
        Err(e) => {
            d.at(
                Some(pat.span()),
                format!("invalid regex in `{key}`: {}", e.to_string().lines().last().unwrap_or("")),
                Some("board regexes use Rust regex syntax; write them in single-quoted TOML strings so backslashes stay as written"),
            );
            None
        }
    }
}

/// Calls name existing actions, pass exactly their parameters, and do not recurse.
fn check_calls(d: &mut Diag, raw: &RawBoardFile, actions: &BTreeMap<String, Action>) {
    for (name, act) in &raw.actions {
        for step in &act.get_ref().steps {
            let Some(call) = &step.get_ref().call else {
                continue;
            };
            let Some(callee) = actions.get(call.get_ref()) else {
                let have: Vec<&str> = actions.keys().map(String::as_str).collect();
                d.at(
                    Some(call.span()),
                    format!(
                        "action {name:?} calls {:?}, which is not defined (defined: {})",
                        call.get_ref(),
                        have.join(", ")
                    ),
                    None,
                );
                continue;
            };
            for p in &callee.params {
                if !step.get_ref().args.contains_key(p) {
                    d.at(
                        Some(step.span()),
                        format!("call of {:?} lacks argument {p:?}", callee.name),
                        Some("add it under `args`"),
                    );
                }
            }
            for k in step.get_ref().args.keys() {
                if !callee.params.contains(k) {
                    d.at(
                        Some(step.span()),
                        format!(
                            "call of {:?} passes {k:?}, which is not one of its params ({})",
                            callee.name,
                            callee.params.join(", ")
                        ),
                        None,
                    );
                }
            }
        }
    }
    // Cycles: depth-first over the call graph.
    fn visit<'a>(
        n: &'a str,
        actions: &'a BTreeMap<String, Action>,
        stack: &mut Vec<&'a str>,
    ) -> Option<Vec<String>> {
        if stack.contains(&n) {
            let mut c: Vec<String> = stack.iter().map(|s| s.to_string()).collect();
            c.push(n.to_string());
            return Some(c);
        }
        stack.push(n);
        if let Some(a) = actions.get(n) {
            for s in &a.steps {
                if let Step::Call { action, .. } = s {
                    if let Some(c) = visit(action, actions, stack) {
                        return Some(c);
                    }
                }
            }
        }
        stack.pop();
        None
    }
    for (name, act) in &raw.actions {
        if let Some(cycle) = visit(name, actions, &mut Vec::new()) {
            d.at(
                Some(act.span()),
                format!("actions call each other in a cycle: {}", cycle.join(" -> ")),
                None,
            );
            break;
        }
    }
}

fn build_unit(
    path: &Path,
    u: &Spanned<super::model::UnitSection>,
    model: &Model,
    d: &mut Diag,
    env_optional: bool,
) -> Option<Unit> {
    let span = u.span();
    let u = u.get_ref();
    let name = u.name.get_ref();
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        || name.starts_with('.')
    {
        d.at(
            Some(u.name.span()),
            format!("unit name {name:?} must be non-empty and use only letters, digits, '-', '_' and '.'"),
            Some("it names result and evidence files"),
        );
    }
    let password = u
        .password
        .as_ref()
        .and_then(|p| resolve_secret(d, p, model, env_optional));
    // `{unit.VAR}` in the model's templates must exist for this unit.
    let mut used: BTreeSet<String> = BTreeSet::new();
    let mut collect = |t: &Template| {
        for v in t.vars() {
            if let Some(rest) = v.strip_prefix("unit.") {
                if !matches!(rest, "name" | "serial" | "mac" | "firmware") {
                    used.insert(rest.to_string());
                }
            }
        }
    };
    if let Some(e) = &model.emulator {
        e.args.iter().for_each(&mut collect);
    }
    for i in model.interfaces.values() {
        match i {
            Interface::Serial(s) => match &s.endpoint {
                SerialEndpoint::Tty(t) | SerialEndpoint::Tcp(t) => collect(t),
            },
        }
    }
    for a in model.actions.values() {
        for s in &a.steps {
            match s {
                Step::Send { text, .. } => collect(text),
                Step::Call { args, .. } => args.values().for_each(&mut collect),
                _ => {}
            }
        }
    }
    for v in used {
        if !u.vars.contains_key(&v) {
            d.at(
                Some(span.clone()),
                format!("unit {name:?} has no variable {v:?}, which the model's templates use as {{unit.{v}}}"),
                Some("add it under this unit's `vars`"),
            );
        }
    }
    Some(Unit {
        name: name.clone(),
        serial: u.serial.clone(),
        mac: u.mac.clone(),
        firmware: u.firmware.clone().or_else(|| model.firmware.clone()),
        password,
        vars: u.vars.clone(),
        source: path.to_path_buf(),
    })
}

fn resolve_secret(
    d: &mut Diag,
    p: &Spanned<SecretSource>,
    model: &Model,
    env_optional: bool,
) -> Option<SecretSpec> {
    let s = p.get_ref();
    let n = [s.value.is_some(), s.env.is_some(), s.action.is_some()]
        .iter()
        .filter(|b| **b)
        .count();
    if n != 1 {
        d.at(
            Some(p.span()),
            "a secret needs exactly one of `value`, `env` or `action` (with `capture`)",
            Some("e.g. password = { env = \"PLUG1_PASSWORD\" }"),
        );
        return None;
    }
    if let Some(v) = &s.value {
        return Some(SecretSpec::Known(v.clone()));
    }
    if let Some(var) = &s.env {
        return match std::env::var(var) {
            Ok(v) => Some(SecretSpec::Known(v)),
            // Never used: check mode does not run anything.
            Err(_) if env_optional => Some(SecretSpec::Known(String::new())),
            Err(_) => {
                d.at(
                    Some(p.span()),
                    format!("environment variable {var} is not set"),
                    Some("export it before running hilsec (its value is never logged)"),
                );
                None
            }
        };
    }
    let action = s.action.clone().unwrap_or_default();
    let Some(capture) = s.capture.clone() else {
        d.at(
            Some(p.span()),
            "a secret read by an action needs `capture`: the name of the capture that holds it",
            None,
        );
        return None;
    };
    if !model.has_action(&action) {
        d.at(
            Some(p.span()),
            format!("action {action:?} is not defined in the model"),
            None,
        );
        return None;
    }
    Some(SecretSpec::FromAction { action, capture })
}
