//! The password suite: EN 303 645 5.1 ("no universal default passwords"), TS 103 701 5.1-x,
//! PSTI Schedule 1 paragraph 1.
//!
//! Per unit, over every login surface the board declares (the console's `login` action today):
//! universal defaults refused after `factory_reset`, the unit's own password accepted (positive
//! control), brute-force attempts throttled. Across the units of a model: passwords distinct,
//! not derived from identifiers, no counter pattern, not common, complex enough.
//!
//! The suite uses only actions (`factory_reset`, `login`, `logout`) and declarations; it never
//! sees a device command. Analyses never put a password into a message: they say *how* a
//! password relates to an identifier, not what it is.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use hilsec_core::board::{Model, PasswordMechanism};
use hilsec_core::device::{ActionError, Device};
use hilsec_core::secret::SecretValue;
use hilsec_core::test::{Outcome, Scope, Suite, Test, TestInfo};

mod analysis;
pub use analysis::{complexity_problem, counter_pattern, derivations, is_common};

const SUITE: &str = "password";

/// The credential list shipped with the suite (see the file for its sources).
pub fn universal_credentials() -> &'static [(String, String)] {
    static LIST: OnceLock<Vec<(String, String)>> = OnceLock::new();
    LIST.get_or_init(|| {
        include_str!("../data/universal-credentials.txt")
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
            .filter_map(|l| l.split_once(':'))
            .map(|(u, p)| (u.to_string(), p.to_string()))
            .collect()
    })
}

pub fn suite() -> Suite {
    Suite {
        name: SUITE,
        description: "no universal default passwords; unique, non-derivable per-unit passwords; brute-force throttling",
        tests: vec![
            Arc::new(UniversalDefaultRejected),
            Arc::new(UnitPasswordAccepted),
            Arc::new(BruteForceThrottled),
            Arc::new(UniqueAcrossUnits),
            Arc::new(NotDerivedFromIdentity),
            Arc::new(NoCounterPattern),
            Arc::new(NotCommon),
            Arc::new(Complexity),
        ],
    }
}

fn needs_login(model: &Model) -> Option<String> {
    if model.has_action("login") {
        None
    } else {
        Some("the board declares no `login` action: the unit has no login surface the harness can reach".into())
    }
}

fn user_defined(model: &Model) -> bool {
    model.declarations.password_mechanism == Some(PasswordMechanism::UserDefined)
}

/// The login surfaces of a model: `login` (usually the console) and every action named
/// `login_<surface>` (e.g. `login_http` for a web UI's basic auth, `login_mqtt` for a broker
/// on the device), all taking `user` and `password`.
fn login_surfaces(model: &Model) -> Vec<String> {
    model
        .actions
        .keys()
        .filter(|a| *a == "login" || a.starts_with("login_"))
        .cloned()
        .collect()
}

/// Logs in; on success logs out again when the board has a `logout` action.
async fn try_login(
    dev: &mut Device,
    user: &str,
    password: SecretValue,
) -> Result<bool, ActionError> {
    try_login_on(dev, "login", user, password).await
}

/// Logs in through `action`; a console login is followed by `logout` when defined.
async fn try_login_on(
    dev: &mut Device,
    action: &str,
    user: &str,
    password: SecretValue,
) -> Result<bool, ActionError> {
    Ok(timed_login_on(dev, action, user, password).await?.0)
}

/// Elapsed time of one login attempt through `action`, and whether it was accepted.
async fn timed_login_on(
    dev: &mut Device,
    action: &str,
    user: &str,
    password: SecretValue,
) -> Result<(bool, Duration), ActionError> {
    let out = dev
        .run_action(
            action,
            &[("user", SecretValue::plain(user)), ("password", password)],
        )
        .await?;
    let accepted = out.accepted();
    if accepted && action == "login" && dev.has_action("logout") {
        dev.run_action("logout", &[]).await?;
    }
    Ok((accepted, out.elapsed))
}

/// Elapsed time of one console login attempt, and whether it was accepted.
async fn timed_login(
    dev: &mut Device,
    user: &str,
    password: SecretValue,
) -> Result<(bool, Duration), ActionError> {
    timed_login_on(dev, "login", user, password).await
}

