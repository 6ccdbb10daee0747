//! The runner: schedules tests on units and emits events.
//!
//! Units run in parallel (at most `jobs` at once), one test at a time per unit. Every test has a
//! timeout; a panicking test becomes an `error` record; cancellation (Ctrl-C) stops new tests,
//! records the running ones as interrupted, and stops every emulator. Per-model tests run once all
//! units of the model have finished their per-unit tests, and are reported on every unit.

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures::FutureExt;
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::board::{Board, Model, Unit};
use crate::device::Device;
use crate::emulator::{self, EmulatorHandle};
use crate::event::{rfc3339, Event, ModelFinding, TestRecord, UnitInfo};
use crate::lease::{self, LeaseSettings};
use crate::secret::Redactor;
use crate::test::{settle, Outcome, Scope, Suite, Test, Verdict};

/// How to run.
#[derive(Debug, Clone, Default)]
pub struct RunConfig {
    /// Most units driven at once (0: all).
    pub jobs: usize,
    /// Overrides every test's own timeout (mostly for tests of the harness itself).
    pub test_timeout: Option<Duration>,
    /// What the run provides to units (e.g. the embedded MQTT broker).
    pub env: crate::device::RunEnv,
    /// Where and how long to wait for the leases of units on a shared bench.
    pub leases: LeaseSettings,
}

/// What a run produced, in the order tests finished.
#[derive(Debug, Default)]
pub struct RunSummary {
    pub records: Vec<TestRecord>,
    pub interrupted: bool,
}

impl RunSummary {
    /// Exit status per the CLI contract: 130 interrupted (whatever the verdicts), 1 a fail,
    /// 3 an error and no fail, 0 clean.
    pub fn exit_code(&self) -> i32 {
        if self.interrupted {
            130
        } else if self.records.iter().any(|r| r.verdict == Verdict::Fail) {
            1
        } else if self.records.iter().any(|r| r.verdict == Verdict::Error) {
            3
        } else {
            0
        }
    }
}

pub fn unit_info(unit: &Unit, model: &Model) -> UnitInfo {
    UnitInfo {
        name: unit.name.clone(),
        model: model.name.clone(),
        manufacturer: model.manufacturer.clone(),
        serial: unit.serial.clone(),
        mac: unit.mac.clone(),
        firmware: unit.firmware.clone(),
        board_file: unit.source.clone(),
        emulated: model.emulator.is_some(),
        board_files: board_files(unit, model),
    }
}

/// The unit's board file, then the model's when it is another file, each with its SHA-256.
/// A file that cannot be read now (moved since loading) is left out rather than guessed.
fn board_files(unit: &Unit, model: &Model) -> Vec<crate::results::BoardFileMeta> {
    use sha2::Digest as _;
    let mut paths = vec![unit.source.clone()];
    if model.source != unit.source {
        paths.push(model.source.clone());
    }
    paths
        .into_iter()
        .filter_map(|path| {
            let bytes = std::fs::read(&path).ok()?;
            let sha256 = sha2::Sha256::digest(&bytes)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            Some(crate::results::BoardFileMeta { path, sha256 })
        })
        .collect()
}

/// The tests of `suites` in order, each with its suite name.
fn plan(suites: &[Suite]) -> Vec<(&'static str, Arc<dyn Test>)> {
    suites
        .iter()
        .flat_map(|s| s.tests.iter().map(move |t| (s.name, t.clone())))
        .collect()
}

struct Ctx {
    events: mpsc::UnboundedSender<Event>,
    cancel: CancellationToken,
    cfg: RunConfig,
    records: std::sync::Mutex<Vec<TestRecord>>,
}

impl Ctx {
    fn emit_record(&self, rec: TestRecord) {
        if let Ok(mut r) = self.records.lock() {
            // The summary needs verdicts, not transcripts: evidence is held once, in flight.
            r.push(rec.without_evidence());
        }
        let _ = self.events.send(Event::TestFinished(Box::new(rec)));
    }
}

