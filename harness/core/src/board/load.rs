//! Reading and validating board files.
//!
//! All problems of all files are collected before returning, so a lab fixes a file in one pass.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_spanned::Spanned;

use super::diag::{BoardError, BoardErrors, Diag};
use super::model::{InterfaceSection, RawBoardFile, SecretSource, StepSection};
use super::{
    Action, Board, Body, ChunkEncoding, Declarations, DisclosureDeclarations, Emulator,
    EmulatorKind, HttpSpec, Interface, ModbusRtuSpec, ModbusTable, ModbusTcpSpec,
    ModbusWriteTarget, Model, MqttBroker, MqttSpec, SecretSpec, SerialEndpoint, SerialSpec, Step,
    TlsFiles, Unit, UpdateDeclarations, DEFAULT_STEP_TIMEOUT,
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
                    // Loaded already as the base of a unit file that `extends` it: keep that
                    // model, so its units and this file's units are one model.
                    if let Some(cached) = self.models.get(&key) {
                        if raw.unit.is_empty() {
                            return Ok(None);
                        }
                        cached.clone()
                    } else {
                        let m = Arc::new(m);
                        self.models.insert(key, m.clone());
                        m
                    }
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
        Ok(v) if v > super::MAX_DURATION => {
            d.at(
                Some(s.span()),
                format!("duration {:?} is longer than 24 hours", s.get_ref()),
                Some("durations in board files are at most \"24h\"; check the unit (e.g. \"500ms\", \"10s\", \"2m\")"),
            );
            None
        }
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
    "board.dir",
    "broker.address",
    "broker.host",
    "broker.port",
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

/// `lockout_after`, `lockout_window` and `max_guess_rate` of `[declarations]`, checked.
fn lockout_declarations(
    d: &mut Diag,
    decl: &super::model::Declarations,
) -> (Option<usize>, Option<Duration>, u32) {
    let after = match &decl.lockout_after {
        Some(n) if *n.get_ref() == 0 => {
            d.at(
                Some(n.span()),
                "lockout_after must be at least 1",
                Some("the number of consecutive wrong passwords after which the unit locks or throttles"),
            );
            None
        }
        Some(n) => Some(*n.get_ref()),
        None => None,
    };
    let window = decl
        .lockout_window
        .as_ref()
        .and_then(|s| parse_duration(d, s));
    let rate = match &decl.max_guess_rate {
        Some(r) if *r.get_ref() == 0 => {
            d.at(
                Some(r.span()),
                "max_guess_rate must be at least 1 (guesses per hour)",
                None,
            );
            super::DEFAULT_MAX_GUESS_RATE
        }
        Some(r) => *r.get_ref(),
        None => super::DEFAULT_MAX_GUESS_RATE,
    };
    (after, window, rate)
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
    let (lockout_after, lockout_window, max_guess_rate) = lockout_declarations(d, &decl);
    let declarations = Declarations {
        password_mechanism: decl.password_mechanism.as_ref().map(|m| *m.get_ref()),
        login_user: decl.login_user.clone().unwrap_or_else(|| "admin".into()),
        min_password_length: decl.min_password_length.unwrap_or(8),
        brute_force_attempts: decl.brute_force_attempts.unwrap_or(8).clamp(2, 1000),
        throttle_threshold,
        lockout_after,
        lockout_window,
        max_guess_rate,
        public_identifiers: decl.public_identifiers.clone(),
        update: decl.update.as_ref().map(|u| {
            let resolve = |d: &mut Diag, p: &Spanned<String>| {
                let full = path.parent().unwrap_or(Path::new(".")).join(p.get_ref());
                if !full.is_file() {
                    d.at(
                        Some(p.span()),
                        format!("{} is not a readable file", full.display()),
                        Some("paths in board files are relative to the board file"),
                    );
                }
                full
            };
            let r = u.get_ref();
            let signing_key = r.signing_key.as_ref().map(|k| resolve(d, k));
            let genuine_image = r.genuine_image.as_ref().map(|k| resolve(d, k));
            UpdateDeclarations {
                action: r.action.clone().unwrap_or_else(|| "push_update".into()),
                version_action: r
                    .version_action
                    .clone()
                    .unwrap_or_else(|| "read_version".into()),
                signing_key,
                genuine_image,
                payload_size: r.payload_size.unwrap_or(32 * 1024).clamp(64, 16 << 20),
            }
        }),
        disclosure: None,
    };
    let mut declarations = declarations;
    if let Some(dd) = &decl.disclosure {
        let span = dd.span();
        let r = dd.get_ref();
        let t = |d: &mut Diag, v: &Option<String>| {
            v.as_ref().and_then(|s| parse_template(d, span.clone(), s))
        };
        let parsed = DisclosureDeclarations {
            policy_url: t(d, &r.policy_url),
            security_txt: t(d, &r.security_txt),
            support_url: t(d, &r.support_url),
            csaf_provider: t(d, &r.csaf_provider),
            ca: r
                .ca
                .iter()
                .filter_map(|c| parse_template(d, span.clone(), c))
                .collect(),
        };
        declarations.disclosure = Some(parsed);
    }

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
        // Arguments and environment: `{emulator.*}` does not exist yet; secrets only in `env`.
        let emulator_template = |d: &mut Diag, what: &str, src: &Spanned<String>, secrets: bool| {
            let t = parse_template(d, src.span(), src.get_ref())?;
            for v in t.vars() {
                if v.starts_with("emulator.") {
                    d.at(Some(src.span()), format!("{what} {:?} uses {{{v}}}, which only exists once the emulator is ready", src.get_ref()), None);
                } else if v.starts_with("secret.") && !secrets {
                    d.at(
                        Some(src.span()),
                        format!("{what} {:?} uses {{{v}}}: a process's arguments are visible to every user of the machine (ps, /proc/PID/cmdline)", src.get_ref()),
                        Some("pass secrets in the environment instead: [emulator] env = { HILSEC_SIM_PASSWORD = \"{secret.password}\" }"),
                    );
                } else if let Err(msg) = check_global_var(v, &BTreeSet::new()) {
                    d.at(Some(src.span()), msg, None);
                }
            }
            Some(t)
        };
        let mut args = Vec::new();
        for a in &e.args {
            if let Some(t) = emulator_template(d, "emulator argument", a, false) {
                args.push(t);
            }
        }
        let mut env = Vec::new();
        for (k, v) in &e.env {
            if k.is_empty() || k.contains('=') || k.contains('\0') {
                d.at(Some(v.span()), format!("{k:?} is not an environment variable name"), Some("use names like HILSEC_SIM_PASSWORD"));
                continue;
            }
            if let Some(t) = emulator_template(d, &format!("emulator env {k}"), v, true) {
                env.push((k.clone(), t));
            }
        }
        Some(Emulator {
            kind,
            command,
            args,
            env,
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
        check_interface_keys(d, name, i, span.clone());
        match i.kind.get_ref().as_str() {
            "serial" => {
                let endpoint = serial_endpoint(d, i, span.clone(), &format!("serial interface {name:?}"));
                if let Some(ep) = endpoint {
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
            "mqtt" => {
                let broker = match i.broker.as_deref() {
                    None | Some("embedded") => Some(MqttBroker::Embedded),
                    Some(a) => parse_template(d, span.clone(), a).map(MqttBroker::Address),
                };
                let opt = |d: &mut Diag, v: &Option<String>| {
                    v.as_ref().and_then(|t| parse_template(d, span.clone(), t))
                };
                let client_id = opt(d, &i.client_id);
                let username = opt(d, &i.username);
                let password = opt(d, &i.password);
                let base = path.parent().unwrap_or(Path::new("."));
                let tls = match (&i.ca, &i.cert, &i.key) {
                    (None, None, None) => None,
                    (Some(ca), cert, key) => {
                        let files = TlsFiles {
                            ca: base.join(ca),
                            cert: cert.as_ref().map(|c| base.join(c)),
                            key: key.as_ref().map(|k| base.join(k)),
                        };
                        if files.cert.is_some() != files.key.is_some() {
                            d.at(Some(span.clone()), format!("mqtt interface {name:?}: a client certificate needs both `cert` and `key`"), None);
                        }
                        for f in [Some(&files.ca), files.cert.as_ref(), files.key.as_ref()].into_iter().flatten() {
                            if !f.is_file() {
                                d.at(Some(span.clone()), format!("{} is not a readable file", f.display()), Some("paths in board files are relative to the board file"));
                            }
                        }
                        Some(files)
                    }
                    _ => {
                        d.at(Some(span.clone()), format!("mqtt interface {name:?}: TLS needs `ca` (the lab CA bundle)"), None);
                        None
                    }
                };
                let v5 = match i.protocol {
                    None | Some(3) | Some(4) => false,
                    Some(5) => {
                        // Parsed so the key is known, but the link speaks 3.1.1 only: refuse
                        // rather than silently talk another protocol version.
                        d.at(Some(span.clone()), "MQTT 5 is not supported yet by hilsec's MQTT interface", Some("use protocol = 3 (MQTT 3.1.1); most brokers and devices accept it"));
                        true
                    }
                    Some(other) => {
                        d.at(Some(span.clone()), format!("mqtt protocol {other} is not supported"), Some("use 3 (MQTT 3.1.1) or 5"));
                        false
                    }
                };
                if tls.is_some() {
                    // Never fall back to plaintext when a board asks for TLS.
                    d.at(Some(span.clone()), format!("mqtt interface {name:?}: MQTT over TLS is not supported yet"), Some("remove ca/cert/key to connect without TLS, or expose the broker on a plaintext loopback listener for the bench"));
                }
                if let Some(broker) = broker {
                    let spec = MqttSpec { broker, client_id, username, password, v5, tls, timeout };
                    interfaces.insert(name.clone(), Interface::Mqtt(spec));
                }
            }
            "http" => {
                let ca = i.ca.as_ref().and_then(|c| parse_template(d, span.clone(), c));
                interfaces.insert(name.clone(), Interface::Http(HttpSpec { ca, timeout }));
            }
            "modbus-tcp" => match &i.address {
                Some(a) => {
                    if let Some(address) = parse_template(d, span.clone(), a) {
                        interfaces.insert(
                            name.clone(),
                            Interface::ModbusTcp(ModbusTcpSpec { address, unit_id: i.unit_id.unwrap_or(1), timeout }),
                        );
                    }
                }
                None => d.at(Some(span.clone()), format!("modbus-tcp interface {name:?} needs `address` (host:port)"), None),
            },
            "modbus-rtu" => {
                let endpoint = serial_endpoint(d, i, span.clone(), &format!("modbus-rtu interface {name:?} (RTU over TCP with `tcp`)"));
                if let Some(endpoint) = endpoint {
                    interfaces.insert(
                        name.clone(),
                        Interface::ModbusRtu(ModbusRtuSpec { endpoint, baud: i.baud.unwrap_or(19_200), unit_id: i.unit_id.unwrap_or(1), timeout }),
                    );
                }
            }
            other => d.at(
                Some(i.kind.span()),
                format!("unknown interface kind {other:?} for interface {name:?}"),
                Some("supported kinds: \"serial\" (tty path or raw TCP), \"mqtt\", \"modbus-tcp\", \"modbus-rtu\", \"http\""),
            ),
        }
    }

    for (name, iface) in &interfaces {
        for t in iface.templates() {
            for v in t.vars() {
                if let Err(msg) = check_global_var(v, &emulator_vars) {
                    let span = raw.interfaces.get(name).map(|i| i.span());
                    d.at(span, msg, None);
                }
            }
        }
    }

    if let (Some(dd), Some(raw_dd)) = (
        &declarations.disclosure,
        raw.declarations
            .as_ref()
            .and_then(|x| x.disclosure.as_ref()),
    ) {
        for t in dd.templates() {
            for v in t.vars() {
                if let Err(msg) = check_global_var(v, &emulator_vars) {
                    d.at(
                        Some(raw_dd.span()),
                        format!("[declarations.disclosure]: {msg}"),
                        None,
                    );
                }
            }
        }
    }

    // Actions: first the names and parameters (calls may point forward), then the steps.
    // The default interface is the first one written in the file.
    let default_iface = raw
        .interfaces
        .iter()
        .min_by_key(|(_, i)| i.span().start)
        .map(|(n, _)| n.clone());
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
        let mut build = |list: &[Spanned<StepSection>], known: &mut BTreeSet<String>| {
            list.iter()
                .filter_map(|step| {
                    build_step(
                        d,
                        raw,
                        name,
                        step,
                        action_on.as_deref(),
                        &interfaces,
                        known,
                        &emulator_vars,
                        &a.params,
                    )
                })
                .collect::<Vec<_>>()
        };
        let steps = build(&a.steps, &mut known);
        let cleanup = build(&a.cleanup, &mut known);
        actions.insert(
            name.clone(),
            Action {
                name: name.clone(),
                params: a.params.clone(),
                secret_params: a.secret_params.clone(),
                steps,
                cleanup,
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
];

fn verbs_of(s: &StepSection) -> Vec<&'static str> {
    let present = [
        s.send.is_some(),
        s.expect.is_some() && s.await_topic.is_none() && !is_modbus_read(s) && s.get.is_none(),
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
    ];
    VERBS
        .iter()
        .zip(present)
        .filter(|(_, p)| *p)
        .map(|(v, _)| *v)
        .collect()
}

fn is_modbus_read(s: &StepSection) -> bool {
    s.read_holding.is_some()
        || s.read_input.is_some()
        || s.read_coils.is_some()
        || s.read_discrete.is_some()
}

/// Variables a `chunks` loop defines for its steps.
const CHUNK_VARS: &[&str] = &[
    "chunk",
    "offset",
    "offset_hi",
    "offset_lo",
    "length",
    "end",
    "index",
];

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
        "expect" | "await" | "get" | "read_holding" | "read_input" | "read_coils" | "read_discrete"
    );
    for (key, present, ok) in [
        (
            "accept",
            s.accept.as_ref().map(|a| a.span()),
            takes_outcomes,
        ),
        (
            "reject",
            s.reject.as_ref().map(|a| a.span()),
            takes_outcomes,
        ),
        (
            "timeout",
            s.timeout.as_ref().map(|a| a.span()),
            !matches!(verb, "wait" | "call" | "chunks" | "publish" | "get"),
        ),
    ] {
        if let (Some(sp), false) = (present, ok) {
            d.at(
                Some(sp),
                format!("action {action:?}: a `{verb}` step does not take `{key}`"),
                Some(match key {
                    "timeout" if verb == "get" => "an HTTP request waits as long as its interface's `timeout`; set it there",
                    "timeout" => "only steps that wait for the device take `timeout` (send, expect, await, Modbus steps)",
                    _ => "`accept` and `reject` go with `expect` (console), `await`, Modbus reads and `get`",
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
    let needs_iface = !matches!(verb, "wait" | "call" | "chunks");
    if needs_iface && on.is_none() {
        d.at(Some(span), format!("action {action:?}: this step talks to the device but the board declares no interface"), Some("declare one under [interfaces.NAME]"));
        return None;
    }
    let on = on.unwrap_or_default();
    // The step's verb must suit its interface's kind.
    if needs_iface {
        let want: &[&str] = match verb {
            "send" | "expect" => &["serial"],
            "publish" | "await" => &["mqtt"],
            "get" => &["http"],
            _ => &["modbus-tcp", "modbus-rtu"],
        };
        if let Some(i) = interfaces.get(&on) {
            if !want.contains(&i.kind()) {
                d.at(
                    Some(span.clone()),
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
                let (base, field) = v.split_once('.').unwrap_or((v, ""));
                if params.iter().any(|p| p == base) {
                    // `{image.size}` of a data parameter.
                    if !matches!(field, "size" | "size_hi" | "size_lo") {
                        d.at(
                            Some(span.clone()),
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
                            Some(span.clone()),
                            format!("action {action:?}: {{{v}}}: a capture has only numbered parts ({{{base}.0}}, {{{base}.1}}, ...)"),
                            None,
                        );
                    }
                    continue;
                }
                if let Err(msg) = check_global_var(v, emulator_vars) {
                    d.at(
                        Some(span.clone()),
                        format!("action {action:?}: {msg}"),
                        Some("a data parameter's size is {NAME.size} only in an action whose `params` include NAME; the variables are listed under Templates in boards/README.md"),
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
    let template = |d: &mut Diag, src: &str, known: &BTreeSet<String>| {
        let t = parse_template(d, span.clone(), src)?;
        check_vars(d, &t, known);
        Some(t)
    };
    let data_ref = |d: &mut Diag, name: &str, known: &BTreeSet<String>| {
        if !known.contains(name) {
            d.at(
                Some(span.clone()),
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
            let t = template(d, s.send.as_deref().unwrap_or(""), known)?;
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
            if let Some(callee) = raw.actions.get(call.get_ref()) {
                // The callee's captures become visible to later steps.
                let mut stack: Vec<&Spanned<StepSection>> = callee.get_ref().steps.iter().collect();
                while let Some(st) = stack.pop() {
                    let st_ref = st.get_ref();
                    for p in [&st_ref.expect, &st_ref.accept].into_iter().flatten() {
                        if let Ok(r) = regex::bytes::Regex::new(p.get_ref()) {
                            known.extend(r.capture_names().flatten().map(str::to_string));
                        }
                    }
                    if let Some(c) = &st_ref.capture {
                        known.insert(c.clone());
                    }
                    stack.extend(st_ref.steps.iter());
                }
            }
            Some(Step::Call {
                action: call.get_ref().clone(),
                args,
            })
        }
        "chunks" => {
            let data = s.chunks.as_ref()?;
            let data_name = data_ref(d, data.get_ref(), known);
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
            let size = s.size.unwrap_or(256);
            if size == 0 || size > 1 << 20 {
                d.at(
                    Some(span.clone()),
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
            inner_known.extend(CHUNK_VARS.iter().map(|v| v.to_string()));
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
            let topic = template(d, s.publish.as_deref().unwrap_or(""), known)?;
            let body = match (&s.payload, &s.data) {
                (Some(p), None) => Body::Text(vec![template(d, p, known)?]),
                (None, Some(n)) => Body::Data(data_ref(d, n, known)),
                (None, None) => Body::Text(vec![]),
                (Some(_), Some(_)) => {
                    d.at(
                        Some(span.clone()),
                        "a publish carries either `payload` (text) or `data` (bytes), not both",
                        None,
                    );
                    return None;
                }
            };
            let qos = s.qos.unwrap_or(1);
            if qos > 2 {
                d.at(
                    Some(span.clone()),
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
            let filter = template(d, s.await_topic.as_deref().unwrap_or(""), known)?;
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
            let count = s.count.unwrap_or(1);
            if count == 0 || count > 125 {
                d.at(
                    Some(span.clone()),
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
                        d.at(Some(span.clone()), "at most 123 registers per write", None);
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
        "get" => {
            let url = template(d, s.get.as_deref().unwrap_or(""), known)?;
            let auth = match (&s.user, &s.password) {
                (Some(u), Some(p)) => Some((template(d, u, known)?, template(d, p, known)?)),
                (None, None) => None,
                _ => {
                    d.at(
                        Some(span.clone()),
                        "basic auth needs both `user` and `password`",
                        None,
                    );
                    return None;
                }
            };
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
            Some(Step::HttpGet {
                on,
                url,
                auth,
                pattern,
                accept,
                reject,
            })
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
            for f in IDENTIFY_FIELDS {
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

/// Captures of an `identify` step (Modbus device identification objects 0x00-0x05).
pub const IDENTIFY_FIELDS: &[&str] = &[
    "vendor",
    "product_code",
    "revision",
    "vendor_url",
    "product_name",
    "model_name",
];

/// A tty `path` or a raw-TCP `tcp` endpoint: exactly one of them.
fn serial_endpoint(
    d: &mut Diag,
    i: &InterfaceSection,
    span: std::ops::Range<usize>,
    what: &str,
) -> Option<SerialEndpoint> {
    match (&i.path, &i.tcp) {
        (Some(p), None) => parse_template(d, span, p).map(SerialEndpoint::Tty),
        (None, Some(t)) => parse_template(d, span, t).map(SerialEndpoint::Tcp),
        _ => {
            d.at(
                Some(span),
                format!("{what} needs exactly one of `path` (a tty) or `tcp` (host:port)"),
                None,
            );
            None
        }
    }
}

/// Keys that only mean something for some interface kinds.
fn check_interface_keys(
    d: &mut Diag,
    name: &str,
    i: &InterfaceSection,
    span: std::ops::Range<usize>,
) {
    let kind = i.kind.get_ref().as_str();
    let mut wrong = Vec::new();
    let serialish = matches!(kind, "serial" | "modbus-rtu");
    if !serialish {
        if i.path.is_some() {
            wrong.push("path");
        }
        if i.tcp.is_some() {
            wrong.push("tcp");
        }
        if i.baud.is_some() {
            wrong.push("baud");
        }
    }
    if kind != "mqtt" {
        for (k, present) in [
            ("broker", i.broker.is_some()),
            ("client_id", i.client_id.is_some()),
            ("username", i.username.is_some()),
            ("password", i.password.is_some()),
            ("protocol", i.protocol.is_some()),
            ("ca", i.ca.is_some() && kind != "http"),
            ("cert", i.cert.is_some()),
            ("key", i.key.is_some()),
        ] {
            if present {
                wrong.push(k);
            }
        }
    }
    if kind != "modbus-tcp" && i.address.is_some() {
        wrong.push("address");
    }
    if !kind.starts_with("modbus") && i.unit_id.is_some() {
        wrong.push("unit_id");
    }
    if !wrong.is_empty() {
        d.at(
            Some(span),
            format!(
                "interface {name:?} of kind {kind:?} does not take {}",
                wrong.join(", ")
            ),
            Some("see boards/README.md for the keys of each interface kind"),
        );
    }
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
    fn flatten(steps: &[Spanned<StepSection>]) -> Vec<&Spanned<StepSection>> {
        let mut out = Vec::new();
        for s in steps {
            out.push(s);
            out.extend(flatten(&s.get_ref().steps));
        }
        out
    }
    for (name, act) in &raw.actions {
        let a = act.get_ref();
        for step in flatten(&a.steps).into_iter().chain(flatten(&a.cleanup)) {
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
            for s in a.steps.iter().chain(a.cleanup.iter()).flat_map(Step::walk) {
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
        e.env.iter().map(|(_, t)| t).for_each(&mut collect);
    }
    for i in model.interfaces.values() {
        i.templates().into_iter().for_each(&mut collect);
    }
    if let Some(dd) = &model.declarations.disclosure {
        dd.templates().into_iter().for_each(&mut collect);
    }
    for a in model.actions.values() {
        for top in a.steps.iter().chain(a.cleanup.iter()) {
            for s in top.walk() {
                s.templates().into_iter().for_each(&mut collect);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Loads `text` as a board file; the errors, or the model.
    fn load(name: &str, text: &str) -> Result<Arc<Model>, Vec<BoardError>> {
        let dir = std::env::temp_dir().join(format!("hilsec-load-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let file = dir.join("board.toml");
        std::fs::write(&file, text).expect("write");
        let r = load_boards(std::slice::from_ref(&file), LoadMode::Check);
        let _ = std::fs::remove_dir_all(&dir);
        r.map(|mut b| b.remove(0).model).map_err(|e| e.0)
    }

    /// The one error of `text`: its line, column and message.
    fn error(name: &str, text: &str) -> (usize, usize, String, Option<String>) {
        let errs = load(name, text).expect_err("a load error");
        assert_eq!(errs.len(), 1, "{errs:?}");
        let e = &errs[0];
        (e.line, e.col, e.message.clone(), e.help.clone())
    }

    const HEAD: &str =
        "[model]\nname = \"T\"\n\n[interfaces.console]\nkind = \"serial\"\npath = \"/dev/null\"\n";

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
            Step::HttpGet {
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
    fn durations_are_bounded() {
        let text = format!("{HEAD}\n[actions.a]\nsteps = [\n  {{ wait = \"100000h\" }},\n]\n");
        let (line, col, msg, _) = error("long", &text);
        assert_eq!((line, col), (10, 12), "{msg}");
        assert!(msg.contains("longer than 24 hours"), "{msg}");
        let text = format!("{HEAD}\n[actions.a]\nsteps = [\n  {{ wait = \"24h\" }},\n]\n");
        assert!(load("day", &text).is_ok());
    }

    #[test]
    fn unknown_template_variables_are_refused() {
        for (tmpl, words) in [
            ("{foo.bar}", "unknown variable {foo.bar}"),
            ("{image.size}", "unknown variable {image.size}"),
            ("{user.size_lo}x{user.nope}", "{user.nope}"),
        ] {
            let text = format!(
                "{HEAD}\n[actions.a]\nparams = [\"user\"]\nsteps = [\n  {{ send = \"{tmpl}\" }},\n]\n"
            );
            let (line, col, msg, _) = error("vars", &text);
            assert_eq!((line, col), (11, 3), "{msg}");
            assert!(msg.contains(words), "{msg}");
        }
    }

    #[test]
    fn the_default_interface_is_the_first_written() {
        let text = "[model]\nname = \"T\"\n\n[interfaces.zconsole]\nkind = \"serial\"\npath = \"/dev/null\"\n\n[interfaces.amqtt]\nkind = \"mqtt\"\n\n[actions.a]\nsteps = [ { send = \"x\" } ]\n";
        let m = load("default-iface", text).expect("loads");
        match &m.actions["a"].steps[0] {
            Step::Send { on, .. } => assert_eq!(on, "zconsole"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn secrets_go_in_the_emulator_environment_not_its_arguments() {
        let text = format!(
            "{HEAD}
[emulator]
kind = \"process\"
command = \"sim\"
args = [\"--unit\", \"{{unit.name}}\",
        \"--password\", \"{{secret.password}}\"]
env = {{ SIM_PASSWORD = \"{{secret.password}}\", SIM_UNIT = \"{{unit.name}}\" }}
ready = 'ready'
"
        );
        let (line, col, msg, help) = error("args-secret", &text);
        assert_eq!((line, col), (12, 23), "{msg}");
        assert!(
            msg.contains("{secret.password}") && msg.contains("cmdline"),
            "{msg}"
        );
        assert!(help.unwrap_or_default().contains("env = {"));

        let ok = text.replace(",\n        \"--password\", \"{secret.password}\"", "");
        let m = load("env-secret", &ok).expect("loads");
        let e = m.emulator.as_ref().expect("emulator");
        let names: Vec<&str> = e.env.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["SIM_PASSWORD", "SIM_UNIT"]);
        let env_emulator = text.replace("SIM_UNIT = \"{unit.name}\"", "SIM_X = \"{emulator.x}\"");
        let errs = load("env-emulator", &env_emulator).expect_err("refused");
        assert!(
            errs.iter()
                .any(|e| e.message.contains("only exists once the emulator is ready")),
            "{errs:?}"
        );
    }
}