/// A wrong password no device ships with.
fn wrong_password() -> String {
    let mut rng = fastrand::Rng::new();
    let tail: String = (0..10).map(|_| rng.alphanumeric()).collect();
    format!("hilsec-wrong-{tail}")
}

// ---------------------------------------------------------------------------------------------

struct UniversalDefaultRejected;

static UNIVERSAL_INFO: TestInfo = TestInfo {
    id: "password.universal-default-rejected",
    suite: SUITE,
    title: "after factory reset, no universal default credential authenticates",
    provisions: &["EN 303 645 5.1-1", "TS 103 701 5.1-1-1", "PSTI Sch.1 1(2)"],
    scope: Scope::Unit,
    timeout: Duration::from_secs(600),
};

#[async_trait::async_trait]
impl Test for UniversalDefaultRejected {
    fn info(&self) -> &TestInfo {
        &UNIVERSAL_INFO
    }

    fn not_applicable(&self, model: &Model) -> Option<String> {
        needs_login(model)
    }

    async fn run_unit(&self, dev: &mut Device) -> Outcome {
        match self.body(dev).await {
            Ok(o) => o,
            Err(e) => e.into(),
        }
    }
}

impl UniversalDefaultRejected {
    async fn body(&self, dev: &mut Device) -> Result<Outcome, ActionError> {
        let list = universal_credentials();
        for (_, p) in list {
            dev.mark_public(p);
        }
        if dev.has_action("factory_reset") {
            dev.note("bringing the unit to its factory state (factory_reset)");
            dev.run_action("factory_reset", &[]).await?;
        } else {
            dev.note(
                "the board declares no factory_reset action: testing the unit in its current state",
            );
        }
        let user = dev.model.declarations.login_user.clone();
        let own = dev.unit_password().await?;
        let threshold = dev.model.declarations.throttle_threshold;
        let surfaces = login_surfaces(&dev.model);
        let mut accepted = Vec::new();
        let mut controls = Vec::new();
        let mut refused_control = Vec::new();
        for surface in &surfaces {
            // Positive control first: if the recipe cannot log in at all, refusals mean nothing.
            let control = match &own {
                Some(p) => Some(try_login_on(dev, surface, &user, p.clone()).await?),
                None => None,
            };
            match control {
                Some(false) => {
                    refused_control.push(surface.clone());
                    continue;
                }
                Some(true) => controls.push(surface.clone()),
                None => {}
            }
            let mut since_reset = 0usize;
            for (u, p) in list {
                let (ok, elapsed) =
                    timed_login_on(dev, surface, u, SecretValue::plain(p.clone())).await?;
                if ok {
                    dev.note(format!(
                        "ACCEPTED universal default credential {u}/{} via {surface}",
                        shown(p)
                    ));
                    accepted.push(if surfaces.len() > 1 {
                        format!("{u}/{} ({surface})", shown(p))
                    } else {
                        format!("{u}/{}", shown(p))
                    });
                    since_reset = 0;
                    continue;
                }
                since_reset += 1;
                // Devices that throttle after a few failures are reset by a good login, as a
                // user would; this keeps a compliant device from turning this test into minutes.
                if let (Some(own), true) = (&own, since_reset >= 3 || elapsed >= threshold) {
                    dev.note(
                        "logging in with the unit's own password to reset its failure counter",
                    );
                    try_login_on(dev, surface, &user, own.clone()).await?;
                    since_reset = 0;
                }
            }
        }
        let on = if surfaces.len() > 1 {
            format!(
                " on {} login surfaces ({})",
                surfaces.len(),
                surfaces.join(", ")
            )
        } else {
            String::new()
        };
        if !accepted.is_empty() {
            return Ok(Outcome::fail(format!(
                "{} universal default credential{} of {} authenticated after factory reset{on}: {}",
                accepted.len(),
                if accepted.len() == 1 { "" } else { "s" },
                list.len(),
                accepted.join(", ")
            )));
        }
        if !refused_control.is_empty() {
            return Ok(Outcome::inconclusive(format!(
                "the unit's own declared password was refused via {}, so the refusal of default credentials there proves nothing (check the board's password and login recipe)",
                refused_control.join(", ")
            )));
        }
        Ok(if !controls.is_empty() {
            Outcome::pass(format!(
                "all {} universal default credentials were refused{on}; the unit's own password was accepted on each (positive control)",
                list.len()
            ))
        } else {
            Outcome::inconclusive(format!(
                "all {} universal default credentials were refused{on}, but no unit password is declared, so there was no positive control: declare the unit's password to make the result conclusive",
                list.len()
            ))
        })
    }
}

