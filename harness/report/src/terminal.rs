//! The terminal view: live progress per unit on a TTY, one plain line per test elsewhere (CI
//! logs), and a final table with every non-passing result and its reason.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use hilsec_core::event::{Event, UnitInfo};
use hilsec_core::test::Verdict;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::files::Counts;
use crate::{ReportError, Reporter};

pub struct TerminalReporter {
    live: bool,
    out_dir: PathBuf,
    multi: Option<MultiProgress>,
    bars: BTreeMap<String, ProgressBar>,
    units: Vec<UnitInfo>,
    counts: BTreeMap<String, Counts>,
    problems: Vec<String>,
    /// (model, test) of per-model findings already listed.
    model_findings_seen: std::collections::BTreeSet<(String, String)>,
    /// Column widths: the longest unit name and model name of the run.
    unit_w: usize,
    model_w: usize,
}

impl TerminalReporter {
    /// Live progress only when standard error is a terminal and `CI` is not set.
    pub fn new(out_dir: PathBuf) -> Self {
        let live = std::io::stderr().is_terminal() && std::env::var_os("CI").is_none();
        TerminalReporter {
            live,
            out_dir,
            multi: None,
            bars: BTreeMap::new(),
            units: Vec::new(),
            counts: BTreeMap::new(),
            problems: Vec::new(),
            model_findings_seen: Default::default(),
            unit_w: 12,
            model_w: 12,
        }
    }

    fn println(&self, line: &str) {
        match &self.multi {
            Some(m) => {
                let _ = m.println(line);
            }
            None => {
                let mut o = std::io::stdout().lock();
                let _ = writeln!(o, "{line}");
            }
        }
    }
}

fn tag(v: Verdict) -> &'static str {
    match v {
        Verdict::Pass => "PASS ",
        Verdict::Fail => "FAIL ",
        Verdict::Inconclusive => "INCON",
        Verdict::NotApplicable => "N/A  ",
        Verdict::Error => "ERROR",
    }
}

