//! The password suite: EN 303 645 5.1 ("no universal default passwords"), TS 103 701 5.1-x,
//! PSTI Schedule 1 paragraph 1.
//!
//! Per unit, over every login surface the board declares (`login` and every `login_<surface>`:
//! a console, telnet, SSH, a web login): universal defaults refused (after `factory_reset`
//! where the board has one), the unit's own password accepted (positive control), brute force
//! impracticable (the achievable guess rate, see [`throttle`]); no undeclared login service on
//! the unit's address, and its own MQTT broker closed to anonymous clients and default
//! credentials (see [`surfaces`]). Across the units of a model: passwords distinct, not derived from
//! identifiers, no counter pattern, not common, hard enough to guess (zxcvbn estimate).
//!
//! User-defined mechanisms (`password_mechanism = "user-defined"`): the unit has no password
//! until its user sets one. The per-unit tests first set one through the board's
//! `set_password(password)` action (the unit's declared password, or a generated one), then judge
//! the unit as a user would leave it.
//!
//! The suite uses only actions (`factory_reset`, `login`, `login_*`, `logout`, `set_password`)
//! and declarations; it never sees a device command. Analyses never put a password into a
//! message: they say *how* a password relates to an identifier, not what it is.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use hilsec_core::board::{Model, PasswordMechanism};
use hilsec_core::device::{ActionError, Device};
use hilsec_core::secret::SecretValue;
use hilsec_core::test::{Outcome, Scope, Suite, Test, TestInfo, Verdict};

mod analysis;
mod surfaces;
mod throttle;
pub use analysis::{
    complexity_judgement, counter_pattern, derivations, is_common, strength_log10,
    ComplexityJudgement, Strength, StrengthRule,
};
pub use throttle::{judge as judge_guess_rate, Judgement, LockoutSeen, Measurements};

const SUITE: &str = "password";