fn shown(p: &str) -> String {
    if p.is_empty() {
        "(empty)".into()
    } else {
        p.to_string()
    }
}

// ---------------------------------------------------------------------------------------------

struct UnitPasswordAccepted;

static UNIT_ACCEPTED_INFO: TestInfo = TestInfo {
    id: "password.unit-password-accepted",
    suite: SUITE,
    title: "the unit's own declared password works (positive control); user-defined: no access before a password is set",
    provisions: &["EN 303 645 5.1-1", "TS 103 701 5.1-1-2", "PSTI Sch.1 1(2)"],
    scope: Scope::Unit,
    timeout: Duration::from_secs(120),
};

#[async_trait::async_trait]
impl Test for UnitPasswordAccepted {
    fn info(&self) -> &TestInfo {
        &UNIT_ACCEPTED_INFO
    }

    fn not_applicable(&self, model: &Model) -> Option<String> {
        needs_login(model)
    }

    async fn run_unit(&self, dev: &mut Device) -> Outcome {
        let user = dev.model.declarations.login_user.clone();
        let r: Result<Outcome, ActionError> = async {
            if user_defined(&dev.model) {
                if !dev.has_action("factory_reset") {
                    return Ok(Outcome::inconclusive("user-defined passwords are declared, but without a factory_reset action the state before a password is set cannot be reached"));
                }
                dev.run_action("factory_reset", &[]).await?;
                let empty = try_login(dev, &user, SecretValue::plain("")).await?;
                if empty {
                    return Ok(Outcome::fail("after factory reset, with no password set yet, an empty password was accepted"));
                }
                let own = dev.unit_password().await?;
                return Ok(match own {
                    Some(p) if !try_login(dev, &user, p.clone()).await? => Outcome::inconclusive("the password the lab set was refused"),
                    _ => Outcome::pass("no access with an empty password before the user set one"),
                });
            }
            let Some(p) = dev.unit_password().await? else {
                return Ok(Outcome::inconclusive("no password is declared for this unit: add `password = { value | env | action }` to its [[unit]]"));
            };
            Ok(if try_login(dev, &user, p).await? {
                Outcome::pass(format!("the unit's own password for {user:?} was accepted"))
            } else {
                Outcome::inconclusive(format!(
                    "the unit's own declared password for {user:?} was refused: either the declaration or the login recipe is wrong, so the password tests cannot conclude"
                ))
            })
        }
        .await;
        r.unwrap_or_else(Outcome::from)
    }
}

// ---------------------------------------------------------------------------------------------

struct BruteForceThrottled;

static BRUTE_INFO: TestInfo = TestInfo {
    id: "password.brute-force-throttled",
    suite: SUITE,
    title: "repeated wrong passwords are slowed down or locked out",
    provisions: &["EN 303 645 5.1-5", "TS 103 701 5.1-5-1"],
    scope: Scope::Unit,
    timeout: Duration::from_secs(300),
};

#[async_trait::async_trait]
impl Test for BruteForceThrottled {
    fn info(&self) -> &TestInfo {
        &BRUTE_INFO
    }

    fn not_applicable(&self, model: &Model) -> Option<String> {
        needs_login(model)
    }