/// Runs `suites` on every unit of `boards`.
pub async fn run(
    boards: Vec<Board>,
    suites: Vec<Suite>,
    cfg: RunConfig,
    events: mpsc::UnboundedSender<Event>,
    cancel: CancellationToken,
) -> RunSummary {
    let started = Instant::now();
    let tests = plan(&suites);
    let units: Vec<UnitInfo> = boards
        .iter()
        .flat_map(|b| b.units.iter().map(|u| unit_info(u, &b.model)))
        .collect();
    let planned = units
        .iter()
        .map(|u| (u.name.clone(), tests.len()))
        .collect();
    let _ = events.send(Event::RunStarted {
        units,
        planned,
        started: SystemTime::now(),
    });

    // Units of one model may come from several files that extend the same model file.
    let mut groups: Vec<(Arc<Model>, Vec<Unit>)> = Vec::new();
    for b in boards {
        match groups.iter_mut().find(|(m, _)| Arc::ptr_eq(m, &b.model)) {
            Some((_, us)) => us.extend(b.units),
            None => groups.push((b.model, b.units)),
        }
    }
    let total_units: usize = groups.iter().map(|(_, u)| u.len()).sum();
    let permits = if cfg.jobs == 0 {
        total_units.max(1)
    } else {
        cfg.jobs
    };
    let sem = Arc::new(Semaphore::new(permits));
    let mut cfg = cfg;
    cfg.env.events = Some(events.clone());
    let ctx = Arc::new(Ctx {
        events: events.clone(),
        cancel: cancel.clone(),
        cfg,
        records: std::sync::Mutex::new(Vec::new()),
    });

    // Every unit's bench lease, before any unit starts (and before any --jobs permit).
    let leases = tokio::select! {
        l = take_leases(&groups, &ctx) => l,
        _ = cancel.cancelled() => groups
            .iter()
            .map(|(_, us)| us.iter().map(|_| LeaseOutcome::Interrupted).collect())
            .collect(),
    };

    let mut handles = Vec::new();
    for ((model, units), leases) in groups.into_iter().zip(leases) {
        let ctx = ctx.clone();
        let tests = tests.clone();
        let sem = sem.clone();
        handles.push(tokio::spawn(run_model_group(
            model, units, leases, tests, ctx, sem,
        )));
    }
    for h in handles {
        // A panic outside a test body (a harness bug) must not lose the other groups' results.
        let _ = h.await;
    }

    let interrupted = cancel.is_cancelled();
    let _ = events.send(Event::RunFinished {
        interrupted,
        duration: started.elapsed(),
    });
    let records = match ctx.records.lock() {
        Ok(mut r) => std::mem::take(&mut *r),
        Err(p) => std::mem::take(&mut *p.into_inner()),
    };
    RunSummary {
        records,
        interrupted,
    }
}

/// A unit after its per-unit phase: its device (if it came up) and emulator.
struct UnitState {
    unit: Unit,
    device: Option<Device>,
    emulator: Option<EmulatorHandle>,
    start_error: Option<String>,
    /// Why the unit's tests could not run (did not start, wrong unit, unreachable, exited):
    /// its per-model records are `error` with this reason, and the model is judged without it.
    blocked: Option<String>,
    /// The unit's bench lease, held until its group ends (released when dropped).
    lease: Option<Arc<lease::Lease>>,
}

