//! Model building: a parsed file's `[model]`, `[declarations]`, `[emulator]` and `[actions]`
//! turned into a resolved [`Model`].
//!
//! This is where the seams meet: the emulator is built first, so its `ready` captures are
//! known and interface and declaration templates can use `{emulator.NAME}`; then the interfaces
//! ([`super::interfaces`]), so steps can check theirs; then every action's steps
//! ([`super::steps`]) and finally the calls between actions ([`super::calls`]), which need all
//! actions. Defaults of declarations live here.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use serde_spanned::Spanned;

use super::calls::check_calls;
use super::diag::Diag;
use super::interfaces::{build_interfaces, default_interface, missing_iface_msg};
use super::model::{EmulatorSection, RawBoardFile, StepSection};
use super::steps::build_step;
use super::values::{parse_duration, parse_template, regex_error};
use super::vars::check_global_var;
use super::{
    Action, Declarations, DisclosureDeclarations, EmulatedSystem, Emulator, EmulatorKind, LoadData,
    MemoryLoad, Model, Step, UpdateDeclarations,
};
use crate::template::Template;

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

/// The model of a file: declarations, emulator, interfaces and actions, every reference
/// checked. `None` only when there is no `[model]` table; other problems are in `d`.
pub(crate) fn build_model(path: &Path, raw: &RawBoardFile, d: &mut Diag) -> Option<Model> {
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
        production_firmware: decl.production_firmware,
        broker: None,
        network: None,
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
    // Emulator.
    let mut emulator_vars = BTreeSet::new();
    let emulator = raw
        .emulator
        .as_ref()
        .and_then(|e| build_emulator(e, raw, d, &mut emulator_vars));

    // Interfaces.
    let interfaces = build_interfaces(path, raw, d, &emulator_vars);
    if declarations.production_firmware == Some(true) {
        super::hardware::check_lock_test_addresses(d, raw, &interfaces);
    }

    // Disclosure URLs: after the emulator, whose captures they may use.
    let mut declarations = declarations;
    if let Some(dd) = &decl.disclosure {
        let r = dd.get_ref();
        let mut t = |v: &Spanned<String>| {
            let t = parse_template(d, v)?;
            for var in t.vars() {
                if let Err(msg) = check_global_var(var, &emulator_vars) {
                    d.at(
                        Some(d.narrow(v.span(), &format!("{{{var}}}"))),
                        format!("[declarations.disclosure]: {msg}"),
                        None,
                    );
                }
            }
            Some(t)
        };
        let parsed = DisclosureDeclarations {
            policy_url: r.policy_url.as_ref().and_then(&mut t),
            security_txt: r.security_txt.as_ref().and_then(&mut t),
            support_url: r.support_url.as_ref().and_then(&mut t),
            csaf_provider: r.csaf_provider.as_ref().and_then(&mut t),
            ca: r.ca.iter().filter_map(&mut t).collect(),
        };
        declarations.disclosure = Some(parsed);
    }
    declarations.broker = decl
        .broker
        .as_ref()
        .and_then(|b| build_broker_declarations(d, b.get_ref(), &emulator_vars));
    declarations.network = decl
        .network
        .as_ref()
        .and_then(|n| build_network_declarations(d, n, &emulator_vars));

    // Actions: first the names and parameters (calls may point forward), then the steps.
    // The default interface is the first one written in the file.
    let default_iface = default_interface(raw);
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
            if !a.params.contains(sp.get_ref()) {
                d.at(
                    Some(sp.span()),
                    format!(
                        "action {name:?}: secret_params names {:?}, which is not in params",
                        sp.get_ref()
                    ),
                    Some("list it in `params` too, or remove it from `secret_params`"),
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
                secret_params: a
                    .secret_params
                    .iter()
                    .map(|p| p.get_ref().clone())
                    .collect(),
                steps,
                cleanup,
            },
        );
    }
    check_calls(d, raw, &actions);

    let mut m = Model {
        name: model.name.clone(),
        manufacturer: model.manufacturer.clone(),
        source: path.to_path_buf(),
        firmware: model.firmware.clone(),
        declarations,
        emulator,
        interfaces,
        actions,
    };
    let ports = used_ports(&m);
    match &mut m.emulator {
        Some(e) => {
            e.ports = ports;
            if let Some(EmulatedSystem::Qemu { .. } | EmulatedSystem::Renode { .. }) = &e.system {
                // The ports of the command line hilsec writes.
                e.ports.extend(["serial", "gdb"].map(str::to_string));
                e.ports.insert(
                    if e.kind == EmulatorKind::Qemu {
                        "qmp"
                    } else {
                        "monitor"
                    }
                    .to_string(),
                );
            }
        }
        None => {
            if let Some(p) = ports.first() {
                d.at(
                    Some(0..0),
                    format!(
                        "{{port.{p}}} is used, but only an emulated unit has ports hilsec picks"
                    ),
                    Some("add an [emulator] section, or write the address the unit listens on"),
                );
            }
        }
    }
    Some(m)
}