    async fn run_unit(&self, dev: &mut Device) -> Outcome {
        let r: Result<Outcome, ActionError> = async {
            let user = dev.model.declarations.login_user.clone();
            let attempts = dev.model.declarations.brute_force_attempts;
            let threshold = dev.model.declarations.throttle_threshold;
            let own = dev.unit_password().await?;
            // Start from a clean failure counter where the device resets it on success.
            if let Some(p) = &own {
                try_login(dev, &user, p.clone()).await?;
            }
            let mut times: Vec<Duration> = Vec::new();
            let mut slow_in_a_row = 0;
            for i in 1..=attempts {
                match timed_login(dev, &user, SecretValue::plain(wrong_password())).await {
                    Ok((true, _)) => return Ok(Outcome::fail("a random wrong password was accepted")),
                    Ok((false, t)) => {
                        dev.note(format!("wrong attempt {i}: refused after {} ms", t.as_millis()));
                        times.push(t);
                    }
                    Err(e) if e.is_device_silence() && i > 2 => {
                        dev.note(format!("wrong attempt {i}: no answer ({e})"));
                        return Ok(Outcome::pass(format!(
                            "after {} refused attempts the login surface stopped answering within the step timeout (lockout)",
                            i - 1
                        )));
                    }
                    Err(e) => return Err(e),
                }
                let baseline = median(&times[..times.len().min(2)]);
                let t = *times.last().unwrap_or(&Duration::ZERO);
                if times.len() > 2 && t >= baseline + threshold {
                    slow_in_a_row += 1;
                    if slow_in_a_row >= 2 {
                        return Ok(Outcome::pass(format!(
                            "throttled: attempt {i} took {} ms against {} ms for the first attempts (threshold +{} ms)",
                            t.as_millis(),
                            baseline.as_millis(),
                            threshold.as_millis()
                        )));
                    }
                } else {
                    slow_in_a_row = 0;
                }
            }
            // No delay: is the account locked now?
            if let Some(p) = own {
                if !try_login(dev, &user, p.clone()).await? {
                    return Ok(Outcome::pass(format!("after {attempts} wrong attempts the correct password is refused too (lockout)")));
                }
            }
            let max = times.iter().max().copied().unwrap_or_default();
            Ok(Outcome::fail(format!(
                "{attempts} wrong passwords in a row were all answered without throttling (median {} ms, slowest {} ms; threshold +{} ms) and the account was not locked",
                median(&times).as_millis(),
                max.as_millis(),
                threshold.as_millis()
            )))
        }
        .await;
        r.unwrap_or_else(Outcome::from)
    }
}

fn median(ts: &[Duration]) -> Duration {
    if ts.is_empty() {
        return Duration::ZERO;
    }
    let mut v = ts.to_vec();
    v.sort();
    v[v.len() / 2]
}

// ---------------------------------------------------------------------------------------------
// Per-model tests: they judge the set of per-unit passwords.

/// The passwords of all units, or the outcome to report when they cannot be had.
async fn passwords(devs: &mut [Device]) -> Result<Vec<(String, String)>, Outcome> {
    let mut out = Vec::new();
    let mut missing = Vec::new();
    for d in devs.iter_mut() {
        match d.unit_password().await {
            Ok(Some(p)) => out.push((d.unit.name.clone(), p.expose().to_string())),
            Ok(None) => missing.push(d.unit.name.clone()),
            Err(e) => return Err(e.into()),
        }
    }
    if !missing.is_empty() {
        return Err(Outcome::inconclusive(format!(
            "no password is declared for {}: add `password = {{ value | env | action }}` to each [[unit]]",
            missing.join(", ")
        )));
    }
    Ok(out)
}

fn note_all(devs: &[Device], text: &str) {
    for d in devs {
        d.note(text);
    }
}

fn model_not_applicable(model: &Model) -> Option<String> {
    if user_defined(model) {
        Some("the model declares user-defined passwords: there are no factory per-unit passwords to compare".into())
    } else {
        None
    }
}

macro_rules! model_test {
    ($ty:ident, $info:ident, $id:literal, $title:literal, [$($prov:literal),*]) => {
        struct $ty;
        static $info: TestInfo = TestInfo {
            id: $id,
            suite: SUITE,
            title: $title,
            provisions: &[$($prov),*],
            scope: Scope::Model,
            timeout: Duration::from_secs(120),
        };
    };
}

