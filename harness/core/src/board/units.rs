//! Units: identity, free variables and secrets of each `[[unit]]`.
//!
//! A unit is checked against the model it belongs to (its own file's or the one it `extends`):
//! its name must be path-safe and unique across the run (it names result and evidence files),
//! every `{unit.VAR}` the model's templates use must be in its `vars`, and its password must
//! come from exactly one source. Kept apart from model building because one model serves many
//! unit files, and apart from file discovery because secrets depend on the mode (`check-board`
//! and `list` accept an unset environment variable, `run` does not).

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use serde_spanned::Spanned;

use super::diag::{plain_error, BoardError, Diag};
use super::model::{SecretSource, UnitSection};
use super::vars::unit_wide_names;
use super::{Board, Model, SecretSpec, Unit};
use crate::template::Template;

/// Unit names are result and evidence paths: they must be unique across all boards of a run.
pub(crate) fn check_unique_names(boards: &[Board], errors: &mut Vec<BoardError>) {
    let mut seen: HashMap<String, PathBuf> = HashMap::new();
    for b in boards {
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
}

/// One `[[unit]]` of a file, for `model`; `env_optional`: an unset `env` secret is no error.
pub(crate) fn build_unit(
    path: &Path,
    u: &Spanned<UnitSection>,
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
    let mut address_used = false;
    let mut collect = |t: &Template| {
        for v in t.vars() {
            address_used |= v == "unit.address";
            // `{unit.name}` and the like are every unit's; the rest come from `vars`.
            if unit_wide_names().any(|n| n == v) {
                continue;
            }
            if let Some(rest) = v.strip_prefix("unit.") {
                used.insert(rest.to_string());
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
    if let Some(b) = &model.declarations.broker {
        b.templates().into_iter().for_each(&mut collect);
    }
    let mut uses_address = false;
    if let Some(n) = &model.declarations.network {
        collect(&n.address);
        uses_address |= n.address.vars().any(|v| v == "unit.address");
    }
    for a in model.actions.values() {
        for top in a.steps.iter().chain(a.cleanup.iter()) {
            for s in top.walk() {
                s.templates().into_iter().for_each(&mut collect);
            }
        }
    }
    for fixed in ["name", "serial", "mac", "firmware", "address"] {
        if u.vars.contains_key(fixed) {
            d.at(
                Some(span.clone()),
                format!("unit {name:?}: `vars` may not define {fixed:?}: it would hide the unit's own {{unit.{fixed}}}"),
                Some(if fixed == "address" {
                    "write it as the unit's `address` key instead"
                } else {
                    "use the unit's own key, or another variable name"
                }),
            );
        }
    }
    if let Some(a) = &u.address {
        let v = a.get_ref();
        let host_like = match v.parse::<std::net::IpAddr>() {
            Ok(ip) => {
                !ip.is_unspecified()
                    && !ip.is_multicast()
                    && ip != std::net::IpAddr::V4(std::net::Ipv4Addr::BROADCAST)
            }
            // A host name: labels of letters, digits and '-', not a range of numbers.
            Err(_) => {
                !v.is_empty()
                    && v.len() <= 253
                    && v.split('.').all(|l| {
                        !l.is_empty()
                            && !l.starts_with('-')
                            && !l.ends_with('-')
                            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                    })
                    && !v
                        .chars()
                        .all(|c| c.is_ascii_digit() || c == '.' || c == '-')
            }
        };
        if !host_like {
            d.at(
                Some(a.span()),
                format!("unit {name:?}: address {v:?} is not one unit's IP address or host name"),
                Some("give the unit's own address on the lab's device network, e.g. address = \"192.168.50.23\" (no port, no range)"),
            );
        }
    } else if (address_used || uses_address) && model.emulator.is_none() {
        d.at(
            Some(span.clone()),
            format!("unit {name:?} has no `address`, which the model's templates use as {{unit.address}}"),
            Some("add the unit's address on the lab's device network, e.g. address = \"192.168.50.23\""),
        );
    }
    let lease = u.lease.as_ref().and_then(|l| {
        let v = l.get_ref();
        let ok = !v.trim().is_empty()
            && v.len() <= crate::lease::MAX_KEY_LEN
            && !v.chars().any(char::is_control);
        if !ok {
            d.at(
                Some(l.span()),
                format!(
                    "unit {name:?}: lease {v:?} is not a lease key (1 to {} characters, no control characters)",
                    crate::lease::MAX_KEY_LEN
                ),
                Some("name the bench position the unit sits in, e.g. lease = \"bench-3/cam-a\""),
            );
            return None;
        }
        Some(v.clone())
    });
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
        address: u.address.as_ref().map(|a| a.get_ref().clone()),
        firmware: u.firmware.clone().or_else(|| model.firmware.clone()),
        password,
        vars: u.vars.clone(),
        source: path.to_path_buf(),
        lease,
    })
}

/// Where a unit's password comes from: exactly one of `value`, `env`, `action` + `capture`.
fn resolve_secret(
    d: &mut Diag,
    p: &Spanned<SecretSource>,
    model: &Model,
    env_optional: bool,
) -> Option<SecretSpec> {
    let s = p.get_ref();
    let n = [
        s.value.is_some(),
        s.env.is_some(),
        s.action.is_some(),
        s.memory.is_some(),
    ]
    .iter()
    .filter(|b| **b)
    .count();
    if n != 1 {
        d.at(
            Some(p.span()),
            "a secret needs exactly one of `value`, `env`, `action` (with `capture`) or `memory` (with `length` and `on`)",
            Some("e.g. password = { env = \"PLUG1_PASSWORD\" }"),
        );
        return None;
    }
    // Keys of another source are mistakes (a `capture` next to `memory` reads nothing).
    let stray = [
        ("capture", s.capture.is_some() && s.action.is_none()),
        ("length", s.length.is_some() && s.memory.is_none()),
        ("on", s.on.is_some() && s.memory.is_none()),
    ];
    if let Some((key, _)) = stray.iter().find(|(_, bad)| *bad) {
        d.at(
            Some(p.span()),
            format!("`{key}` does not go with this secret's source"),
            Some("`capture` goes with `action`; `length` and `on` go with `memory`"),
        );
        return None;
    }
    if let Some(m) = &s.memory {
        return memory_secret(d, p, m, model);
    }
    if let Some(v) = &s.value {
        return Some(SecretSpec::Known(v.clone()));
    }
    if let Some(var) = &s.env {
        return match std::env::var(var.get_ref()) {
            Ok(v) => Some(SecretSpec::Known(v)),
            // Never used: check mode does not run anything.
            Err(_) if env_optional => Some(SecretSpec::Known(String::new())),
            Err(_) => {
                d.at(
                    Some(var.span()),
                    format!("environment variable {} is not set", var.get_ref()),
                    Some("export it before running hilsec (its value is never logged)"),
                );
                None
            }
        };
    }
    let Some(action) = &s.action else {
        return None;
    };
    let Some(capture) = s.capture.clone() else {
        d.at(
            Some(p.span()),
            "a secret read by an action needs `capture`: the name of the capture that holds it",
            None,
        );
        return None;
    };
    if !model.has_action(action.get_ref()) {
        let have: Vec<&str> = model.actions.keys().map(String::as_str).collect();
        d.at(
            Some(action.span()),
            format!(
                "action {:?} is not defined in the model (defined: {})",
                action.get_ref(),
                have.join(", ")
            ),
            None,
        );
        return None;
    }
    Some(SecretSpec::FromAction {
        action: action.get_ref().clone(),
        capture,
    })
}

/// A secret read through a debug port: `memory` (address), `length` and `on` (a debug
/// interface of the model).
fn memory_secret(
    d: &mut Diag,
    p: &Spanned<SecretSource>,
    m: &Spanned<String>,
    model: &Model,
) -> Option<SecretSpec> {
    let s = p.get_ref();
    let address = match super::build::parse_address(m.get_ref()) {
        Some(a) => a,
        None => {
            d.at(
                Some(m.span()),
                format!("{:?} is not an address", m.get_ref()),
                Some("write it in hex (\"0x1fff7800\") or decimal"),
            );
            return None;
        }
    };
    let Some(length) = s.length.as_ref() else {
        d.at(
            Some(p.span()),
            "a secret read from memory needs `length`: the most bytes it can take",
            Some("e.g. password = { memory = \"0x1fff7800\", length = 32, on = \"swd\" }"),
        );
        return None;
    };
    let length = *length.get_ref();
    if length == 0 || length > 4096 {
        d.at(
            s.length.as_ref().map(|l| l.span()),
            format!("length {length} is out of range"),
            Some("a secret is 1 to 4096 bytes"),
        );
        return None;
    }
    let debug_ports: Vec<&str> = model
        .interfaces
        .iter()
        .filter(|(_, i)| i.is_debug_port())
        .map(|(n, _)| n.as_str())
        .collect();
    let on = match (&s.on, debug_ports.as_slice()) {
        (Some(on), _) if debug_ports.contains(&on.get_ref().as_str()) => on.get_ref().clone(),
        (Some(on), _) => {
            d.at(
                Some(on.span()),
                format!(
                    "{:?} is not a debug interface of the model (debug interfaces: {})",
                    on.get_ref(),
                    if debug_ports.is_empty() {
                        "none".to_string()
                    } else {
                        debug_ports.join(", ")
                    }
                ),
                Some("declare one with kind = \"probe-rs\" or \"gdb\""),
            );
            return None;
        }
        (None, [only]) => only.to_string(),
        (None, _) => {
            d.at(
                Some(p.span()),
                "a secret read from memory needs `on`: the debug interface to read it through",
                Some("add e.g. on = \"swd\""),
            );
            return None;
        }
    };
    Some(SecretSpec::FromMemory {
        on,
        address,
        length,
    })
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{load_paths, Scratch, HEAD};
    use super::super::{LoadMode, SecretSpec};

    /// `HEAD` with a `login` action using `{unit.adapter}`, then `units` (from line 10).
    fn board(units: &str) -> String {
        format!("{HEAD}\n[actions.login]\nsteps = [ {{ send = \"{{unit.adapter}}\" }} ]\n{units}")
    }

    #[test]
    fn units_take_identity_vars_and_the_models_firmware() {
        let s = Scratch::new("unit-ok");
        let text = board(
            "\n[[unit]]\nname = \"u-1\"\nserial = \"S1\"\npassword = { value = \"pw\" }\nvars = { adapter = \"A1\" }\n",
        )
        .replace("name = \"T\"\n", "name = \"T\"\nfirmware = \"1.0.0\"\n");
        let b = load_paths(&[s.file("b.toml", &text)], LoadMode::Run).expect("loads");
        let u = &b[0].units[0];
        assert_eq!((u.name.as_str(), u.serial.as_deref()), ("u-1", Some("S1")));
        assert_eq!(u.firmware.as_deref(), Some("1.0.0"));
        assert_eq!(u.password, Some(SecretSpec::Known("pw".into())));
        assert_eq!(u.vars["adapter"], "A1");
    }

    #[test]
    fn a_unit_must_define_the_vars_the_model_uses() {
        let s = Scratch::new("unit-var");
        let text = board("\n[[unit]]\nname = \"u-1\"\n");
        let errs = load_paths(&[s.file("b.toml", &text)], LoadMode::Check).expect_err("refused");
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(
            (errs[0].line, errs[0].col),
            (11, 1),
            "the [[unit]]: {errs:?}"
        );
        assert!(
            errs[0].message.contains("has no variable \"adapter\""),
            "{errs:?}"
        );
    }

    #[test]
    fn unit_names_are_path_safe_and_unique_across_files() {
        let s = Scratch::new("unit-names");
        let bad = board("\n[[unit]]\nname = \"../x\"\nvars = { adapter = \"A\" }\n");
        let errs = load_paths(&[s.file("bad.toml", &bad)], LoadMode::Check).expect_err("refused");
        assert_eq!((errs[0].line, errs[0].col), (12, 8), "{errs:?}");
        assert!(
            errs[0].message.contains("must be non-empty and use only"),
            "{errs:?}"
        );

        let one = board("\n[[unit]]\nname = \"u-1\"\nvars = { adapter = \"A\" }\n");
        let a = s.file("a.toml", &one);
        let b = s.file("b.toml", &one);
        let errs = load_paths(&[a, b.clone()], LoadMode::Run).expect_err("refused");
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!((&errs[0].path, errs[0].line), (&b, 0));
        assert!(
            errs[0]
                .message
                .starts_with("unit name \"u-1\" is also used in "),
            "{errs:?}"
        );
        assert!(errs[0].message.ends_with("a.toml"), "{errs:?}");
    }

    #[test]
    fn a_secret_has_exactly_one_source() {
        let s = Scratch::new("secrets");
        let unit = |pw: &str| {
            board(&format!(
                "\n[[unit]]\nname = \"u\"\nvars = {{ adapter = \"A\" }}\npassword = {pw}\n"
            ))
        };
        let first = |pw: &str, mode| {
            let f = s.file("s.toml", &unit(pw));
            load_paths(&[f], mode).expect_err("refused").remove(0)
        };
        let e = first("{ value = \"a\", env = \"B\" }", LoadMode::Check);
        assert_eq!((e.line, e.col), (14, 12), "{e}");
        assert!(
            e.message
                .contains("exactly one of `value`, `env`, `action`"),
            "{e}"
        );
        let e = first("{ action = \"read_label\" }", LoadMode::Check);
        assert!(e.message.contains("needs `capture`"), "{e}");
        let e = first(
            "{ action = \"read_label\", capture = \"pw\" }",
            LoadMode::Check,
        );
        assert_eq!(
            e.message,
            "action \"read_label\" is not defined in the model (defined: login)"
        );
        assert_eq!((e.line, e.col), (14, 23), "at the action's name: {e}");
        let ok = unit("{ action = \"login\", capture = \"pw\" }");
        let b = load_paths(&[s.file("s.toml", &ok)], LoadMode::Run).expect("loads");
        assert_eq!(
            b[0].units[0].password,
            Some(SecretSpec::FromAction {
                action: "login".into(),
                capture: "pw".into()
            })
        );
    }

    #[test]
    fn leases_are_keyed_by_the_units_lease_or_model_and_name() {
        let s = Scratch::new("unit-lease");
        let text = board(
            "\n[[unit]]\nname = \"u-1\"\nvars = { adapter = \"A\" }\nlease = \"bench-3/cam-a\"\n\n[[unit]]\nname = \"u-2\"\nvars = { adapter = \"B\" }\n",
        );
        let b = load_paths(&[s.file("b.toml", &text)], LoadMode::Run).expect("loads");
        let (m, u) = (&b[0].model, &b[0].units);
        assert_eq!(u[0].lease.as_deref(), Some("bench-3/cam-a"));
        // Physical units always take a lease: their own key, else model/name.
        assert_eq!(
            crate::lease::unit_key(&u[0], m).as_deref(),
            Some("bench-3/cam-a")
        );
        assert_eq!(crate::lease::unit_key(&u[1], m).as_deref(), Some("T/u-2"));

        let bad = board("\n[[unit]]\nname = \"u-1\"\nvars = { adapter = \"A\" }\nlease = \"  \"\n");
        let errs = load_paths(&[s.file("bad.toml", &bad)], LoadMode::Check).expect_err("refused");
        assert_eq!((errs[0].line, errs[0].col), (14, 9), "{errs:?}");
        assert!(errs[0].message.contains("is not a lease key"), "{errs:?}");
    }

    #[test]
    fn an_unset_env_secret_stops_a_run_but_not_a_check() {
        let s = Scratch::new("env-secret");
        let var = "HILSEC_TEST_UNSET_SECRET_7f3a";
        let text = board(&format!(
            "\n[[unit]]\nname = \"u\"\nvars = {{ adapter = \"A\" }}\npassword = {{ env = \"{var}\" }}\n"
        ));
        let f = s.file("e.toml", &text);
        assert!(load_paths(std::slice::from_ref(&f), LoadMode::Check).is_ok());
        let errs = load_paths(&[f], LoadMode::Run).expect_err("refused");
        assert_eq!(
            errs[0].message,
            format!("environment variable {var} is not set")
        );
        assert!(errs[0]
            .help
            .as_deref()
            .unwrap_or_default()
            .contains("never logged"));
    }
}