/// `[emulator]`: how to start an emulated unit. The named captures of its `ready` regex are
/// added to `emulator_vars` (they become `{emulator.NAME}` for interfaces and steps).
fn build_emulator(
    e: &Spanned<EmulatorSection>,
    raw: &RawBoardFile,
    d: &mut Diag,
    emulator_vars: &mut BTreeSet<String>,
) -> Option<Emulator> {
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
        d.at(
            Some(span.clone()),
            "emulator kind \"process\" needs `command`",
            None,
        );
    }
    let ready = match &e.ready {
        None => None,
        Some(src) => match regex::Regex::new(src.get_ref()) {
            Ok(r) => Some(r),
            Err(err) => {
                d.at(
                    Some(src.span()),
                    format!("invalid regex in `ready`: {}", regex_error(&err)),
                    Some("board regexes use Rust regex syntax; write them in single-quoted TOML strings so backslashes stay as written"),
                );
                return None;
            }
        },
    };
    if let Some(r) = &ready {
        emulator_vars.extend(r.capture_names().flatten().map(str::to_string));
    }
    let ready_timeout = match &e.ready_timeout {
        Some(t) => parse_duration(d, t)?,
        None => Duration::from_secs(20),
    };
    // Arguments and environment: `{emulator.*}` does not exist yet; secrets only in `env`.
    let emulator_template = |d: &mut Diag, what: &str, src: &Spanned<String>, secrets: bool| {
        let t = parse_template(d, src)?;
        for v in t.vars() {
            let at = d.narrow(src.span(), &format!("{{{v}}}"));
            if v.starts_with("emulator.") {
                d.at(
                    Some(at.clone()),
                    format!(
                        "{what} {:?} uses {{{v}}}, which only exists once the emulator is ready",
                        src.get_ref()
                    ),
                    None,
                );
            } else if v.starts_with("secret.") && !secrets {
                d.at(
                    Some(at.clone()),
                    format!("{what} {:?} uses {{{v}}}: a process's arguments are visible to every user of the machine (ps, /proc/PID/cmdline)", src.get_ref()),
                    Some("pass secrets in the environment instead: [emulator] env = { HILSEC_SIM_PASSWORD = \"{secret.password}\" }"),
                );
            } else if let Err(msg) = check_global_var(v, &BTreeSet::new()) {
                d.at(Some(at.clone()), msg.to_string(), None);
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
            d.at(
                Some(v.span()),
                format!("{k:?} is not an environment variable name"),
                Some("use names like HILSEC_SIM_PASSWORD"),
            );
            continue;
        }
        if let Some(t) = emulator_template(d, &format!("emulator env {k}"), v, true) {
            env.push((k.clone(), t));
        }
    }
    let ready_tcp = e
        .ready_tcp
        .as_ref()
        .and_then(|t| emulator_template(d, "ready_tcp", t, false));
    let console = e.console.as_ref().map(|c| c.get_ref().clone());
    if let Some(c) = &e.console {
        match raw.interfaces.get(c.get_ref()) {
            None => d.at(
                Some(c.span()),
                missing_iface_msg(c.get_ref(), raw),
                Some("`console` names a serial interface with `tcp`, connected as soon as the emulator listens"),
            ),
            Some(i) if i.get_ref().kind.get_ref() != "serial" || i.get_ref().tcp.is_none() => d.at(
                Some(c.span()),
                format!("`console` {:?} must be a serial interface over TCP (`tcp = \"127.0.0.1:{{port.serial}}\"`)", c.get_ref()),
                None,
            ),
            Some(_) => {}
        }
    }
    // The keys of a machine hilsec starts itself.
    let only = |d: &mut Diag, key: &str, v: Option<std::ops::Range<usize>>, ok: bool, who: &str| {
        if let (Some(at), false) = (v, ok) {
            d.at(
                Some(at),
                format!("emulator kind {:?} does not take `{key}`", e.kind.get_ref()),
                Some(who),
            );
        }
    };
    let is_qemu = kind == EmulatorKind::Qemu;
    let is_renode = kind == EmulatorKind::Renode;
    only(
        d,
        "machine",
        e.machine.as_ref().map(|m| m.span()),
        is_qemu,
        "`machine` is for kind = \"qemu\"",
    );
    only(
        d,
        "platform",
        e.platform.as_ref().map(|m| m.span()),
        is_renode,
        "`platform` is for kind = \"renode\"",
    );
    only(
        d,
        "uart",
        e.uart.as_ref().map(|m| m.span()),
        is_renode,
        "`uart` is for kind = \"renode\"",
    );
    only(
        d,
        "firmware",
        e.firmware.as_ref().map(|m| m.span()),
        is_qemu || is_renode,
        "`firmware` is for kind = \"qemu\" or \"renode\"",
    );
    only(
        d,
        "load",
        e.load.first().map(|m| m.span()),
        is_qemu || is_renode,
        "`load` is for kind = \"qemu\" or \"renode\"",
    );
    let firmware = e
        .firmware
        .as_ref()
        .and_then(|f| emulator_template(d, "firmware", f, false));
    let system = match (kind, &e.machine, &e.platform) {
        (EmulatorKind::Qemu, Some(m), _) => match firmware.clone() {
            Some(firmware) => Some(EmulatedSystem::Qemu {
                machine: m.get_ref().clone(),
                firmware,
            }),
            None => {
                d.at(
                    Some(m.span()),
                    "a qemu `machine` needs `firmware` (the image to run, e.g. an ELF)",
                    Some("add firmware = \"{board.dir}/firmware.elf\""),
                );
                None
            }
        },
        (EmulatorKind::Renode, _, Some(p)) => {
            let platform = emulator_template(d, "platform", p, false);
            match (platform, firmware.clone()) {
                (Some(platform), Some(firmware)) => Some(EmulatedSystem::Renode {
                    platform,
                    firmware,
                    uart: e
                        .uart
                        .as_ref()
                        .map_or_else(|| "sysbus.usart1".to_string(), |u| u.get_ref().clone()),
                }),
                (_, None) => {
                    d.at(
                        Some(p.span()),
                        "a renode `platform` needs `firmware` (the ELF to load)",
                        Some("add firmware = \"{board.dir}/firmware.elf\""),
                    );
                    None
                }
                _ => None,
            }
        }
        _ => None,
    };
    if system.is_none() && (is_qemu || is_renode) && firmware.is_some() {
        d.at(
            e.firmware.as_ref().map(|f| f.span()),
            if is_qemu {
                "`firmware` needs `machine` (hilsec then writes the QEMU command line)"
            } else {
                "`firmware` needs `platform` (hilsec then writes the Renode script)"
            },
            Some("or leave both out and write the command line in `args`"),
        );
    }
    let mut load = Vec::new();
    for l in &e.load {
        let lr = l.get_ref();
        let address = match parse_address(lr.address.get_ref()) {
            Some(a) => a,
            None => {
                d.at(
                    Some(lr.address.span()),
                    format!("{:?} is not an address", lr.address.get_ref()),
                    Some("write it in hex, e.g. \"0x2001f000\""),
                );
                continue;
            }
        };
        let data = match (&lr.text, &lr.file) {
            (Some(t), None) => emulator_template(d, "load text", t, true).map(LoadData::Text),
            (None, Some(f)) => emulator_template(d, "load file", f, false).map(LoadData::File),
            _ => {
                d.at(
                    Some(l.span()),
                    "a `load` entry needs exactly one of `text` or `file`",
                    None,
                );
                None
            }
        };
        if let Some(data) = data {
            load.push(MemoryLoad { address, data });
        }
    }
    // When is the unit up? A machine hilsec starts itself is up when its console accepts.
    let console = console.or_else(|| system.as_ref().and_then(|_| default_console(raw)));
    if ready.is_none() && ready_tcp.is_none() && console.is_none() {
        d.at(
            Some(span.clone()),
            "the emulator needs a way to tell it is ready: `ready` (a regex on its output), `ready_tcp` (an address that accepts) or `console` (a TCP serial interface connected at start)",
            Some("e.g. console = \"console\" with [interfaces.console] tcp = \"127.0.0.1:{port.serial}\""),
        );
    }
    Some(Emulator {
        kind,
        command,
        args,
        env,
        ready,
        ready_tcp,
        console,
        ready_timeout,
        system,
        load,
        ports: BTreeSet::new(),
    })
}

