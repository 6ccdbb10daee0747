//! Units: identity, free variables and secrets of each `[[unit]]`.
//!
//! A unit is checked against the model it belongs to (its own file's or the one it `extends`):
//! its name must be path-safe and unique across the run (it names result and evidence files),
//! every `{unit.VAR}` the model's templates use must be in its `vars`, and its password must
//! come from exactly one source. Kept apart from model building because one model serves many
//! unit files, and apart from file discovery because secrets depend on the mode (`check-board`
//! accepts an unset environment variable, `run` does not).

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
    let mut collect = |t: &Template| {
        for v in t.vars() {
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

/// Where a unit's password comes from: exactly one of `value`, `env`, `action` + `capture`.
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