/// Memo key: the password this run set on a user-defined unit (so later tests reuse it).
const SET_MEMO: &str = "password.user-defined-set";

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
        description: "no universal default passwords; unique, non-derivable per-unit passwords; brute force impracticable",
        tests: vec![
            Arc::new(UniversalDefaultRejected),
            Arc::new(UnitPasswordAccepted),
            Arc::new(throttle::BruteForceThrottled),
            Arc::new(surfaces::NoUndeclaredSurfaces),
            Arc::new(surfaces::BrokerRequiresAuth),
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

/// A login test's actions: `set_password` only for user-defined mechanisms.
pub(crate) fn login_actions(test: &dyn Test, model: &Model) -> Vec<String> {
    hilsec_core::test::expand_actions(test.info().actions, model)
        .into_iter()
        .filter(|a| a != "set_password" || user_defined(model))
        .collect()
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

/// One login attempt as the suite sees it.
struct Attempt {
    accepted: bool,
    elapsed: Duration,
    /// `Some(prompt)` when the recipe's `accept` alternative matched: the device granted access
    /// before any password was asked (e.g. a shell right after the user name).
    no_password: Option<String>,
}

/// One login attempt through `action`; a console login that got in is followed by `logout`
/// when defined. A recipe's `accept` alternative counts as accepted: the device authenticated.
async fn attempt_on(
    dev: &mut Device,
    action: &str,
    user: &str,
    password: SecretValue,
) -> Result<Attempt, ActionError> {
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
    Ok(Attempt {
        accepted,
        elapsed: out.elapsed,
        no_password: out.shortcut.clone(),
    })
}

/// Elapsed time of one login attempt through `action`, and whether it was accepted.
async fn timed_login_on(
    dev: &mut Device,
    action: &str,
    user: &str,
    password: SecretValue,
) -> Result<(bool, Duration), ActionError> {
    let a = attempt_on(dev, action, user, password).await?;
    Ok((a.accepted, a.elapsed))
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

/// A strong password for a user-defined unit whose board declares none.
fn generated_password() -> String {
    let mut rng = fastrand::Rng::new();
    let body: String = (0..16).map(|_| rng.alphanumeric()).collect();
    format!("Hs-{body}")
}

/// The password protecting a unit, as the per-unit tests need it.
enum OwnPassword {
    /// `set_now`: the test has just set it (user-defined mechanism, first login).
    Known {
        password: SecretValue,
        set_now: bool,
    },
    /// No password to test with; the outcome says why.
    Missing(Outcome),
}

/// Runs `factory_reset`; `Ok(true)` when the unit accepted it (a reset ran).
async fn factory_reset(dev: &mut Device) -> Result<bool, ActionError> {
    dev.memo().remove(SET_MEMO);
    let out = dev.run_action("factory_reset", &[]).await?;
    match &out.rejected {
        None => Ok(true),
        Some(why) => {
            dev.note(format!(
                "factory_reset was refused ({why}): the unit was not reset"
            ));
            Ok(false)
        }
    }
}

/// The unit's own password. For a user-defined mechanism: the password this run set, or one set
/// now through `set_password` (resetting the unit first when it already has another).
async fn own_password(dev: &mut Device) -> Result<OwnPassword, ActionError> {
    let declared = dev.unit_password().await?;
    if !user_defined(&dev.model) {
        return Ok(match declared {
            Some(password) => OwnPassword::Known {
                password,
                set_now: false,
            },
            None => OwnPassword::Missing(Outcome::inconclusive(
                "no password is declared for this unit: add `password = { value | env | action }` to its [[unit]] (it is the positive control and resets the failure counter)",
            )),
        });
    }
    if let Some(p) = dev.memo().get(SET_MEMO).cloned() {
        return Ok(OwnPassword::Known {
            password: SecretValue::secret(p),
            set_now: false,
        });
    }
    if !dev.has_action("set_password") {
        return Ok(match declared {
            Some(password) => OwnPassword::Known {
                password,
                set_now: false,
            },
            None => OwnPassword::Missing(Outcome::not_applicable(
                "the model declares user-defined passwords, but the board has no `set_password(password)` action and no password the lab set: until a user sets one there is no password to protect or to check against",
            )),
        });
    }
    let password = match &declared {
        Some(p) => p.clone(),
        None => {
            let g = generated_password();
            dev.add_secret(&g);
            SecretValue::secret(g)
        }
    };
    for round in 0..2 {
        let out = dev
            .run_action("set_password", &[("password", password.clone())])
            .await?;
        if out.accepted() {
            dev.note("user-defined mechanism: the test set the unit's password at first login (set_password)");
            dev.memo()
                .insert(SET_MEMO.into(), password.expose().to_string());
            return Ok(OwnPassword::Known {
                password,
                set_now: true,
            });
        }
        // A password is set already: the lab's own (declared) one, or another.
        if declared.is_some()
            && try_login(
                dev,
                &dev.model.declarations.login_user.clone(),
                password.clone(),
            )
            .await?
        {
            dev.note("user-defined mechanism: the unit already has the password the lab declared");
            dev.memo()
                .insert(SET_MEMO.into(), password.expose().to_string());
            return Ok(OwnPassword::Known {
                password,
                set_now: false,
            });
        }
        if round == 0 && dev.has_action("factory_reset") && factory_reset(dev).await? {
            continue;
        }
        break;
    }
    Ok(OwnPassword::Missing(Outcome::inconclusive(
        "the model declares user-defined passwords, but set_password was refused (a password is set already) and the unit could not be brought back to its first-boot state",
    )))
}

// ---------------------------------------------------------------------------------------------

struct UniversalDefaultRejected;

static UNIVERSAL_INFO: TestInfo = TestInfo {
    id: "password.universal-default-rejected",
    suite: SUITE,
    title: "no universal default credential authenticates on any login surface (after factory reset where the board has one)",
    provisions: &["EN 303 645 5.1-1", "TS 103 701 5.1-1-1", "PSTI Sch.1 1(2)"],
    scope: Scope::Unit,
    timeout: Duration::from_secs(600),
    actions: &["factory_reset", "set_password", "login", "login_*", "logout"],
};

/// Part of a test's time limit the default-credential sweep may use before it stops and says
/// what it did not try.
const SWEEP_BUDGET: f64 = 0.85;

/// How the sweep keeps a throttling unit's failure counter low: log in with the unit's own
/// password every `period` failures. The period is `lockout_after - 1` when declared; otherwise
/// it is learned the first time a refusal is slower than the earlier ones by the throttling
/// threshold (the number of failures that were still fast). Never after every attempt.
#[derive(Debug, Clone, Default)]
struct ResetPlan {
    period: Option<usize>,
    learned: bool,
    since_reset: usize,
    /// Refusal times seen shortly after a reset: the unthrottled baseline.
    fast: Vec<Duration>,
    resets: usize,
    /// Set when a refusal right after a reset was slow once: a host hiccup (a slow connection
    /// set-up under load) looks the same, so the sweep resets once more to tell them apart.
    suspect: bool,
    /// Set when refusals right after two resets in a row were slow: logging in does not reset
    /// this unit's delay, so the sweep stops trying.
    ineffective: bool,
}

impl ResetPlan {
    fn new(lockout_after: Option<usize>) -> Self {
        ResetPlan {
            period: lockout_after.map(|n| n.saturating_sub(1).max(1)),
            ..Default::default()
        }
    }

    /// Records a refusal; `true` when the own password should be used now.
    fn refused(&mut self, elapsed: Duration, threshold: Duration) -> bool {
        self.since_reset += 1;
        let baseline = throttle::median(&self.fast);
        let slow = !self.fast.is_empty() && elapsed >= baseline + threshold;
        if self.ineffective {
            return false;
        }
        if self.since_reset == 1 && self.resets > 0 {
            if slow && self.suspect {
                self.ineffective = true;
                return false;
            }
            if slow {
                // One slow refusal after a reset proves nothing on a loaded host: reset again
                // and judge by the next one.
                self.suspect = true;
                return true;
            }
            self.suspect = false;
        }
        if slow && !self.learned && self.period.is_none() {
            self.period = Some(self.since_reset.saturating_sub(1).max(1));
            self.learned = true;
        } else if !slow && self.fast.len() < 5 {
            self.fast.push(elapsed);
        }
        slow || self.period.is_some_and(|p| self.since_reset >= p)
    }

    fn reset_done(&mut self) {
        self.since_reset = 0;
        self.resets += 1;
    }
}

#[async_trait::async_trait]
impl Test for UniversalDefaultRejected {
    fn info(&self) -> &TestInfo {
        &UNIVERSAL_INFO
    }
    fn actions(&self, model: &Model) -> Vec<String> {
        login_actions(self, model)
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
        let started = Instant::now();
        let budget = UNIVERSAL_INFO.timeout.mul_f64(SWEEP_BUDGET);
        let list = universal_credentials();
        for (_, p) in list {
            dev.mark_public(p);
        }
        let decl = dev.model.declarations.clone();
        let user = decl.login_user.clone();
        // The state the unit is tested in, said in the message exactly as it was reached.
        let state: String;
        let own: Option<SecretValue>;
        if user_defined(&dev.model) {
            match own_password(dev).await? {
                OwnPassword::Known { password, set_now } => {
                    state = if set_now {
                        "with the password the test set at first login (user-defined mechanism)"
                            .into()
                    } else {
                        "with the password the lab set (user-defined mechanism)".into()
                    };
                    own = Some(password);
                }
                OwnPassword::Missing(o) => return Ok(o),
            }
        } else {
            state = if dev.has_action("factory_reset") {
                dev.note("bringing the unit to its factory state (factory_reset)");
                if factory_reset(dev).await? {
                    "after factory reset".into()
                } else {
                    "in its current state (factory_reset was refused)".into()
                }
            } else {
                dev.note("the board declares no factory_reset action: testing the unit in its current state");
                "in its current state (no factory_reset action)".into()
            };
            own = dev.unit_password().await?;
        }
        let surfaces = login_surfaces(&dev.model);
        let mut accepted = Vec::new();
        let mut unanswered: Vec<String> = Vec::new();
        let mut controls = Vec::new();
        let mut refused_control = Vec::new();
        let mut plan = ResetPlan::new(decl.lockout_after);
        let mut not_done: Option<String> = None;
        'surfaces: for (si, surface) in surfaces.iter().enumerate() {
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
                Some(true) => {
                    controls.push(surface.clone());
                    plan.reset_done();
                }
                None => {}
            }
            let mut silent_in_a_row = 0usize;
            for (i, (u, p)) in list.iter().enumerate() {
                if started.elapsed() > budget {
                    let rest: Vec<&str> = surfaces[si + 1..].iter().map(String::as_str).collect();
                    not_done = Some(format!(
                        "the time budget of this test ran out: credentials {} to {} of {} on {surface} were not tried{}",
                        i + 1,
                        list.len(),
                        list.len(),
                        if rest.is_empty() {
                            String::new()
                        } else {
                            format!(", nor any on {}", rest.join(", "))
                        }
                    ));
                    break 'surfaces;
                }
                let r = attempt_on(dev, surface, u, SecretValue::plain(p.clone())).await;
                let Attempt {
                    accepted: ok,
                    elapsed,
                    no_password,
                } = match r {
                    Ok(v) => {
                        silent_in_a_row = 0;
                        v
                    }
                    // One credential without an answer (e.g. a login program that drops the
                    // session when root logs in on a non-secure terminal) is noted and the sweep
                    // goes on; three in a row mean the unit is gone.
                    Err(e)
                        if e.is_device_silence()
                            && dev.unreachable().is_none()
                            && silent_in_a_row < 2 =>
                    {
                        // A closed session is reconnected by the next attempt (a unit that is
                        // gone then fails to reopen); only waiting in vain counts toward
                        // giving up.
                        if !e.is_link_closed() {
                            silent_in_a_row += 1;
                        }
                        dev.note(format!(
                            "credential {} of {} ({u}/{}) on {surface}: no answer ({e}); going on with the next",
                            i + 1,
                            list.len(),
                            shown(p)
                        ));
                        unanswered.push(format!("{u}/{}", shown(p)));
                        continue;
                    }
                    Err(e) => {
                        // Say exactly what could not be completed; confirmed findings stand.
                        return Ok(Outcome::error(format!(
                            "stopped at credential {} of {} ({u}/{}) on {surface}: {}{e}",
                            i + 1,
                            list.len(),
                            shown(p),
                            if e.is_device_silence() {
                                "no usable answer from the device: "
                            } else {
                                ""
                            }
                        )));
                    }
                };
                if ok {
                    let cred = match &no_password {
                        // The device never asked for the password: say so, not "u/p".
                        Some(prompt) => format!(
                            "{u} with no password asked (a {:?} prompt right after the user name)",
                            prompt.trim()
                        ),
                        None => format!("{u}/{}", shown(p)),
                    };
                    let what = if surfaces.len() > 1 {
                        format!("{cred} ({surface})")
                    } else {
                        cred
                    };
                    if no_password.is_some() && accepted.contains(&what) {
                        // The same password-less user again: one finding is enough.
                        plan.reset_done();
                        continue;
                    }
                    dev.confirm_finding(format!(
                        "universal default credential {what} ACCEPTED {state}"
                    ));
                    accepted.push(what);
                    // A successful login resets the unit's failure counter.
                    plan.reset_done();
                    continue;
                }
                let (was_suspect, was_ineffective) = (plan.suspect, plan.ineffective);
                let reset_now = plan.refused(elapsed, decl.throttle_threshold);
                if plan.ineffective && !was_ineffective {
                    dev.note(format!("a refusal right after a successful login was slow again ({} ms): logging in does not reset this unit's delay, so the sweep stops resetting", elapsed.as_millis()));
                } else if plan.suspect && !was_suspect {
                    dev.note(format!("a refusal right after a successful login was slow ({} ms): resetting once more to tell a host hiccup from a delay that logging in does not reset", elapsed.as_millis()));
                } else if was_suspect && !plan.suspect {
                    dev.note("the refusal after that reset was fast again: the slow one was a hiccup, resets go on");
                }
                if reset_now {
                    if let Some(own) = &own {
                        dev.note(format!(
                            "logging in with the unit's own password to reset its failure counter (after {} failures)",
                            plan.since_reset
                        ));
                        if !try_login_on(dev, surface, &user, own.clone()).await? {
                            not_done = Some(format!(
                                "the unit refused its own password during the sweep (locked after {} failures): credentials {} to {} of {} on {surface} were not tried",
                                plan.since_reset,
                                i + 2,
                                list.len(),
                                list.len()
                            ));
                            break 'surfaces;
                        }
                        plan.reset_done();
                    }
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
        let resets = if plan.resets > controls.len() {
            format!(
                "; the own password was used {} times to reset the failure counter",
                plan.resets - controls.len()
            )
        } else {
            String::new()
        };
        if !accepted.is_empty() {
            let mut msg = format!(
                "{} universal default credential{} of {} authenticated {state}{on}: {}",
                accepted.len(),
                if accepted.len() == 1 { "" } else { "s" },
                list.len(),
                accepted.join(", ")
            );
            if let Some(n) = &not_done {
                msg.push_str(&format!("; not completed: {n}"));
            }
            if !unanswered.is_empty() {
                msg.push_str(&format!(
                    "; {} got no answer: {}",
                    unanswered.len(),
                    unanswered.join(", ")
                ));
            }
            return Ok(Outcome::fail(msg));
        }
        if !unanswered.is_empty() && not_done.is_none() && refused_control.is_empty() {
            return Ok(Outcome::inconclusive(format!(
                "no universal default credential authenticated {state}{on}, but {} of {} got no answer from the device (neither accepted nor refused): {}",
                unanswered.len(),
                list.len(),
                unanswered.join(", ")
            )));
        }
        if let Some(n) = not_done {
            return Ok(Outcome::inconclusive(format!(
                "no universal default credential authenticated {state}{on} so far, but {n}"
            )));
        }
        if !refused_control.is_empty() {
            return Ok(Outcome::inconclusive(format!(
                "the unit's own password was refused via {}, so the refusal of default credentials there proves nothing (check the board's password and login recipe)",
                refused_control.join(", ")
            )));
        }
        Ok(if !controls.is_empty() {
            Outcome::pass(format!(
                "all {} universal default credentials were refused {state}{on}; the unit's own password was accepted on each (positive control){resets}",
                list.len()
            ))
        } else {
            Outcome::inconclusive(format!(
                "all {} universal default credentials were refused {state}{on}, but no unit password is declared, so there was no positive control: declare the unit's password to make the result conclusive",
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
    actions: &["factory_reset", "set_password", "login", "logout"],
};

#[async_trait::async_trait]
impl Test for UnitPasswordAccepted {
    fn info(&self) -> &TestInfo {
        &UNIT_ACCEPTED_INFO
    }
    fn actions(&self, model: &Model) -> Vec<String> {
        login_actions(self, model)
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
                let reset = factory_reset(dev).await?;
                if try_login(dev, &user, SecretValue::plain("")).await? {
                    dev.confirm_finding("with no password set yet, an empty password was accepted");
                    return Ok(Outcome::fail(format!(
                        "{}, with no password set yet, an empty password was accepted",
                        if reset { "after factory reset" } else { "in the unit's current state" }
                    )));
                }
                let state = if reset { "after factory reset" } else { "in the unit's current state (factory_reset was refused)" };
                return Ok(match own_password(dev).await? {
                    OwnPassword::Known { password, set_now } => {
                        if try_login(dev, &user, password).await? {
                            Outcome::pass(format!(
                                "{state} an empty password gave no access; {} was then accepted",
                                if set_now { "the password set through set_password" } else { "the password the lab set" }
                            ))
                        } else {
                            Outcome::inconclusive("the password set for the unit was refused right after it was set")
                        }
                    }
                    OwnPassword::Missing(_) => Outcome::pass(format!(
                        "{state} an empty password gave no access (no set_password action: the setting of a password was not exercised)"
                    )),
                });
            }
            let Some(p) = dev.unit_password().await? else {
                return Ok(Outcome::inconclusive("no password is declared for this unit: add `password = { value | env | action }` to its [[unit]]"));
            };
            let a = attempt_on(dev, "login", &user, p).await?;
            Ok(if let Some(prompt) = &a.no_password {
                Outcome::fail(format!(
                    "{user:?} got in without being asked for a password (a {:?} prompt right after the user name): the unit's password protects nothing",
                    prompt.trim()
                ))
            } else if a.accepted {
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
            actions: &[],
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
            let concerned = groups.iter().flatten().map(|n| n.to_string()).collect();
            Outcome::fail(msg).concerning(concerned)
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
        let mut concerned = Vec::new();
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
                concerned.push(name.clone());
            }
        }
        if findings.is_empty() {
            Outcome::pass(format!(
                "none of the {} passwords contains or is contained in the serial, MAC (any form), model or manufacturer, nor in an unkeyed hash (MD5, SHA-1, SHA-256) of them",
                pw.len()
            ))
        } else {
            Outcome::fail(findings.join(" | ")).concerning(concerned)
        }
    }
}

/// The verdict and message of `password.no-counter-pattern` for passwords in production
/// order. Identical passwords are no sequence: the test does not apply to them (uniqueness
/// reports them), and the message never calls them patternless.
pub fn counter_verdict(list: &[&str]) -> (Verdict, String) {
    let mut distinct = list.to_vec();
    distinct.sort();
    distinct.dedup();
    if distinct.len() < 2 {
        return (
            Verdict::NotApplicable,
            format!(
                "all {} passwords are identical: there is no sequence to judge (password.unique-across-units reports the shared password)",
                list.len()
            ),
        );
    }
    let dup = list.len() - distinct.len();
    let among = if dup > 0 {
        format!(
            "{} distinct passwords of {} units ({dup} shared, see password.unique-across-units)",
            distinct.len(),
            list.len()
        )
    } else {
        format!("{} passwords", list.len())
    };
    match counter_pattern(list) {
        Some(why) => (Verdict::Fail, format!("the {among} {why}")),
        None => (
            Verdict::Pass,
            format!("no counter-like or near-identical pattern across the {among}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_passwords_are_not_called_patternless() {
        let (v, m) = counter_verdict(&["admin", "admin", "admin"]);
        assert_eq!(v, Verdict::NotApplicable);
        assert!(m.contains("identical") && !m.contains("no counter"), "{m}");
        let (v, m) = counter_verdict(&["Vq7#mZ2p!Lk9", "Vq7#mZ2p!Lk9", "Rt4%wB8n?Jd2"]);
        assert_eq!(v, Verdict::Pass);
        assert!(m.contains("2 distinct passwords of 3 units"), "{m}");
        assert_eq!(
            counter_verdict(&["Plug-0001", "Plug-0002"]).0,
            Verdict::Fail
        );
    }

    const T: Duration = Duration::from_millis(800);
    const FAST: Duration = Duration::from_millis(5);
    const SLOW: Duration = Duration::from_millis(5_000);

    /// Resets made, and slowed refusals met, when the sweep makes `n` refusals against a unit
    /// that slows after `throttle_after` consecutive failures (a good login resets it).
    fn sweep(plan: &mut ResetPlan, n: usize, throttle_after: usize) -> (usize, usize) {
        let (mut consecutive, mut slow_seen) = (0, 0);
        plan.reset_done();
        for _ in 0..n {
            let t = if consecutive >= throttle_after {
                SLOW
            } else {
                FAST
            };
            consecutive += 1;
            if t == SLOW {
                slow_seen += 1;
            }
            if plan.refused(t, T) {
                plan.reset_done();
                consecutive = 0;
            }
        }
        (plan.resets - 1, slow_seen)
    }

    #[test]
    fn the_sweep_resets_as_declared_or_learned_never_after_every_attempt() {
        // Declared lockout after 10: a reset every 9 failures, no delay ever met.
        let (resets, slow) = sweep(&mut ResetPlan::new(Some(10)), 79, 9);
        assert_eq!((resets, slow), (8, 0));
        // Undeclared: the first slowed refusal teaches the interval (3 fast failures).
        let (resets, slow) = sweep(&mut ResetPlan::new(None), 79, 3);
        assert_eq!(slow, 1);
        assert!((25..=27).contains(&resets), "{resets}");
        // A unit that never slows down is never interrupted.
        assert_eq!(sweep(&mut ResetPlan::new(None), 79, usize::MAX), (0, 0));
    }

    #[test]
    fn resets_stop_when_they_do_not_help() {
        let mut plan = ResetPlan::new(None);
        plan.reset_done();
        assert!(!plan.refused(FAST, T));
        assert!(plan.refused(SLOW, T));
        plan.reset_done();
        // Slow right after a reset: once is checked by one more reset ...
        assert!(plan.refused(SLOW, T));
        assert!(plan.suspect && !plan.ineffective);
        plan.reset_done();
        // ... and twice means logging in does not reset the delay.
        assert!(!plan.refused(SLOW, T));
        assert!(plan.ineffective);
        assert!(!plan.refused(SLOW, T));
    }

    #[test]
    fn one_slow_refusal_after_a_reset_does_not_stop_the_resets() {
        // A host hiccup (a slow SSH set-up under load) right after a reset, then fast again.
        let mut plan = ResetPlan::new(Some(4));
        plan.reset_done();
        for _ in 0..2 {
            assert!(!plan.refused(FAST, T));
        }
        assert!(plan.refused(FAST, T));
        plan.reset_done();
        assert!(plan.refused(SLOW, T));
        plan.reset_done();
        assert!(!plan.refused(FAST, T));
        assert!(!plan.suspect && !plan.ineffective);
        // The declared interval still holds afterwards.
        assert!(!plan.refused(FAST, T));
        assert!(plan.refused(FAST, T));
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
        let (verdict, msg) = counter_verdict(&list);
        note_all(devs, &msg);
        let o = Outcome::new(verdict, msg);
        if verdict == Verdict::Fail {
            o.concerning(ordered.iter().map(|(_, n, _)| n.to_string()).collect())
        } else {
            o
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
        let mut concerned = Vec::new();
        for (d, (name, p)) in devs.iter_mut().zip(&pw) {
            if let Some(why) = is_common(p) {
                // A common password is public knowledge; evidence may show it.
                d.mark_public(p);
                d.note(format!("the password {why}"));
                bad.push(format!("{name} ({why})"));
                concerned.push(name.clone());
            }
        }
        if bad.is_empty() {
            Outcome::pass(format!(
                "none of the {} passwords is in the common-password or default-credential lists",
                pw.len()
            ))
        } else {
            Outcome::fail(format!("common passwords: {}", bad.join(", "))).concerning(concerned)
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
        let units: Vec<(String, String, Vec<String>)> = devs
            .iter()
            .zip(&pw)
            .map(|(d, (name, p))| {
                let mut hints: Vec<String> = vec![d.model.name.clone()];
                hints.extend(d.unit.serial.clone());
                hints.extend(d.unit.mac.clone());
                hints.extend(d.model.manufacturer.clone());
                hints.extend(d.model.declarations.public_identifiers.iter().cloned());
                (name.clone(), p.clone(), hints)
            })
            .collect();
        let rule = StrengthRule::default();
        let j = complexity_judgement(&units, min, &rule);
        for (d, u) in devs.iter().zip(&j.units) {
            d.note(format!(
                "zxcvbn estimate of the password of {}: 10^{:.1} guesses, {} characters",
                u.name, u.log10_guesses, u.length
            ));
        }
        let data = serde_json::json!({
            "weakest_unit": j.weakest().map(|u| u.name.clone()),
            "weakest_log10_guesses": j.weakest().map(|u| (u.log10_guesses * 10.0).round() / 10.0),
            "median_log10_guesses": (j.median_log10 * 10.0).round() / 10.0,
            "model_min_log10": rule.model_min_log10,
            "unit_min_log10": rule.unit_min_log10,
            "min_length": min,
        });
        let o = if j.problems.is_empty() {
            Outcome::pass(j.summary)
        } else {
            Outcome::fail(format!("{}: {}", j.summary, j.problems.join("; ")))
                .concerning(j.concerned.clone())
        };
        o.with_data(data)
    }
}