/// The first serial-over-TCP interface of the file, the console of a machine hilsec starts.
fn default_console(raw: &RawBoardFile) -> Option<String> {
    raw.interfaces
        .iter()
        .filter(|(_, i)| i.get_ref().kind.get_ref() == "serial" && i.get_ref().tcp.is_some())
        .min_by_key(|(_, i)| i.span().start)
        .map(|(n, _)| n.clone())
}

/// "0x2001f000" or "536998912" (a `load` address, a debug step's rendered address).
pub(crate) fn parse_address(s: &str) -> Option<u64> {
    let s = s.trim().replace('_', "");
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

/// Every `{port.NAME}` a model's templates use.
fn used_ports(m: &Model) -> BTreeSet<String> {
    fn steps<'a>(out: &mut Vec<&'a Template>, ss: &'a [Step]) {
        for s in ss {
            out.extend(s.templates());
            steps(out, s.nested());
        }
    }
    let mut ts: Vec<&Template> = Vec::new();
    if let Some(e) = &m.emulator {
        ts.extend(e.args.iter());
        ts.extend(e.env.iter().map(|(_, t)| t));
        ts.extend(e.ready_tcp.iter());
        for l in &e.load {
            match &l.data {
                LoadData::Text(t) | LoadData::File(t) => ts.push(t),
            }
        }
        match &e.system {
            Some(EmulatedSystem::Qemu { firmware, .. }) => ts.push(firmware),
            Some(EmulatedSystem::Renode {
                platform, firmware, ..
            }) => {
                ts.push(platform);
                ts.push(firmware);
            }
            None => {}
        }
    }
    for i in m.interfaces.values() {
        ts.extend(i.templates());
    }
    for a in m.actions.values() {
        steps(&mut ts, &a.steps);
        steps(&mut ts, &a.cleanup);
    }
    if let Some(dd) = &m.declarations.disclosure {
        ts.extend(dd.templates());
    }
    if let Some(b) = &m.declarations.broker {
        ts.extend(b.templates());
    }
    if let Some(n) = &m.declarations.network {
        ts.push(&n.address);
    }
    ts.iter()
        .flat_map(|t| t.vars())
        .filter_map(|v| v.strip_prefix("port."))
        .map(str::to_string)
        .collect()
}