impl Reporter for TerminalReporter {
    fn on_event(&mut self, event: &Event) -> Result<(), ReportError> {
        match event {
            Event::RunStarted { units, planned, .. } => {
                self.units = units.clone();
                self.unit_w = units
                    .iter()
                    .map(|u| u.name.len())
                    .max()
                    .unwrap_or(0)
                    .max(12);
                self.model_w = units
                    .iter()
                    .map(|u| u.model.len())
                    .max()
                    .unwrap_or(0)
                    .max(12);
                let mut models: Vec<&str> = units.iter().map(|u| u.model.as_str()).collect();
                models.sort_unstable();
                models.dedup();
                self.println(&format!(
                    "hilsec: running on {} unit{} of {} model{}",
                    units.len(),
                    if units.len() == 1 { "" } else { "s" },
                    models.len(),
                    if models.len() == 1 { "" } else { "s" }
                ));
                if self.live {
                    let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
                    let template = format!(
                        "{{prefix:>{}}} [{{bar:24}}] {{pos}}/{{len}} {{wide_msg}}",
                        self.unit_w
                    );
                    let style = ProgressStyle::with_template(&template)
                        .unwrap_or_else(|_| ProgressStyle::default_bar())
                        .progress_chars("=> ");
                    for (unit, n) in planned {
                        let bar = multi.add(ProgressBar::new(*n as u64));
                        bar.set_style(style.clone());
                        bar.set_prefix(unit.clone());
                        bar.set_message("waiting");
                        self.bars.insert(unit.clone(), bar);
                    }
                    self.multi = Some(multi);
                }
            }
            Event::UnitStarted { unit } => {
                if let Some(b) = self.bars.get(unit) {
                    b.set_message("starting");
                }
            }
            Event::TestStarted { unit, test } => {
                if let Some(b) = self.bars.get(unit) {
                    b.set_message(test.clone());
                }
            }
            Event::Progress { unit, activity } => {
                // Only a live display shows it; plain (CI) output stays one line per test.
                if let Some(b) = self.bars.get(unit) {
                    b.set_message(activity.clone());
                }
            }
            Event::TestFinished(r) => {
                self.counts
                    .entry(r.board.clone())
                    .or_default()
                    .add(r.verdict);
                let line = format!(
                    "{} {:<uw$} {:<40} {:>6} ms",
                    tag(r.verdict),
                    r.board,
                    r.test,
                    r.duration_ms,
                    uw = self.unit_w
                );
                let line = if r.verdict == Verdict::Pass {
                    line
                } else if r.verdict == Verdict::NotApplicable {
                    // Counted in the table; the reason is in the results, not the summary.
                    format!("{line}  {}", r.message)
                } else if let Some(f) = &r.model_finding {
                    // A per-model finding is listed once for the model, not once per unit.
                    if self
                        .model_findings_seen
                        .insert((f.model.clone(), f.test.clone()))
                    {
                        self.problems.push(format!(
                            "{} {} (model, {} units) {}: {}",
                            tag(f.verdict),
                            f.model,
                            f.units.len(),
                            f.test,
                            f.message
                        ));
                    }
                    format!("{line}  {}", r.message)
                } else {
                    self.problems.push(format!(
                        "{} {} {}: {}",
                        tag(r.verdict),
                        r.board,
                        r.test,
                        r.message
                    ));
                    format!("{line}  {}", r.message)
                };
                match self.bars.get(&r.board) {
                    Some(b) => {
                        b.inc(1);
                        if r.verdict != Verdict::Pass {
                            b.println(line);
                        }
                    }
                    None => self.println(&line),
                }
            }
            Event::UnitFinished { unit } => {
                if let Some(b) = self.bars.get(unit) {
                    b.finish_with_message("done");
                }
            }
            Event::RunFinished {
                interrupted,
                duration,
            } => {
                if let Some(m) = self.multi.take() {
                    let _ = m.clear();
                }
                let mut o = std::io::stdout().lock();
                let _ = writeln!(o);
                let _ = writeln!(
                    o,
                    "{:<uw$} {:<mw$} {:>5} {:>5} {:>6} {:>5} {:>6}",
                    "unit",
                    "model",
                    "pass",
                    "fail",
                    "incon",
                    "n/a",
                    "error",
                    uw = self.unit_w,
                    mw = self.model_w
                );
                let mut total = Counts::default();
                for u in &self.units {
                    let c = self.counts.get(&u.name).cloned().unwrap_or_default();
                    let _ = writeln!(
                        o,
                        "{:<uw$} {:<mw$} {:>5} {:>5} {:>6} {:>5} {:>6}",
                        u.name,
                        u.model,
                        c.pass,
                        c.fail,
                        c.inconclusive,
                        c.not_applicable,
                        c.error,
                        uw = self.unit_w,
                        mw = self.model_w
                    );
                    total.pass += c.pass;
                    total.fail += c.fail;
                    total.inconclusive += c.inconclusive;
                    total.not_applicable += c.not_applicable;
                    total.error += c.error;
                }
                let _ = writeln!(
                    o,
                    "{:<uw$} {:<mw$} {:>5} {:>5} {:>6} {:>5} {:>6}",
                    "total",
                    "",
                    total.pass,
                    total.fail,
                    total.inconclusive,
                    total.not_applicable,
                    total.error,
                    uw = self.unit_w,
                    mw = self.model_w
                );
                if !self.problems.is_empty() {
                    let _ = writeln!(o, "\nnot passed (not applicable ones: see results.json):");
                    for p in &self.problems {
                        let _ = writeln!(o, "  {p}");
                    }
                }
                let _ = writeln!(
                    o,
                    "\n{}in {:.1} s; results in {}/ (report.html, junit.xml, results.json, journal.jsonl, evidence/)",
                    if *interrupted { "INTERRUPTED " } else { "" },
                    duration.as_secs_f64(),
                    self.out_dir.display()
                );
            }
        }
        Ok(())
    }
}