model_test!(
    UniqueAcrossUnits,
    UNIQUE_INFO,
    "password.unique-across-units",
    "every unit of the model has a different password",
    ["EN 303 645 5.1-1", "TS 103 701 5.1-1-2", "PSTI Sch.1 1(2)"]
);

#[async_trait::async_trait]
impl Test for UniqueAcrossUnits {
    fn info(&self) -> &TestInfo {
        &UNIQUE_INFO
    }
    fn not_applicable(&self, model: &Model) -> Option<String> {
        model_not_applicable(model)
    }
    async fn run_model(&self, devs: &mut [Device]) -> Outcome {
        let pw = match passwords(devs).await {
            Ok(p) => p,
            Err(o) => return o,
        };
        if pw.len() < 2 {
            return Outcome::inconclusive(
                "only one unit of the model is declared: uniqueness needs at least two",
            );
        }
        let mut groups: Vec<Vec<&str>> = Vec::new();
        for (i, (name, p)) in pw.iter().enumerate() {
            if pw[..i].iter().any(|(_, q)| q == p) {
                continue;
            }
            let same: Vec<&str> = pw[i..]
                .iter()
                .filter(|(_, q)| q == p)
                .map(|(n, _)| n.as_str())
                .collect();
            if same.len() > 1 {
                groups.push(same);
            }
            let _ = name;
        }
        if groups.is_empty() {
            let msg = format!("all {} units have different passwords", pw.len());
            note_all(devs, &msg);
            Outcome::pass(msg)
        } else {
            let msg = format!(
                "units share a password: {}",
                groups
                    .iter()
                    .map(|g| g.join(" = "))
                    .collect::<Vec<_>>()
                    .join("; ")
            );
            note_all(devs, &msg);
            Outcome::fail(msg)
        }
    }
}

model_test!(NotDerivedFromIdentity, DERIVED_INFO, "password.not-derived-from-identity",
    "no password is derived from the unit's serial number, MAC address, model or other public identifiers",
    ["EN 303 645 5.1-2", "TS 103 701 5.1-2-1", "PSTI Sch.1 1(3)(b)", "PSTI Sch.1 1(3)(c)"]);

#[async_trait::async_trait]
impl Test for NotDerivedFromIdentity {
    fn info(&self) -> &TestInfo {
        &DERIVED_INFO
    }
    fn not_applicable(&self, model: &Model) -> Option<String> {
        model_not_applicable(model)
    }
    async fn run_model(&self, devs: &mut [Device]) -> Outcome {
        let pw = match passwords(devs).await {
            Ok(p) => p,
            Err(o) => return o,
        };
        let mut findings = Vec::new();
        for (d, (name, p)) in devs.iter().zip(&pw) {
            let ids = analysis::Identity {
                serial: d.unit.serial.clone(),
                mac: d.unit.mac.clone(),
                model: Some(d.model.name.clone()),
                manufacturer: d.model.manufacturer.clone(),
                others: d.model.declarations.public_identifiers.clone(),
            };
            let found = derivations(p, &ids);
            if found.is_empty() {
                d.note("no relation found between the password and the serial, MAC, model or declared public identifiers");
            } else {
                for f in &found {
                    d.note(format!("the password {f}"));
                }
                findings.push(format!("{name}: the password {}", found.join("; ")));
            }
        }
        if findings.is_empty() {
            Outcome::pass(format!(
                "none of the {} passwords contains or is contained in the serial, MAC (any form), model or manufacturer, nor in an unkeyed hash (MD5, SHA-1, SHA-256) of them",
                pw.len()
            ))
        } else {
            Outcome::fail(findings.join(" | "))
        }
    }
}

model_test!(
    NoCounterPattern,
    COUNTER_INFO,
    "password.no-counter-pattern",
    "passwords of consecutive units do not follow a counter",
    [
        "EN 303 645 5.1-2",
        "TS 103 701 5.1-2-1",
        "PSTI Sch.1 1(3)(a)"
    ]
);