/// A template of a declaration table, its variables checked (`what` names the table).
fn declared_template(
    d: &mut Diag,
    v: &Spanned<String>,
    emulator_vars: &BTreeSet<String>,
    what: &str,
) -> Option<Template> {
    let t = parse_template(d, v)?;
    for var in t.vars() {
        if let Err(msg) = check_global_var(var, emulator_vars) {
            d.at(
                Some(d.narrow(v.span(), &format!("{{{var}}}"))),
                format!("{what}: {msg}"),
                None,
            );
        }
    }
    Some(t)
}

fn build_broker_declarations(
    d: &mut Diag,
    b: &super::model::BrokerDeclarations,
    emulator_vars: &BTreeSet<String>,
) -> Option<super::BrokerDeclarations> {
    const WHAT: &str = "[declarations.broker]";
    let address = declared_template(d, &b.address, emulator_vars, WHAT);
    let command_topics: Vec<Template> = b
        .command_topics
        .iter()
        .filter_map(|t| {
            if t.get_ref().contains(['#', '+']) {
                d.at(
                    Some(t.span()),
                    format!("{WHAT}: command topic {:?} has a wildcard", t.get_ref()),
                    Some(
                        "name the topics themselves: the suite publishes one probe message to each",
                    ),
                );
                return None;
            }
            declared_template(d, t, emulator_vars, WHAT)
        })
        .collect();
    let listen = match &b.listen {
        Some(l) => parse_duration(d, l)?,
        None => std::time::Duration::from_secs(3),
    };
    if listen > std::time::Duration::from_secs(60) {
        d.at(
            b.listen.as_ref().map(|l| l.span()),
            format!("{WHAT}: `listen` is at most 60s"),
            None,
        );
        return None;
    }
    Some(super::BrokerDeclarations {
        address: address?,
        command_topics,
        listen,
    })
}