async fn run_model_group(
    model: Arc<Model>,
    units: Vec<Unit>,
    leases: Vec<LeaseOutcome>,
    tests: Vec<(&'static str, Arc<dyn Test>)>,
    ctx: Arc<Ctx>,
    sem: Arc<Semaphore>,
) {
    let mut unit_tasks = Vec::new();
    for (unit, lease) in units.into_iter().zip(leases) {
        let model = model.clone();
        let tests = tests.clone();
        let task_ctx = ctx.clone();
        let sem = sem.clone();
        let known = unit.clone();
        unit_tasks.push((
            known,
            tokio::spawn(async move {
                let _permit = sem.acquire_owned().await.ok();
                run_unit_phase(unit, model, lease, &tests, &task_ctx).await
            }),
        ));
    }
    let mut states = Vec::new();
    for (unit, t) in unit_tasks {
        match t.await {
            Ok(s) => states.push(s),
            Err(e) => {
                // The unit's task itself died (a harness bug outside any test body): its
                // per-unit tests that finished are recorded; the model phase reports the rest.
                states.push(UnitState {
                    unit,
                    device: None,
                    emulator: None,
                    start_error: None,
                    blocked: Some(format!(
                        "internal error in the unit's task (a harness bug): {e}"
                    )),
                    lease: None,
                });
            }
        }
    }

    run_model_phase(&model, &mut states, &tests, &ctx).await;

    // Stop every unit of the group at once: shutdown time must not grow with the fleet.
    let stops = states.into_iter().map(|s| async move {
        // Its labgrid places are given back (awaited) before the device goes.
        if let Some(mut d) = s.device {
            d.release_places().await;
        }
        if let Some(e) = s.emulator {
            e.lock().await.stop().await;
        }
        // Only once the unit is stopped may another run take it.
        drop(s.lease);
        s.unit.name
    });
    for unit in futures::future::join_all(stops).await {
        let _ = ctx.events.send(Event::UnitFinished { unit });
    }
}

/// When a test ran and what it left behind.
struct Ran {
    started: SystemTime,
    elapsed: Duration,
    evidence_text: Option<String>,
}

fn record(
    unit: &Unit,
    model: &Model,
    suite: &str,
    test: &dyn Test,
    outcome: Outcome,
    ran: Ran,
    redactor: &Redactor,
) -> TestRecord {
    let Ran {
        started,
        elapsed,
        evidence_text,
    } = ran;
    let info = test.info();
    let outcome_data = outcome.data.clone();
    let evidence = evidence_text
        .as_ref()
        .map(|_| format!("evidence/{}/{}.log", unit.name, info.id));
    TestRecord {
        board: unit.name.clone(),
        model: model.name.clone(),
        suite: suite.to_string(),
        test: info.id.to_string(),
        verdict: outcome.verdict,
        provisions: info.provisions.iter().map(|p| p.to_string()).collect(),
        message: redactor.redact(&outcome.message),
        duration_ms: elapsed.as_millis() as u64,
        evidence,
        started_at: rfc3339(started),
        data: outcome_data,
        model_finding: None,
        evidence_text,
    }
}

fn evidence_header(
    unit: &Unit,
    model: &Model,
    test: &dyn Test,
    outcome: &Outcome,
    redactor: &Redactor,
) -> String {
    let info = test.info();
    format!(
        "# hilsec evidence\n# test:       {}\n# title:      {}\n# provisions: {}\n# unit:       {} ({}{})\n# verdict:    {}\n# message:    {}\n\n",
        info.id,
        info.title,
        info.provisions.join("; "),
        unit.name,
        model.name,
        unit.serial.as_deref().map(|s| format!(", serial {s}")).unwrap_or_default(),
        outcome.verdict,
        redactor.redact(&outcome.message),
    )
}

async fn run_unit_phase(
    unit: Unit,
    model: Arc<Model>,
    lease: LeaseOutcome,
    tests: &[(&'static str, Arc<dyn Test>)],
    ctx: &Ctx,
) -> UnitState {
    let _ = ctx.events.send(Event::UnitStarted {
        unit: unit.name.clone(),
    });
    let mut state = UnitState {
        unit: unit.clone(),
        device: None,
        emulator: None,
        start_error: None,
        blocked: None,
        lease: None,
    };
    if ctx.cancel.is_cancelled() {
        return state;
    }

    // The unit's bench lease, taken before any unit of the run started (another run may hold
    // it): nothing touches the unit without it.
    let (lease_blocked, mut lease_notes) = match lease {
        LeaseOutcome::Interrupted => return state,
        LeaseOutcome::None => (None, Vec::new()),
        LeaseOutcome::Taken(l, note) => {
            state.lease = Some(l);
            (None, note.into_iter().collect())
        }
        LeaseOutcome::Blocked(why) => (Some(why), Vec::new()),
    };

    // Bring the unit up: choose its ports, start its emulator, if any.
    let mut dev = if lease_blocked.is_some() {
        Device::new(unit.clone(), model.clone(), &BTreeMap::new(), &ctx.cfg.env)
    } else {
        let started = tokio::select! {
            r = emulator::start_unit(unit.clone(), model.clone(), &ctx.cfg.env) => r,
            _ = ctx.cancel.cancelled() => return state,
        };
        match started {
            Ok(s) => {
                state.emulator = s.emulator;
                s.device
            }
            Err((probe, err)) => {
                state.start_error = Some(probe.redactor().redact(&err.to_string()));
                probe
            }
        }
    };

    // Why the unit's remaining tests cannot run, once that is known (another run holds it, it
    // did not start, it is not the unit the board file describes, its link cannot be opened,
    // its process exited), with the evidence that shows it.
    let mut blocked: Option<(String, Option<String>)> = match &lease_blocked {
        Some(why) => Some((why.clone(), None)),
        None => state
            .start_error
            .as_ref()
            .map(|e| (format!("the unit did not start: {e}"), None)),
    };
    // Checked inside the first test that runs, so its exchanges are in that test's evidence.
    let mut identity_pending = true;

    for (suite, test) in tests {
        if ctx.cancel.is_cancelled() {
            break;
        }
        let info = test.info();
        if info.scope != Scope::Unit {
            continue;
        }
        let started = SystemTime::now();
        let t0 = Instant::now();
        if let Some(reason) = test.not_applicable_in(&model, &unit, &ctx.cfg.env) {
            ctx.emit_record(record(
                &unit,
                &model,
                suite,
                test.as_ref(),
                Outcome::not_applicable(reason),
                Ran {
                    started,
                    elapsed: t0.elapsed(),
                    evidence_text: None,
                },
                dev.redactor(),
            ));
            continue;
        }
        if let Some((why, evidence)) = &blocked {
            let o = Outcome::error(why.clone());
            let evidence_text = evidence
                .as_ref()
                .map(|e| evidence_header(&unit, &model, test.as_ref(), &o, dev.redactor()) + e);
            ctx.emit_record(record(
                &unit,
                &model,
                suite,
                test.as_ref(),
                o,
                Ran {
                    started,
                    elapsed: t0.elapsed(),
                    evidence_text,
                },
                dev.redactor(),
            ));
            continue;
        }
        let _ = ctx.events.send(Event::TestStarted {
            unit: unit.name.clone(),
            test: info.id.to_string(),
        });
        let transcript = dev.begin_test();
        // A stale lease taken over is said in the first test's evidence (and on stderr).
        for note in lease_notes.drain(..) {
            dev.note(note);
        }
        let timeout = ctx.cfg.test_timeout.unwrap_or(info.timeout);
        let wrong_unit = if std::mem::take(&mut identity_pending) {
            match prepare(&mut dev, &ctx.cancel).await {
                Some(why) => Some(why),
                None => check_identity(&mut dev, &unit, &model, &ctx.cancel).await,
            }
        } else {
            None
        };
        if let Some(why) = &wrong_unit {
            blocked = Some((why.clone(), Some(transcript.render(dev.redactor()))));
        }
        let outcome = match &wrong_unit {
            Some(why) => Outcome::error(why.clone()),
            None => match synchronise(&mut dev, &ctx.cancel).await {
                Err(why) => Outcome::error(format!(
                    "the unit could not be brought to a known state before the test: {why}"
                )),
                Ok(()) => {
                    let body = AssertUnwindSafe(test.run_unit(&mut dev)).catch_unwind();
                    tokio::select! {
                        r = tokio::time::timeout(timeout, body) => match r {
                            Ok(Ok(o)) => o,
                            Ok(Err(panic)) => Outcome::error(format!("the test panicked (a harness bug): {}", panic_message(&panic))),
                            Err(_) => Outcome::error(format!("the test did not finish within its {timeout:?} timeout")),
                        },
                        _ = ctx.cancel.cancelled() => Outcome::error("run interrupted before the test finished"),
                    }
                }
            },
        };
        let mut end = dev.take_end_state();
        end.exited = match &state.emulator {
            Some(e) => e.lock().await.exited(),
            None => None,
        };
        let outcome = settle(outcome, &end);
        let outcome = annotate_exit(outcome, state.emulator.as_ref()).await;
        let exited = match &state.emulator {
            Some(em) => {
                let mut em = em.lock().await;
                em.exited()
                    .map(|st| (st, em.tail().lines().last().unwrap_or("").to_string()))
            }
            None => None,
        };
        if wrong_unit.is_some() {
            // Blocked above, with the identity exchange as evidence.
        } else if let Some((st, last)) = exited {
            blocked = Some((
                format!("the unit's process has exited ({st}; its last output: {last}); its remaining tests cannot run"),
                None,
            ));
        } else if let Some(cause) = dev.unreachable() {
            blocked = Some((
                format!(
                    "the unit cannot be reached (not retried for its remaining tests): {cause}"
                ),
                None,
            ));
        } else if outcome.verdict == Verdict::Error && !ctx.cancel.is_cancelled() {
            // A test that ended in trouble may leave the unit stuck (at a root shell, in the
            // middle of a transfer): bring it back before the next test, or say it cannot be.
            if let Err(why) = recover(&mut dev, &ctx.cancel).await {
                dev.note(format!("recovery after the error failed: {why}"));
                if !end.liveness.usable() && dev.has_action("sync") {
                    // Silent in the test and deaf to the resync: waiting out every remaining
                    // test's timeouts would tell nothing more.
                    blocked = Some((
                        format!("the unit stopped answering and could not be brought back to a known state (sync, logout, recover): {why}"),
                        None,
                    ));
                }
            }
        }
        transcript.note(format!(
            "verdict: {} — {}",
            outcome.verdict, outcome.message
        ));
        let text = evidence_header(&unit, &model, test.as_ref(), &outcome, dev.redactor())
            + &transcript.render(dev.redactor());
        ctx.emit_record(record(
            &unit,
            &model,
            suite,
            test.as_ref(),
            outcome,
            Ran {
                started,
                elapsed: t0.elapsed(),
                evidence_text: Some(text),
            },
            dev.redactor(),
        ));
    }
    state.blocked = blocked.map(|(why, _)| why);
    state.device = Some(dev);
    state
}

/// What became of a unit's bench lease.
#[derive(Clone)]
enum LeaseOutcome {
    /// The unit takes no lease (an emulated unit without `lease`).
    None,
    /// Held by this run (shared by the units of one key), with a note when a stale lease was
    /// recovered.
    Taken(Arc<lease::Lease>, Option<String>),
    /// Not taken: why the unit's tests are `error`.
    Blocked(String),
    Interrupted,
}

/// Takes the leases of every unit of the run that needs one (see [`lease::unit_key`]), per
/// group and unit, before any unit starts. Keys are taken one at a time in their sorted order,
/// which every run shares: a run waits for a key only while holding smaller ones, so two runs
/// sharing units never wait for each other in a cycle (one runs, then the other). Each key gets
/// what is left of `--lease-wait`; a key still held then blocks its units, and the next keys
/// are still taken. Waiting is shown as progress, and on stderr every 10 s (plain CI output
/// shows no progress). The caller stops it on cancellation (leases taken so far are dropped).
async fn take_leases(groups: &[(Arc<Model>, Vec<Unit>)], ctx: &Ctx) -> Vec<Vec<LeaseOutcome>> {
    let mut out: Vec<Vec<LeaseOutcome>> = groups
        .iter()
        .map(|(_, us)| us.iter().map(|_| LeaseOutcome::None).collect())
        .collect();
    let mut by_key: BTreeMap<String, Vec<(usize, usize)>> = BTreeMap::new();
    for (g, (model, units)) in groups.iter().enumerate() {
        for (u, unit) in units.iter().enumerate() {
            if let Some(key) = lease::unit_key(unit, model) {
                by_key.entry(key).or_default().push((g, u));
            }
        }
    }
    if by_key.is_empty() {
        return out;
    }
    let settings = &ctx.cfg.leases;
    let dir = lease::lease_dir(settings.dir.as_deref());
    let deadline = Instant::now() + settings.wait;
    for (key, at) in by_key {
        let names: Vec<&str> = at
            .iter()
            .map(|&(g, u)| groups[g].1[u].name.as_str())
            .collect();
        let shown = names.join(", ");
        let s = LeaseSettings {
            wait: deadline.saturating_duration_since(Instant::now()),
            ..settings.clone()
        };
        let mut last_line: Option<Instant> = None;
        let waiting = |h: &lease::HeldBy, _left: Duration| {
            // The time left of the whole run's wait, which every key shares.
            let left = deadline.saturating_duration_since(Instant::now());
            let left = humantime::format_duration(Duration::from_secs(left.as_secs()));
            let line = format!(
                "waiting for {shown}: held by {} ({left} left of --lease-wait)",
                h.describe_short()
            );
            for n in &names {
                let _ = ctx.events.send(Event::Progress {
                    unit: n.to_string(),
                    activity: line.clone(),
                });
            }
            if last_line.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                last_line = Some(Instant::now());
                eprintln!("hilsec: {line}");
            }
        };
        let outcome = match lease::acquire(&dir, &key, &s, waiting).await {
            Ok(lease::Attempt::Acquired { lease, recovered }) => {
                if let Some(note) = &recovered {
                    eprintln!("hilsec: {shown}: {note}");
                }
                LeaseOutcome::Taken(Arc::new(lease), recovered)
            }
            Ok(lease::Attempt::Held(h)) if settings.wait.is_zero() => LeaseOutcome::Blocked(format!(
                "unit held by {} (lease {key}); pass --lease-wait 5m to wait, or see `hilsec lease list`",
                h.describe()
            )),
            Ok(lease::Attempt::Held(h)) => LeaseOutcome::Blocked(format!(
                "unit held by {} (lease {key}), still after --lease-wait {}; pass a longer --lease-wait, or see `hilsec lease list`",
                h.describe(),
                humantime::format_duration(settings.wait)
            )),
            Err(e) => LeaseOutcome::Blocked(format!("the unit's lease could not be taken: {e}")),
        };
        for (g, u) in at {
            out[g][u] = outcome.clone();
        }
    }
    out
}

/// Before the first test of a unit, where the board defines `prepare`: run it once (a CI job
/// flashes the build under test there, or powers the unit on). `Some(why)` when it failed:
/// the unit's tests are then errors, since they would judge an unknown firmware.
async fn prepare(dev: &mut Device, cancel: &CancellationToken) -> Option<String> {
    if !dev.has_action("prepare") {
        return None;
    }
    dev.note("preparing the unit (the board's action \"prepare\")");
    let got = tokio::select! {
        r = dev.run_action("prepare", &[]) => r,
        _ = cancel.cancelled() => return None,
    };
    // The preparation's exchanges are not the test's.
    let _ = dev.take_end_state();
    let why = match got {
        Ok(out) if out.accepted() => {
            dev.note("the unit is prepared");
            return None;
        }
        Ok(out) => format!(
            "the unit could not be prepared: action \"prepare\" was refused ({})",
            out.rejected.unwrap_or_default()
        ),
        Err(e) => format!("the unit could not be prepared: {e}"),
    };
    dev.note(&why);
    Some(why)
}

/// Before the first test of a unit, where the board defines `read_identity`: is the unit that
/// answers the one the board file describes? A swapped cable or a wrong tty would otherwise
/// produce a full set of verdicts about the wrong unit. `Some(why)` on a mismatch.
async fn check_identity(
    dev: &mut Device,
    unit: &Unit,
    model: &Model,
    cancel: &CancellationToken,
) -> Option<String> {
    if !model.has_action("read_identity") || (unit.serial.is_none() && unit.mac.is_none()) {
        return None;
    }
    dev.note("checking that the unit answering is the one the board file describes");
    let got = tokio::select! {
        r = dev.run_action("read_identity", &[]) => r,
        _ = cancel.cancelled() => return None,
    };
    // The identity exchange is not the test's: its verdict rests on its own exchanges.
    let _ = dev.take_end_state();
    match got {
        Ok(out) => match identity_mismatch(unit, &out.captures) {
            None => {
                dev.note("identity matches the board file");
                None
            }
            Some(why) => {
                dev.note(&why);
                Some(why)
            }
        },
        Err(e) => {
            // A unit that does not answer here is met (and reported) by the test itself.
            dev.note(format!("identity could not be read: {e}"));
            None
        }
    }
}

/// Compares the identity a unit reported with its board file: serial numbers ignoring case and
/// surrounding space, MAC addresses ignoring case and separators. Only fields both sides have
/// are compared.
pub fn identity_mismatch(unit: &Unit, captures: &BTreeMap<String, String>) -> Option<String> {
    fn mac_norm(s: &str) -> String {
        s.chars()
            .filter(char::is_ascii_hexdigit)
            .map(|c| c.to_ascii_lowercase())
            .collect()
    }
    let mut diffs = Vec::new();
    if let (Some(want), Some(got)) = (&unit.serial, captures.get("serial")) {
        if !want.trim().eq_ignore_ascii_case(got.trim()) {
            diffs.push(("serial", want.clone(), got.trim().to_string()));
        }
    }
    if let (Some(want), Some(got)) = (&unit.mac, captures.get("mac")) {
        if mac_norm(want) != mac_norm(got) {
            diffs.push(("MAC", want.clone(), got.trim().to_string()));
        }
    }
    if diffs.is_empty() {
        return None;
    }
    let want: Vec<String> = diffs.iter().map(|(k, w, _)| format!("{k} {w}")).collect();
    let got: Vec<String> = diffs.iter().map(|(k, _, g)| format!("{k} {g}")).collect();
    Some(format!(
        "wrong unit on this port: the board file describes {} ({}), but the unit answering reports {}; check the cabling and the interface paths before trusting any verdict",
        unit.name,
        want.join(", "),
        got.join(", ")
    ))
}

/// Why the unit could not be brought to a known state (by `sync` or a recovery action).
#[derive(Debug, thiserror::Error)]
enum RecoveryError {
    #[error("run interrupted")]
    Interrupted,
    #[error("no {0} action")]
    NoAction(String),
    #[error("{action} was refused ({why:?})")]
    Refused { action: String, why: String },
    #[error(transparent)]
    Action(crate::device::ActionError),
}

/// Brings the unit to a known state before a test through the board's `sync` action (e.g.
/// send a newline, expect the login prompt), when it defines one. A failed sync gets one
/// recovery attempt.
async fn synchronise(dev: &mut Device, cancel: &CancellationToken) -> Result<(), RecoveryError> {
    if !dev.has_action("sync") {
        return Ok(());
    }
    let first = tokio::select! {
        r = dev.run_action("sync", &[]) => r,
        _ = cancel.cancelled() => return Err(RecoveryError::Interrupted),
    };
    let result = match first {
        Ok(out) if out.rejected.is_none() => Ok(()),
        Ok(out) => {
            dev.note(format!(
                "sync was refused ({:?}); trying to recover the unit",
                out.rejected.unwrap_or_default()
            ));
            recover(dev, cancel).await
        }
        Err(e) => {
            dev.note(format!("sync failed ({e}); trying to recover the unit"));
            recover(dev, cancel).await
        }
    };
    // The sync's own exchanges are not the test's: the test's verdict rests on its own.
    let _ = dev.take_end_state();
    result
}

/// After an error: `sync` when defined; if that fails, `logout` then `sync`; if that fails,
/// the board's `recover` action (e.g. a reset) then `sync`. Without `sync`, only `recover` is
/// run (nothing could confirm the state a blind logout leaves).
async fn recover(dev: &mut Device, cancel: &CancellationToken) -> Result<(), RecoveryError> {
    async fn act(
        dev: &mut Device,
        name: &str,
        cancel: &CancellationToken,
    ) -> Result<(), RecoveryError> {
        if !dev.has_action(name) {
            return Err(RecoveryError::NoAction(name.to_string()));
        }
        dev.note(format!("recovery: {name}"));
        tokio::select! {
            r = dev.run_action(name, &[]) => match r {
                Ok(out) => match out.rejected {
                    None => Ok(()),
                    Some(why) => Err(RecoveryError::Refused { action: name.to_string(), why }),
                },
                Err(e) => Err(RecoveryError::Action(e)),
            },
            _ = cancel.cancelled() => Err(RecoveryError::Interrupted),
        }
    }
    let r = if !dev.has_action("sync") {
        if dev.has_action("recover") {
            act(dev, "recover", cancel).await
        } else {
            Ok(())
        }
    } else {
        let mut r = act(dev, "sync", cancel).await;
        for step in ["logout", "recover"] {
            if r.is_ok() || !dev.has_action(step) || cancel.is_cancelled() {
                continue;
            }
            r = match act(dev, step, cancel).await {
                Ok(()) => act(dev, "sync", cancel).await,
                Err(e) => Err(e),
            };
        }
        r
    };
    let _ = dev.take_end_state();
    r
}

/// A unit whose process died explains many errors at once: say so. A link that broke because
/// the process is exiting is noticed before the process is reaped, so wait a moment for it.
async fn annotate_exit(o: Outcome, em: Option<&EmulatorHandle>) -> Outcome {
    if o.verdict != Verdict::Error {
        return o;
    }
    let Some(e) = em else {
        return o;
    };
    let mut e = e.lock().await;
    let deadline = Instant::now() + Duration::from_millis(250);
    let status = loop {
        if let Some(st) = e.exited() {
            break Some(st);
        }
        if Instant::now() >= deadline {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    match status {
        Some(status) => Outcome::error(format!(
            "{} (the emulator process has exited: {status}; its last output: {})",
            o.message,
            e.tail().lines().last().unwrap_or("")
        )),
        None => o,
    }
}

async fn run_model_phase(
    model: &Arc<Model>,
    states: &mut [UnitState],
    tests: &[(&'static str, Arc<dyn Test>)],
    ctx: &Ctx,
) {
    for (suite, test) in tests {
        if ctx.cancel.is_cancelled() {
            return;
        }
        let info = test.info();
        if info.scope != Scope::Model {
            continue;
        }
        let started = SystemTime::now();
        let t0 = Instant::now();
        let mut redactor = Redactor::default();
        for s in states.iter() {
            if let Some(d) = &s.device {
                redactor.merge(d.redactor());
            }
        }
        if let Some(reason) = test.not_applicable(model) {
            for s in states.iter() {
                ctx.emit_record(record(
                    &s.unit,
                    model,
                    suite,
                    test.as_ref(),
                    Outcome::not_applicable(reason.clone()),
                    Ran {
                        started,
                        elapsed: t0.elapsed(),
                        evidence_text: None,
                    },
                    &redactor,
                ));
            }
            continue;
        }
        // Units that never came up or were lost get an error; the others are judged together.
        for s in states
            .iter()
            .filter(|s| s.device.is_none() || s.blocked.is_some())
        {
            let why = s
                .blocked
                .clone()
                .unwrap_or_else(|| "the unit was not started".into());
            ctx.emit_record(record(
                &s.unit,
                model,
                suite,
                test.as_ref(),
                Outcome::error(why),
                Ran {
                    started,
                    elapsed: t0.elapsed(),
                    evidence_text: None,
                },
                &redactor,
            ));
        }
        let mut idx = Vec::new();
        let mut devs = Vec::new();
        for (i, s) in states.iter_mut().enumerate() {
            if s.blocked.is_none() {
                if let Some(d) = s.device.take() {
                    idx.push(i);
                    devs.push(d);
                }
            }
        }
        if devs.is_empty() {
            continue;
        }
        for d in &devs {
            let _ = ctx.events.send(Event::TestStarted {
                unit: d.unit.name.clone(),
                test: info.id.to_string(),
            });
        }
        let transcripts: Vec<_> = devs.iter_mut().map(|d| d.begin_test()).collect();
        let timeout = ctx.cfg.test_timeout.unwrap_or(info.timeout);
        let outcome = {
            let body = AssertUnwindSafe(test.run_model(&mut devs)).catch_unwind();
            tokio::select! {
                r = tokio::time::timeout(timeout, body) => match r {
                    Ok(Ok(o)) => o,
                    Ok(Err(panic)) => Outcome::error(format!("the test panicked (a harness bug): {}", panic_message(&panic))),
                    Err(_) => Outcome::error(format!("the test did not finish within its {timeout:?} timeout")),
                },
                _ = ctx.cancel.cancelled() => Outcome::error("run interrupted before the test finished"),
            }
        };
        for d in &devs {
            redactor.merge(d.redactor());
        }
        let units: Vec<String> = devs.iter().map(|d| d.unit.name.clone()).collect();
        let finding = Arc::new(ModelFinding {
            model: model.name.clone(),
            suite: suite.to_string(),
            test: info.id.to_string(),
            verdict: outcome.verdict,
            provisions: info.provisions.iter().map(|p| p.to_string()).collect(),
            message: redactor.redact(&outcome.message),
            units: units.clone(),
            concerned: outcome.concerned.clone(),
            data: outcome.data.clone(),
        });
        let n = units.len();
        for ((i, mut dev), transcript) in idx.into_iter().zip(devs).zip(transcripts) {
            let _ = dev.take_end_state();
            let s = &mut states[i];
            let mine = Outcome {
                message: unit_view(&outcome, &s.unit.name, n),
                data: None,
                ..outcome.clone()
            };
            transcript.note(format!(
                "verdict (judged across {n} units of the model): {} — {}",
                mine.verdict, mine.message
            ));
            let text = evidence_header(&s.unit, model, test.as_ref(), &mine, dev.redactor())
                + &transcript.render(dev.redactor());
            let mut rec = record(
                &s.unit,
                model,
                suite,
                test.as_ref(),
                mine,
                Ran {
                    started,
                    elapsed: t0.elapsed(),
                    evidence_text: Some(text),
                },
                dev.redactor(),
            );
            rec.model_finding = Some(finding.clone());
            ctx.emit_record(rec);
            s.device = Some(dev);
        }
    }
}

/// Longest model message repeated on a unit's record; beyond it the unit's record says what
/// concerns it and points at the model finding (written once per model by the reporters).
const UNIT_VIEW_CAP: usize = 240;

/// What a unit's record of a per-model test says, in constant size whatever the fleet's size.
fn unit_view(outcome: &Outcome, unit: &str, n: usize) -> String {
    let summary = if outcome.message.len() <= UNIT_VIEW_CAP {
        outcome.message.clone()
    } else {
        let mut cut = UNIT_VIEW_CAP;
        while !outcome.message.is_char_boundary(cut) {
            cut -= 1;
        }
        format!(
            "{}… (the whole finding is the model's, in results.json model_findings)",
            &outcome.message[..cut]
        )
    };
    match &outcome.concerned {
        None => summary,
        Some(c) if c.iter().any(|u| u == unit) => format!(
            "this unit is concerned ({} of {n} units of the model): {summary}",
            c.len()
        ),
        Some(c) => format!(
            "this unit is not among the {} of {n} units concerned, but the model is judged as a whole: {summary}",
            c.len()
        ),
    }
}

fn panic_message(p: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(serial: &str, mac: &str) -> Unit {
        Unit {
            name: "u1".into(),
            serial: Some(serial.into()),
            mac: Some(mac.into()),
            address: None,
            firmware: None,
            password: None,
            vars: BTreeMap::new(),
            source: "b.toml".into(),
            lease: None,
        }
    }

    fn caps(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn identity_matches_ignoring_case_space_and_mac_separators() {
        let u = unit("SP1-7Q4K-2291", "02:5e:11:a3:40:17");
        assert_eq!(
            identity_mismatch(
                &u,
                &caps(&[("serial", " sp1-7q4k-2291 "), ("mac", "02-5E-11-A3-40-17")])
            ),
            None
        );
        // Only fields both sides have are compared.
        assert_eq!(identity_mismatch(&u, &caps(&[("model", "x")])), None);
    }

    #[test]
    fn identity_mismatch_names_both_sides() {
        let u = unit("SP1-7Q4K-2291", "02:5e:11:a3:40:17");
        let why = identity_mismatch(
            &u,
            &caps(&[("serial", "SP1-C8WD-5730"), ("mac", "02:5e:11:a3:40:17")]),
        )
        .expect("a mismatch");
        assert!(
            why.contains("SP1-7Q4K-2291") && why.contains("SP1-C8WD-5730"),
            "{why}"
        );
        assert!(!why.contains("MAC"), "the MACs agree: {why}");
    }

    #[test]
    fn a_units_view_of_a_model_finding_has_constant_size() {
        let units: Vec<String> = (0..256).map(|i| format!("unit-{i:03}")).collect();
        let long = format!("the password is derived from the MAC: {}", units.join(", "));
        let o = Outcome::fail(long).concerning(units[..200].to_vec());
        let concerned = unit_view(&o, "unit-007", 256);
        let spared = unit_view(&o, "unit-255", 256);
        assert!(
            concerned.starts_with("this unit is concerned (200 of 256"),
            "{concerned}"
        );
        assert!(
            spared.starts_with("this unit is not among the 200 of 256"),
            "{spared}"
        );
        for v in [&concerned, &spared] {
            assert!(v.len() < UNIT_VIEW_CAP + 200, "{} bytes", v.len());
        }
        // Short messages are kept whole.
        let short = Outcome::pass("all 2 units have different passwords");
        assert_eq!(unit_view(&short, "u", 2), short.message);
    }
}