#[async_trait::async_trait]
impl Test for NoCounterPattern {
    fn info(&self) -> &TestInfo {
        &COUNTER_INFO
    }
    fn not_applicable(&self, model: &Model) -> Option<String> {
        model_not_applicable(model)
    }
    async fn run_model(&self, devs: &mut [Device]) -> Outcome {
        let pw = match passwords(devs).await {
            Ok(p) => p,
            Err(o) => return o,
        };
        if pw.len() < 2 {
            return Outcome::inconclusive(
                "only one unit of the model is declared: a pattern needs at least two",
            );
        }
        // Order units by serial where declared, as a counter would follow production order.
        let mut ordered: Vec<(String, &str, &str)> = devs
            .iter()
            .zip(&pw)
            .map(|(d, (n, p))| {
                (
                    d.unit.serial.clone().unwrap_or_else(|| n.clone()),
                    n.as_str(),
                    p.as_str(),
                )
            })
            .collect();
        ordered.sort();
        let list: Vec<&str> = ordered.iter().map(|(_, _, p)| *p).collect();
        match counter_pattern(&list) {
            Some(why) => {
                note_all(devs, &format!("pattern found: {why}"));
                Outcome::fail(format!("the passwords of {} units {why}", pw.len()))
            }
            None => {
                let msg = format!(
                    "no counter-like or near-identical pattern across {} passwords",
                    pw.len()
                );
                note_all(devs, &msg);
                Outcome::pass(msg)
            }
        }
    }
}

model_test!(
    NotCommon,
    COMMON_INFO,
    "password.not-common",
    "no password is in a list of common or default passwords",
    [
        "EN 303 645 5.1-2",
        "TS 103 701 5.1-2-2",
        "PSTI Sch.1 1(3)(d)"
    ]
);

#[async_trait::async_trait]
impl Test for NotCommon {
    fn info(&self) -> &TestInfo {
        &COMMON_INFO
    }
    fn not_applicable(&self, model: &Model) -> Option<String> {
        model_not_applicable(model)
    }
    async fn run_model(&self, devs: &mut [Device]) -> Outcome {
        let pw = match passwords(devs).await {
            Ok(p) => p,
            Err(o) => return o,
        };
        let mut bad = Vec::new();
        for (d, (name, p)) in devs.iter_mut().zip(&pw) {
            if let Some(why) = is_common(p) {
                // A common password is public knowledge; evidence may show it.
                d.mark_public(p);
                d.note(format!("the password {why}"));
                bad.push(format!("{name} ({why})"));
            }
        }
        if bad.is_empty() {
            Outcome::pass(format!(
                "none of the {} passwords is in the common-password or default-credential lists",
                pw.len()
            ))
        } else {
            Outcome::fail(format!("common passwords: {}", bad.join(", ")))
        }
    }
}

model_test!(
    Complexity,
    COMPLEXITY_INFO,
    "password.complexity",
    "passwords are long and varied enough to resist guessing",
    [
        "EN 303 645 5.1-2",
        "TS 103 701 5.1-2-2",
        "PSTI Sch.1 1(3)(d)"
    ]
);

#[async_trait::async_trait]
impl Test for Complexity {
    fn info(&self) -> &TestInfo {
        &COMPLEXITY_INFO
    }
    fn not_applicable(&self, model: &Model) -> Option<String> {
        model_not_applicable(model)
    }
    async fn run_model(&self, devs: &mut [Device]) -> Outcome {
        let pw = match passwords(devs).await {
            Ok(p) => p,
            Err(o) => return o,
        };
        let min = devs
            .first()
            .map(|d| d.model.declarations.min_password_length)
            .unwrap_or(8);
        let mut bad = Vec::new();
        for (d, (name, p)) in devs.iter().zip(&pw) {
            match complexity_problem(p, min) {
                Some(why) => {
                    d.note(format!("the password {why}"));
                    bad.push(format!("{name}: {why}"));
                }
                None => d.note(format!("the password meets the rule (at least {min} characters and 3 character classes, or 16 characters)")),
            }
        }
        if bad.is_empty() {
            Outcome::pass(format!("all {} passwords have at least {min} characters and 3 character classes (or 16 characters)", pw.len()))
        } else {
            Outcome::fail(bad.join("; "))
        }
    }
}