fn build_network_declarations(
    d: &mut Diag,
    n: &Spanned<super::model::NetworkDeclarations>,
    emulator_vars: &BTreeSet<String>,
) -> Option<super::NetworkDeclarations> {
    const WHAT: &str = "[declarations.network]";
    let r = n.get_ref();
    let address = match &r.address {
        Some(a) => {
            let v = a.get_ref();
            if v.contains(['/', '*', ' ', ',']) || v.contains("..") {
                d.at(
                    Some(a.span()),
                    format!("{WHAT}: `address` {v:?} is not one host"),
                    Some("the scan covers the unit's own address only: give one IP address or host name, never a range"),
                );
                return None;
            }
            declared_template(d, a, emulator_vars, WHAT)?
        }
        None => Template::parse("{unit.address}").ok()?,
    };
    let ports = match &r.ports {
        Some(p) => {
            let list = p.get_ref();
            if list.is_empty() || list.len() > crate::iface::scan::MAX_PORTS {
                d.at(
                    Some(p.span()),
                    format!(
                        "{WHAT}: `ports` lists {} ports; give 1 to {}",
                        list.len(),
                        crate::iface::scan::MAX_PORTS
                    ),
                    Some("the scan is bounded: list the ports of the login services to look for, or leave `ports` out for the well-known ones"),
                );
                return None;
            }
            if list.contains(&0) {
                d.at(
                    Some(p.span()),
                    format!("{WHAT}: port 0 cannot be scanned"),
                    None,
                );
                return None;
            }
            let mut l = list.clone();
            l.sort_unstable();
            l.dedup();
            l
        }
        None => crate::iface::scan::DEFAULT_PORTS.to_vec(),
    };
    let dur = |d: &mut Diag, v: &Option<Spanned<String>>, default: u64| match v {
        Some(v) => parse_duration(d, v),
        None => Some(std::time::Duration::from_millis(default)),
    };
    let connect_timeout = dur(d, &r.connect_timeout, 1000)?;
    let banner_timeout = dur(d, &r.banner_timeout, 2000)?;
    for (key, v, t) in [
        ("connect_timeout", &r.connect_timeout, connect_timeout),
        ("banner_timeout", &r.banner_timeout, banner_timeout),
    ] {
        if t.is_zero() || t > std::time::Duration::from_secs(30) {
            d.at(
                v.as_ref().map(|v| v.span()),
                format!("{WHAT}: `{key}` must be more than 0 and at most 30s"),
                None,
            );
            return None;
        }
    }
    // The whole scan must fit well inside its test's time limit (120 s).
    let rounds = ports.len().div_ceil(crate::iface::scan::MAX_PARALLEL) as u32;
    let bound = (connect_timeout + banner_timeout * 2) * rounds;
    if bound > std::time::Duration::from_secs(100) {
        d.at(
            Some(n.span()),
            format!("{WHAT}: {} ports with these timeouts may take {bound:?}, more than the 100 s a scan may use", ports.len()),
            Some("scan fewer ports or shorten `connect_timeout`/`banner_timeout`"),
        );
        return None;
    }
    let mut services = Vec::new();
    for s in &r.services {
        let p = *s.get_ref();
        if p == 0 {
            d.at(
                Some(s.span()),
                format!("{WHAT}: port 0 is no service"),
                None,
            );
            return None;
        }
        if !services.contains(&p) {
            services.push(p);
        }
    }
    Some(super::NetworkDeclarations {
        address,
        ports,
        services,
        connect_timeout,
        banner_timeout,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::testutil::{error, load, HEAD};
    use super::super::{EmulatorKind, DEFAULT_MAX_GUESS_RATE};

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
        assert_eq!((line, col), (12, 24), "at the placeholder: {msg}");
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

    #[test]
    fn a_secret_param_not_in_params_is_named_where_written() {
        let text = format!(
            "{HEAD}\n[actions.a]\nparams = [\"user\"]\nsecret_params = [\"user\", \"pw\"]\nsteps = [ {{ send = \"{{user}}\" }} ]\n"
        );
        let (line, col, msg, help) = error("secret-params", &text);
        assert_eq!((line, col), (10, 26), "at \"pw\": {msg}");
        assert!(msg.contains("secret_params names \"pw\""), "{msg}");
        assert!(help.is_some());
    }

    #[test]
    fn declarations_have_their_defaults() {
        let m = load("decl-defaults", HEAD).expect("loads");
        let d = &m.declarations;
        assert_eq!(d.login_user, "admin");
        assert_eq!(d.min_password_length, 8);
        assert_eq!(d.brute_force_attempts, 8);
        assert_eq!(d.throttle_threshold, Duration::from_millis(800));
        assert_eq!(d.max_guess_rate, DEFAULT_MAX_GUESS_RATE);
        assert!(d.lockout_after.is_none() && d.lockout_window.is_none());
        assert!(d.update.is_none() && d.disclosure.is_none());
        let text = format!(
            "{HEAD}\n[declarations]\nbrute_force_attempts = 1000000\nlockout_after = 5\nlockout_window = \"15m\"\n\n[declarations.update]\n"
        );
        let m = load("decl-set", &text).expect("loads");
        let d = &m.declarations;
        assert_eq!(d.brute_force_attempts, 1000, "clamped");
        assert_eq!(d.lockout_after, Some(5));
        assert_eq!(d.lockout_window, Some(Duration::from_secs(900)));
        let u = d.update.as_ref().expect("update");
        assert_eq!(
            (u.action.as_str(), u.version_action.as_str()),
            ("push_update", "read_version")
        );
        assert_eq!(u.payload_size, 32 * 1024);
    }

    #[test]
    fn lockout_and_guess_rate_must_be_positive() {
        let (line, col, msg, _) = error(
            "lockout-0",
            &format!("{HEAD}\n[declarations]\nlockout_after = 0\n"),
        );
        assert_eq!((line, col), (9, 17), "{msg}");
        assert!(msg.contains("at least 1"), "{msg}");
        let (_, _, msg, _) = error(
            "rate-0",
            &format!("{HEAD}\n[declarations]\nmax_guess_rate = 0\n"),
        );
        assert!(msg.contains("max_guess_rate must be at least 1"), "{msg}");
    }

    #[test]
    fn update_files_are_relative_to_the_board_file() {
        let (line, _, msg, help) = error(
            "update-key",
            &format!("{HEAD}\n[declarations.update]\nsigning_key = \"no-such-key.pem\"\n"),
        );
        assert_eq!(line, 9, "{msg}");
        assert!(
            msg.ends_with("no-such-key.pem is not a readable file"),
            "{msg}"
        );
        assert!(help
            .unwrap_or_default()
            .contains("relative to the board file"));
    }

    #[test]
    fn emulator_kinds_and_commands() {
        let text =
            format!("{HEAD}\n[emulator]\nkind = \"sim\"\nready = 'console=(?P<console>\\S+)'\n");
        let m = load("emu-sim", &text).expect("loads");
        let e = m.emulator.as_ref().expect("emulator");
        assert_eq!(
            (e.kind, e.command.as_str()),
            (EmulatorKind::Sim, "hilsec-simdev")
        );
        assert_eq!(e.ready_timeout, Duration::from_secs(20));
        let (_, _, msg, _) = error("emu-process", &text.replace("\"sim\"", "\"process\""));
        assert!(msg.contains("needs `command`"), "{msg}");
        let (line, col, msg, help) = error("emu-kind", &text.replace("\"sim\"", "\"docker\""));
        assert_eq!((line, col), (9, 8), "{msg}");
        assert!(msg.contains("unknown emulator kind \"docker\""), "{msg}");
        assert!(help.is_some());
    }

    #[test]
    fn disclosure_urls_use_only_known_variables() {
        let text = format!(
            "{HEAD}\n[declarations.disclosure]\npolicy_url = \"https://{{unit.name}}.example/policy\"\nsupport_url = \"https://{{vendor.host}}/support\"\n"
        );
        let (line, col, msg, _) = error("disclosure-var", &text);
        assert_eq!((line, col), (10, 24), "at the placeholder: {msg}");
        assert!(
            msg.starts_with("[declarations.disclosure]: unknown variable {vendor.host}"),
            "{msg}"
        );
    }

    #[test]
    fn a_file_without_model_says_what_to_write() {
        let (line, col, msg, help) = error(
            "no-model",
            "[interfaces.c]\nkind = \"serial\"\npath = \"/dev/null\"\n",
        );
        assert_eq!((line, col, msg.as_str()), (1, 1, "no [model] table"));
        assert!(help.unwrap_or_default().contains("extends"));
    }
}
