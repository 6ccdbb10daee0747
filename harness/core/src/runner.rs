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
use crate::emulator::{self, RunningEmulator};
use crate::event::{rfc3339, Event, TestRecord, UnitInfo};
use crate::secret::Redactor;
use crate::test::{Outcome, Scope, Suite, Test, Verdict};

/// How to run.
#[derive(Debug, Clone, Default)]
pub struct RunConfig {
    /// Most units driven at once (0: all).
    pub jobs: usize,
    /// Overrides every test's own timeout (mostly for tests of the harness itself).
    pub test_timeout: Option<Duration>,
    /// What the run provides to units (e.g. the embedded MQTT broker).
    pub env: crate::device::RunEnv,
}

/// What a run produced, in the order tests finished.
#[derive(Debug, Default)]
pub struct RunSummary {
    pub records: Vec<TestRecord>,
    pub interrupted: bool,
}

impl RunSummary {
    /// Exit status per the CLI contract: 0 clean, 1 a fail, 3 an error and no fail.
    pub fn exit_code(&self) -> i32 {
        if self.records.iter().any(|r| r.verdict == Verdict::Fail) {
            1
        } else if self.interrupted || self.records.iter().any(|r| r.verdict == Verdict::Error) {
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
    }
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
            r.push(rec.clone());
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
    let ctx = Arc::new(Ctx {
        events: events.clone(),
        cancel: cancel.clone(),
        cfg,
        records: std::sync::Mutex::new(Vec::new()),
    });

    let mut handles = Vec::new();
    for (model, units) in groups {
        let ctx = ctx.clone();
        let tests = tests.clone();
        let sem = sem.clone();
        handles.push(tokio::spawn(run_model_group(model, units, tests, ctx, sem)));
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
    emulator: Option<RunningEmulator>,
    start_error: Option<String>,
}

async fn run_model_group(
    model: Arc<Model>,
    units: Vec<Unit>,
    tests: Vec<(&'static str, Arc<dyn Test>)>,
    ctx: Arc<Ctx>,
    sem: Arc<Semaphore>,
) {
    let mut unit_tasks = Vec::new();
    for unit in units {
        let model = model.clone();
        let tests = tests.clone();
        let ctx = ctx.clone();
        let sem = sem.clone();
        unit_tasks.push(tokio::spawn(async move {
            let _permit = sem.acquire_owned().await.ok();
            run_unit_phase(unit, model, &tests, &ctx).await
        }));
    }
    let mut states = Vec::new();
    for t in unit_tasks {
        match t.await {
            Ok(s) => states.push(s),
            Err(e) => {
                // The unit's task itself died: nothing to keep; its tests are reported as errors
                // by the model phase below only if we still know the unit, which we do not.
                eprintln!("hilsec: internal error in a unit task: {e}");
            }
        }
    }

    run_model_phase(&model, &mut states, &tests, &ctx).await;

    for s in states {
        if let Some(e) = s.emulator {
            e.stop().await;
        }
        let _ = ctx.events.send(Event::UnitFinished { unit: s.unit.name });
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
    };
    if ctx.cancel.is_cancelled() {
        return state;
    }

    // Bring the unit up: start its emulator, if any.
    let mut emulator_vars = BTreeMap::new();
    if let Some(e) = &model.emulator {
        let probe = Device::new(unit.clone(), model.clone(), &BTreeMap::new(), &ctx.cfg.env);
        let started = tokio::select! {
            r = emulator::start(e, probe.globals()) => Some(r),
            _ = ctx.cancel.cancelled() => None,
        };
        match started {
            Some(Ok(em)) => {
                emulator_vars = em.vars.clone();
                state.emulator = Some(em);
            }
            Some(Err(err)) => state.start_error = Some(probe.redactor().redact(&err.to_string())),
            None => return state,
        }
    }
    let mut dev = Device::new(unit.clone(), model.clone(), &emulator_vars, &ctx.cfg.env);

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
        if let Some(reason) = test.not_applicable(&model) {
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
        if let Some(err) = &state.start_error {
            let o = Outcome::error(format!("the unit did not start: {err}"));
            ctx.emit_record(record(
                &unit,
                &model,
                suite,
                test.as_ref(),
                o,
                Ran {
                    started,
                    elapsed: t0.elapsed(),
                    evidence_text: None,
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
        let timeout = ctx.cfg.test_timeout.unwrap_or(info.timeout);
        let body = AssertUnwindSafe(test.run_unit(&mut dev)).catch_unwind();
        let outcome = tokio::select! {
            r = tokio::time::timeout(timeout, body) => match r {
                Ok(Ok(o)) => o,
                Ok(Err(panic)) => Outcome::error(format!("the test panicked (a harness bug): {}", panic_message(&panic))),
                Err(_) => Outcome::error(format!("the test did not finish within its {timeout:?} timeout")),
            },
            _ = ctx.cancel.cancelled() => Outcome::error("run interrupted before the test finished"),
        };
        let outcome = annotate_exit(outcome, &mut state.emulator).await;
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
    state.device = Some(dev);
    state
}

/// A unit whose process died explains many errors at once: say so. A link that broke because
/// the process is exiting is noticed before the process is reaped, so wait a moment for it.
async fn annotate_exit(o: Outcome, em: &mut Option<RunningEmulator>) -> Outcome {
    if o.verdict != Verdict::Error {
        return o;
    }
    let Some(e) = em.as_mut() else {
        return o;
    };
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
        // Units that never came up get an error; the others are judged together.
        for s in states
            .iter()
            .filter(|s| s.device.is_none() || s.start_error.is_some())
        {
            let why = s
                .start_error
                .clone()
                .unwrap_or_else(|| "the unit was not started".into());
            ctx.emit_record(record(
                &s.unit,
                model,
                suite,
                test.as_ref(),
                Outcome::error(format!("the unit did not start: {why}")),
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
            if s.start_error.is_none() {
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
        let n = devs.len();
        for ((i, dev), transcript) in idx.into_iter().zip(devs).zip(transcripts) {
            let s = &mut states[i];
            transcript.note(format!(
                "verdict (judged across {n} units of the model): {} — {}",
                outcome.verdict, outcome.message
            ));
            let text = evidence_header(&s.unit, model, test.as_ref(), &outcome, &redactor)
                + &transcript.render(&redactor);
            ctx.emit_record(record(
                &s.unit,
                model,
                suite,
                test.as_ref(),
                outcome.clone(),
                Ran {
                    started,
                    elapsed: t0.elapsed(),
                    evidence_text: Some(text),
                },
                &redactor,
            ));
            s.device = Some(dev);
        }
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
