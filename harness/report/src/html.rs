//! `report.html`: the run as an assessor reads it, one self-contained page (inline CSS, no
//! network, usable and printable without JavaScript) next to `results.json`, so a CI artifact
//! or a folder on a laptop is enough to see which provisions each model meets.
//!
//! The page is rendered from `templates/report.html.j2` with minijinja, HTML auto-escaping on
//! for every value: device messages are untrusted text. This module only prepares plain view
//! data (the matrix of models × provisions, the drill-down per model and unit, the run's
//! metadata) and never builds markup itself. Evidence is linked, never embedded, and only when
//! the file is present in the output folder.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Component, Path};

use hilsec_core::results::{ModelFindingRecord, ResultRecord, UnitMeta};
use hilsec_core::test::Verdict;
use minijinja::{AutoEscape, Environment, UndefinedBehavior};
use serde::Serialize;

use crate::provisions::{self, Framework};
use crate::{ReportError, ResultsFile};

const TEMPLATE_NAME: &str = "report.html";
const TEMPLATE: &str = include_str!("../templates/report.html.j2");

/// Writes `<out>/report.html` for `results` (atomically, via crate::files::write_atomically, which is pub(crate)).
pub fn write(results: &ResultsFile, out: &Path) -> Result<(), ReportError> {
    let page = render(results, out)?;
    crate::files::write_atomically(&out.join("report.html"), |w| {
        std::io::Write::write_all(w, page.as_bytes())
    })
}

/// The page itself (tests look at it). `out` is the folder the page will sit in, used to check which evidence files exist so links are only made to files present.
pub fn render(results: &ResultsFile, out: &Path) -> Result<String, ReportError> {
    let page = Page::build(results, out);
    let mut env = Environment::new();
    env.set_auto_escape_callback(|_| AutoEscape::Html);
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.add_template(TEMPLATE_NAME, TEMPLATE)
        .map_err(template_error)?;
    env.get_template(TEMPLATE_NAME)
        .and_then(|t| t.render(&page))
        .map(without_control_characters)
        .map_err(template_error)
}

/// A device's bytes can reach messages; control characters other than tab and line breaks are
/// not allowed in HTML, so each becomes U+FFFD (escaping does not cover them).
fn without_control_characters(page: String) -> String {
    if !page
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
    {
        return page;
    }
    page.chars()
        .map(|c| {
            if c.is_control() && !matches!(c, '\t' | '\n' | '\r') {
                '\u{FFFD}'
            } else {
                c
            }
        })
        .collect()
}

fn template_error(e: minijinja::Error) -> ReportError {
    // The detail names the template line; the chain says why.
    let mut detail = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        detail.push_str(": ");
        detail.push_str(&s.to_string());
        source = s.source();
    }
    ReportError::Template { detail }
}

/// How bad a verdict is: 0 is the worst. The order of the matrix: fail, error, inconclusive,
/// pass, not_applicable.
pub fn severity(v: Verdict) -> u8 {
    match v {
        Verdict::Fail => 0,
        Verdict::Error => 1,
        Verdict::Inconclusive => 2,
        Verdict::Pass => 3,
        Verdict::NotApplicable => 4,
    }
}

/// The worst of `verdicts` (see [`severity`]); `None` when there are none.
pub fn worst(verdicts: impl IntoIterator<Item = Verdict>) -> Option<Verdict> {
    verdicts.into_iter().min_by_key(|v| severity(*v))
}

fn worse(a: Option<Verdict>, b: Verdict) -> Verdict {
    match a {
        Some(a) if severity(a) <= severity(b) => a,
        _ => b,
    }
}

/// A verdict as the page shows it: never by colour alone, always a symbol and a word.
#[derive(Debug, Serialize)]
struct VerdictView {
    /// CSS class suffix and the `data-verdict` value.
    key: &'static str,
    symbol: &'static str,
    label: &'static str,
    /// The long form, for tooltips.
    long: &'static str,
    /// What it means, for the legend.
    meaning: &'static str,
}

const VERDICTS: [VerdictView; 5] = [
    VerdictView {
        key: "fail",
        symbol: "✗",
        label: "fail",
        long: "fail: the unit does not meet the provision",
        meaning: "the unit does not meet the provision",
    },
    VerdictView {
        key: "error",
        symbol: "⚠",
        label: "error",
        long: "error: the test could not be completed (bench or harness); no judgement",
        meaning: "the test could not be completed (bench or harness); no judgement",
    },
    VerdictView {
        key: "inconclusive",
        symbol: "?",
        label: "inconclusive",
        long: "inconclusive: the evidence does not decide; a person must judge",
        meaning: "the evidence does not decide; a person must judge",
    },
    VerdictView {
        key: "pass",
        symbol: "✓",
        label: "pass",
        long: "pass: the unit meets what the test checks",
        meaning: "the unit meets what the test checks",
    },
    VerdictView {
        key: "not_applicable",
        symbol: "–",
        label: "n/a",
        long: "n/a: not applicable to this model (e.g. no such interface)",
        meaning: "not applicable to this model (e.g. no such interface)",
    },
];

fn view(v: Verdict) -> &'static VerdictView {
    &VERDICTS[usize::from(severity(v))]
}

#[derive(Serialize)]
struct Page<'a> {
    run: RunView<'a>,
    verdicts: &'static [VerdictView; 5],
    counts: Vec<CountView>,
    groups: Vec<GroupView<'a>>,
    cls_note: &'static str,
    problems: Vec<TestView<'a>>,
    models: Vec<ModelView<'a>>,
    not_automated: &'static [provisions::Manual],
    n_tests: usize,
    n_units: usize,
    n_models: usize,
    worst: Option<&'static VerdictView>,
}

#[derive(Serialize)]
struct RunView<'a> {
    tool: &'a str,
    version: &'a str,
    schema: u32,
    started: &'a str,
    finished: &'a str,
    duration: String,
    interrupted: bool,
    shard: Option<&'a str>,
    merged_from: Vec<MergedView<'a>>,
}

#[derive(Serialize)]
struct MergedView<'a> {
    dir: String,
    shard: Option<&'a str>,
    started: &'a str,
    finished: &'a str,
    interrupted: bool,
}

#[derive(Serialize)]
struct CountView {
    verdict: &'static VerdictView,
    n: usize,
}

#[derive(Serialize)]
struct GroupView<'a> {
    key: &'static str,
    title: &'static str,
    columns: Vec<ColumnView>,
    rows: Vec<RowView<'a>>,
    /// How many cells of the group have any verdict.
    evidenced: usize,
}

#[derive(Serialize)]
struct ColumnView {
    label: String,
    title: String,
    /// Not in hilsec's catalogue (a suite cites it, the catalogue has no title for it).
    uncatalogued: bool,
    /// For derived columns (CLS): what they are read from.
    from: Option<String>,
}

#[derive(Serialize)]
struct RowView<'a> {
    model: &'a str,
    anchor: String,
    cells: Vec<CellView>,
}

#[derive(Serialize)]
struct CellView {
    verdict: Option<&'static VerdictView>,
    /// The tests behind the cell and their worst verdict, for the tooltip.
    tip: String,
}

#[derive(Serialize)]
struct ModelView<'a> {
    name: &'a str,
    anchor: String,
    worst: Option<&'static VerdictView>,
    counts: Vec<CountView>,
    findings: Vec<FindingView<'a>>,
    units: Vec<UnitView<'a>>,
}

#[derive(Serialize)]
struct FindingView<'a> {
    suite: &'a str,
    test: &'a str,
    verdict: &'static VerdictView,
    message: &'a str,
    provisions: String,
    units: String,
    concerned: Option<String>,
}

#[derive(Serialize)]
struct UnitView<'a> {
    name: &'a str,
    anchor: String,
    /// Absent when the unit appears in `tests` but not in `run.units`.
    meta: Option<&'a UnitMeta>,
    board_file: Option<String>,
    board_files: Vec<BoardFileView<'a>>,
    worst: Option<&'static VerdictView>,
    counts: Vec<CountView>,
    tests: Vec<TestView<'a>>,
}

#[derive(Serialize)]
struct BoardFileView<'a> {
    path: String,
    sha256: &'a str,
}

#[derive(Serialize)]
struct TestView<'a> {
    model: &'a str,
    unit: &'a str,
    unit_anchor: String,
    suite: &'a str,
    test: &'a str,
    verdict: &'static VerdictView,
    message: &'a str,
    duration: String,
    provisions: String,
    /// A relative href to the evidence file, when it exists under the output folder.
    evidence_href: Option<String>,
    /// The evidence path the record names when the file is not there (no link is made).
    evidence_missing: Option<&'a str>,
}

/// The worst verdict per tested thing, with how many records had it.
#[derive(Default, Clone, Copy)]
struct Tally {
    worst: Option<Verdict>,
    at_worst: usize,
    total: usize,
}

impl Tally {
    fn add(&mut self, v: Verdict) {
        self.total += 1;
        match self.worst {
            Some(w) if severity(w) < severity(v) => {}
            Some(w) if w == v => self.at_worst += 1,
            _ => {
                self.worst = Some(v);
                self.at_worst = 1;
            }
        }
    }
}

/// Per provision of one model: per test, the tally of its records carrying the provision.
type ProvisionTests<'a> = HashMap<&'a str, BTreeMap<&'a str, Tally>>;

impl<'a> Page<'a> {
    fn build(results: &'a ResultsFile, out: &Path) -> Self {
        let run = &results.run;
        let mut anchors = Anchors::default();

        // Models and units in board order; units only found in `tests` come after.
        let mut model_order: Vec<&str> = Vec::new();
        let mut units_of: HashMap<&str, Vec<&str>> = HashMap::new();
        let mut unit_meta: HashMap<&str, &UnitMeta> = HashMap::new();
        let mut add_unit = |model: &'a str, unit: &'a str, order: &mut Vec<&'a str>| {
            let list = units_of.entry(model).or_insert_with(|| {
                order.push(model);
                Vec::new()
            });
            if !list.contains(&unit) {
                list.push(unit);
            }
        };
        for u in &run.units {
            unit_meta.insert(u.name.as_str(), u);
            add_unit(&u.model, &u.name, &mut model_order);
        }
        let mut records_of_unit: HashMap<(&str, &str), Vec<&ResultRecord>> = HashMap::new();
        for r in &results.tests {
            add_unit(&r.model, &r.board, &mut model_order);
            records_of_unit
                .entry((r.model.as_str(), r.board.as_str()))
                .or_default()
                .push(r);
        }
        for f in &results.model_findings {
            if !units_of.contains_key(f.model.as_str()) {
                model_order.push(&f.model);
                units_of.insert(&f.model, Vec::new());
            }
        }
        let model_anchor: HashMap<&str, String> = model_order
            .iter()
            .map(|m| (*m, anchors.make("model", m)))
            .collect();
        let mut unit_anchor: HashMap<(&str, &str), String> = HashMap::new();
        for m in &model_order {
            for u in units_of.get(m).into_iter().flatten() {
                unit_anchor.insert((*m, *u), anchors.make("unit", u));
            }
        }

        // Per model: provision -> test -> tally, from every record of the model.
        let mut by_model: HashMap<&str, ProvisionTests<'a>> = HashMap::new();
        let mut seen_provisions: BTreeMap<(Framework, &str), ()> = BTreeMap::new();
        for r in &results.tests {
            let per = by_model.entry(r.model.as_str()).or_default();
            for p in &r.provisions {
                per.entry(p.as_str())
                    .or_default()
                    .entry(r.test.as_str())
                    .or_default()
                    .add(r.verdict);
                seen_provisions.insert((provisions::split(p).0, p.as_str()), ());
            }
        }

        let groups = Framework::ALL
            .iter()
            .filter_map(|f| {
                matrix_group(
                    *f,
                    &model_order,
                    &model_anchor,
                    &by_model,
                    seen_provisions
                        .keys()
                        .filter(|(pf, _)| pf == f)
                        .map(|(_, p)| *p),
                )
            })
            .collect();

        let findings_of = |m: &str| -> Vec<FindingView<'a>> {
            results
                .model_findings
                .iter()
                .filter(|f| f.model == m)
                .map(finding_view)
                .collect()
        };

        let mut problems = Vec::new();
        let models = model_order
            .iter()
            .map(|m| {
                let units: Vec<UnitView> = units_of
                    .get(m)
                    .into_iter()
                    .flatten()
                    .map(|u| {
                        let anchor = unit_anchor.get(&(*m, *u)).cloned().unwrap_or_default();
                        let recs = records_of_unit
                            .get(&(*m, *u))
                            .map(Vec::as_slice)
                            .unwrap_or(&[]);
                        let tests: Vec<TestView> =
                            recs.iter().map(|r| test_view(r, &anchor, out)).collect();
                        let meta = unit_meta.get(u).copied().filter(|meta| meta.model == *m);
                        UnitView {
                            name: u,
                            anchor,
                            meta,
                            board_file: meta.map(|mt| mt.board_file.display().to_string()),
                            board_files: meta
                                .map(|mt| {
                                    mt.board_files
                                        .iter()
                                        .map(|b| BoardFileView {
                                            path: b.path.display().to_string(),
                                            sha256: &b.sha256,
                                        })
                                        .collect()
                                })
                                .unwrap_or_default(),
                            worst: worst(recs.iter().map(|r| r.verdict)).map(view),
                            counts: counts(recs.iter().map(|r| r.verdict)),
                            tests,
                        }
                    })
                    .collect();
                for u in &units {
                    problems.extend(
                        u.tests
                            .iter()
                            .filter(|t| severity_of_key(t.verdict.key) <= 2)
                            .map(TestView::clone_view),
                    );
                }
                let all = records_of_model(&results.tests, m);
                ModelView {
                    name: m,
                    anchor: model_anchor.get(m).cloned().unwrap_or_default(),
                    worst: worst(all.clone().map(|r| r.verdict)).map(view),
                    counts: counts(all.map(|r| r.verdict)),
                    findings: findings_of(m),
                    units,
                }
            })
            .collect();
        // Worst first; within a verdict, board order.
        problems.sort_by_key(|t| severity_of_key(t.verdict.key));

        let c = &run.counts;
        Page {
            run: RunView {
                tool: &run.tool,
                version: &run.version,
                schema: run.schema,
                started: &run.started,
                finished: &run.finished,
                duration: human_duration(run.duration_ms),
                interrupted: run.interrupted,
                shard: run.shard.as_deref(),
                merged_from: run
                    .merged_from
                    .iter()
                    .map(|m| MergedView {
                        dir: m.dir.clone(),
                        shard: m.shard.as_deref(),
                        started: &m.started,
                        finished: &m.finished,
                        interrupted: m.interrupted,
                    })
                    .collect(),
            },
            verdicts: &VERDICTS,
            counts: [
                (Verdict::Fail, c.fail),
                (Verdict::Error, c.error),
                (Verdict::Inconclusive, c.inconclusive),
                (Verdict::Pass, c.pass),
                (Verdict::NotApplicable, c.not_applicable),
            ]
            .into_iter()
            .map(|(v, n)| CountView {
                verdict: view(v),
                n,
            })
            .collect(),
            groups,
            cls_note: provisions::CLS_MAPPING_NOTE,
            problems,
            models,
            not_automated: provisions::NOT_AUTOMATED,
            n_tests: results.tests.len(),
            n_units: units_of.values().map(Vec::len).sum(),
            n_models: model_order.len(),
            worst: worst(results.tests.iter().map(|r| r.verdict)).map(view),
        }
    }
}

fn records_of_model<'r>(
    tests: &'r [ResultRecord],
    model: &'r str,
) -> impl Iterator<Item = &'r ResultRecord> + Clone {
    tests.iter().filter(move |r| r.model == model)
}

fn severity_of_key(key: &str) -> u8 {
    VERDICTS
        .iter()
        .position(|v| v.key == key)
        .and_then(|i| u8::try_from(i).ok())
        .unwrap_or(u8::MAX)
}

impl TestView<'_> {
    fn clone_view(&self) -> Self {
        TestView {
            model: self.model,
            unit: self.unit,
            unit_anchor: self.unit_anchor.clone(),
            suite: self.suite,
            test: self.test,
            verdict: self.verdict,
            message: self.message,
            duration: self.duration.clone(),
            provisions: self.provisions.clone(),
            evidence_href: self.evidence_href.clone(),
            evidence_missing: self.evidence_missing,
        }
    }
}

/// One framework's table: a column per catalogued provision, then those the records cite that
/// the catalogue lacks; `None` when the group would have no column.
fn matrix_group<'a>(
    f: Framework,
    models: &[&'a str],
    model_anchor: &HashMap<&str, String>,
    by_model: &HashMap<&str, ProvisionTests<'a>>,
    cited: impl Iterator<Item = &'a str>,
) -> Option<GroupView<'a>> {
    // Each column: its header and the record provisions it is read from.
    let mut columns: Vec<(ColumnView, Vec<&str>)> = Vec::new();
    if f == Framework::ClsLevel1 {
        for r in provisions::CLS_LEVEL_1 {
            let from = r
                .en_303_645
                .iter()
                .map(|p| provisions::split(p).1)
                .collect::<Vec<_>>()
                .join(", ");
            columns.push((
                ColumnView {
                    label: r.label.to_string(),
                    title: r.title.to_string(),
                    uncatalogued: false,
                    from: Some(format!("EN 303 645 {from}")),
                },
                r.en_303_645.to_vec(),
            ));
        }
    } else {
        for p in f.catalogue() {
            columns.push((
                ColumnView {
                    label: p.label().to_string(),
                    title: p.title.to_string(),
                    uncatalogued: false,
                    from: None,
                },
                vec![p.id],
            ));
        }
        let mut extra: Vec<&str> = cited.filter(|p| provisions::find(p).is_none()).collect();
        extra.sort_by(|a, b| natural_cmp(a, b));
        for p in extra {
            columns.push((
                ColumnView {
                    label: provisions::split(p).1.to_string(),
                    title: String::new(),
                    uncatalogued: true,
                    from: None,
                },
                vec![p],
            ));
        }
    }
    if columns.is_empty() {
        return None;
    }
    let mut evidenced = 0;
    let rows = models
        .iter()
        .map(|m| {
            let per = by_model.get(m);
            let cells = columns
                .iter()
                .map(|(_, ids)| {
                    let mut tests: BTreeMap<&str, Tally> = BTreeMap::new();
                    for id in ids {
                        for (t, tally) in per.and_then(|p| p.get(id)).into_iter().flatten() {
                            tests
                                .entry(t)
                                .and_modify(|e| *e = merge_tally(*e, *tally))
                                .or_insert(*tally);
                        }
                    }
                    let v = tests
                        .values()
                        .filter_map(|t| t.worst)
                        .fold(None, |acc, v| Some(worse(acc, v)));
                    if v.is_some() {
                        evidenced += 1;
                    }
                    CellView {
                        verdict: v.map(view),
                        tip: tests
                            .iter()
                            .filter_map(|(t, tally)| {
                                tally.worst.map(|w| {
                                    format!(
                                        "{t}: {} ({} of {} records)",
                                        view(w).label,
                                        tally.at_worst,
                                        tally.total
                                    )
                                })
                            })
                            .collect::<Vec<_>>()
                            .join("; "),
                    }
                })
                .collect();
            RowView {
                model: m,
                anchor: model_anchor.get(m).cloned().unwrap_or_default(),
                cells,
            }
        })
        .collect();
    Some(GroupView {
        key: f.key(),
        title: f.title(),
        columns: columns.into_iter().map(|(c, _)| c).collect(),
        rows,
        evidenced,
    })
}

/// One test under two provisions of a derived column: its records are counted once (a test
/// cites the same provisions on every unit, so both tallies are of the same records; should
/// they differ, the worse one is kept).
fn merge_tally(a: Tally, b: Tally) -> Tally {
    let rank = |t: &Tally| t.worst.map(severity).unwrap_or(u8::MAX);
    match rank(&a).cmp(&rank(&b)) {
        std::cmp::Ordering::Less => a,
        std::cmp::Ordering::Greater => b,
        std::cmp::Ordering::Equal if a.total >= b.total => a,
        std::cmp::Ordering::Equal => b,
    }
}

/// Orders `5.3-2` before `5.3-10`: digit runs compare as numbers.
fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    fn chunks(s: &str) -> Vec<(bool, &str)> {
        let mut out = Vec::new();
        let mut start = 0;
        let bytes = s.as_bytes();
        for i in 1..=bytes.len() {
            if i == bytes.len() || bytes[i].is_ascii_digit() != bytes[start].is_ascii_digit() {
                out.push((bytes[start].is_ascii_digit(), &s[start..i]));
                start = i;
            }
        }
        out
    }
    let (ca, cb) = (chunks(a), chunks(b));
    for (x, y) in ca.iter().zip(cb.iter()) {
        let ord = match (x, y) {
            ((true, xs), (true, ys)) => {
                let (xt, yt) = (xs.trim_start_matches('0'), ys.trim_start_matches('0'));
                xt.len().cmp(&yt.len()).then_with(|| xt.cmp(yt))
            }
            ((_, xs), (_, ys)) => xs.cmp(ys),
        };
        if ord.is_ne() {
            return ord;
        }
    }
    ca.len().cmp(&cb.len())
}

fn finding_view(f: &ModelFindingRecord) -> FindingView<'_> {
    FindingView {
        suite: &f.suite,
        test: &f.test,
        verdict: view(f.verdict),
        message: &f.message,
        provisions: f.provisions.join(", "),
        units: f.units.join(", "),
        concerned: f.concerned.as_ref().map(|c| c.join(", ")),
    }
}

fn test_view<'a>(r: &'a ResultRecord, unit_anchor: &str, out: &Path) -> TestView<'a> {
    let (evidence_href, evidence_missing) = match r.evidence.as_deref() {
        Some(ev) => match evidence_href(ev, out) {
            Some(href) => (Some(href), None),
            None => (None, Some(ev)),
        },
        None => (None, None),
    };
    TestView {
        model: &r.model,
        unit: &r.board,
        unit_anchor: unit_anchor.to_string(),
        suite: &r.suite,
        test: &r.test,
        verdict: view(r.verdict),
        message: &r.message,
        duration: human_duration(r.duration_ms),
        provisions: r.provisions.join(", "),
        evidence_href,
        evidence_missing,
    }
}

/// A relative href for the evidence file `ev` (relative to `out`), only when it is a plain
/// relative path (no `..`, not absolute) to a file that exists under `out`.
fn evidence_href(ev: &str, out: &Path) -> Option<String> {
    let rel = Path::new(ev);
    let plain = rel.components().all(|c| matches!(c, Component::Normal(_)));
    if ev.is_empty() || !plain {
        return None;
    }
    // A regular file inside the folder: no link through a symbolic link out of it (a folder
    // downloaded from elsewhere).
    let path = out.join(rel);
    let regular = fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_file());
    let inside = match (path.canonicalize(), out.canonicalize()) {
        (Ok(p), Ok(o)) => p.starts_with(o),
        _ => false,
    };
    if !regular || !inside {
        return None;
    }
    let segments: Vec<String> = rel
        .components()
        .map(|c| percent_encode(&c.as_os_str().to_string_lossy()))
        .collect();
    Some(segments.join("/"))
}

/// Percent-encodes one path segment for a relative URL (everything but unreserved characters),
/// so `#`, `?` or `%` in a unit or test name cannot cut the link short.
fn percent_encode(segment: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        }
    }
    out
}

fn counts(verdicts: impl Iterator<Item = Verdict>) -> Vec<CountView> {
    let mut n = [0usize; 5];
    for v in verdicts {
        n[usize::from(severity(v))] += 1;
    }
    VERDICTS
        .iter()
        .zip(n)
        .filter(|(_, n)| *n > 0)
        .map(|(verdict, n)| CountView { verdict, n })
        .collect()
}

/// `850 ms`, `12.3 s`, `4 min 05 s`, `2 h 03 min`.
fn human_duration(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms} ms")
    } else if ms < 60_000 {
        format!("{:.1} s", ms as f64 / 1000.0)
    } else if ms < 3_600_000 {
        format!("{} min {:02} s", ms / 60_000, (ms / 1000) % 60)
    } else {
        format!("{} h {:02} min", ms / 3_600_000, (ms / 60_000) % 60)
    }
}

/// Unique HTML ids made of names (which may hold anything).
#[derive(Default)]
struct Anchors {
    used: HashMap<String, usize>,
    issued: std::collections::HashSet<String>,
}

impl Anchors {
    fn make(&mut self, kind: &str, name: &str) -> String {
        let mut slug: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .collect();
        slug.truncate(60);
        let base = format!("{kind}-{}", slug.trim_matches('-'));
        // "x y" and "x-y" share a slug, and "x-y-2" is a name of its own: count up until the
        // id was never issued.
        let n = self.used.entry(base.clone()).or_insert(0);
        loop {
            *n += 1;
            let id = if *n == 1 {
                base.clone()
            } else {
                format!("{base}-{n}")
            };
            if self.issued.insert(id.clone()) {
                return id;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hilsec_core::results::{BoardFileMeta, Counts, MergedRun, RunMeta};
    use std::path::PathBuf;

    fn unit(name: &str, model: &str) -> UnitMeta {
        UnitMeta {
            name: name.into(),
            model: model.into(),
            manufacturer: Some("Sim Inc.".into()),
            serial: Some(format!("SN-{name}")),
            mac: None,
            firmware: Some("1.0.0".into()),
            board_file: PathBuf::from(format!("boards/{model}.toml")),
            emulated: true,
            board_files: vec![BoardFileMeta {
                path: PathBuf::from(format!("boards/{model}.toml")),
                sha256: "ab".repeat(32),
            }],
        }
    }

    fn rec(
        board: &str,
        model: &str,
        test: &str,
        verdict: Verdict,
        provisions: &[&str],
    ) -> ResultRecord {
        ResultRecord {
            board: board.into(),
            model: model.into(),
            suite: test.split('.').next().unwrap_or("suite").into(),
            test: test.into(),
            verdict,
            provisions: provisions.iter().map(|p| p.to_string()).collect(),
            message: format!("{test} on {board}"),
            duration_ms: 1234,
            evidence: Some(format!("evidence/{board}/{test}.log")),
            started_at: None,
            data: None,
        }
    }

    fn file(units: Vec<UnitMeta>, tests: Vec<ResultRecord>) -> ResultsFile {
        let mut counts = Counts::default();
        for t in &tests {
            counts.add(t.verdict);
        }
        ResultsFile {
            run: RunMeta {
                schema: 2,
                tool: "hilsec".into(),
                version: "0.1.0".into(),
                started: "2026-01-01T00:00:00.000Z".into(),
                finished: "2026-01-01T00:01:00.000Z".into(),
                duration_ms: 60_000,
                interrupted: false,
                units,
                counts,
                shard: None,
                merged_from: vec![],
            },
            tests,
            model_findings: vec![],
        }
    }

    const P51: &str = "EN 303 645 5.1-1";

    #[test]
    fn worst_verdict_follows_fail_error_inconclusive_pass_na() {
        use Verdict::*;
        assert_eq!(worst([]), None);
        assert_eq!(worst([Pass, NotApplicable]), Some(Pass));
        assert_eq!(worst([NotApplicable]), Some(NotApplicable));
        assert_eq!(
            worst([Pass, Inconclusive, NotApplicable]),
            Some(Inconclusive)
        );
        assert_eq!(worst([Inconclusive, Error, Pass]), Some(Error));
        assert_eq!(worst([Error, Fail, Pass]), Some(Fail));
        let mut t = Tally::default();
        for v in [Pass, Fail, Pass, Fail, Error] {
            t.add(v);
        }
        assert_eq!((t.worst, t.at_worst, t.total), (Some(Fail), 2, 5));
    }

    /// The matrix cell of `model` under the provision column `label` of group `key`.
    fn cell<'p>(page: &'p Page, key: &str, model: &str, label: &str) -> &'p CellView {
        let g = page.groups.iter().find(|g| g.key == key).expect("group");
        let col = g
            .columns
            .iter()
            .position(|c| c.label == label)
            .expect("column");
        let row = g.rows.iter().find(|r| r.model == model).expect("row");
        &row.cells[col]
    }

    #[test]
    fn cells_take_the_worst_verdict_of_the_models_records() {
        let tmp = tempfile_dir();
        let f = file(
            vec![unit("a1", "A"), unit("a2", "A"), unit("b1", "B")],
            vec![
                rec(
                    "a1",
                    "A",
                    "password.x",
                    Verdict::Pass,
                    &[P51, "PSTI Sch.1 1(2)"],
                ),
                rec("a2", "A", "password.x", Verdict::Fail, &[P51]),
                rec("a1", "A", "password.y", Verdict::Error, &[P51]),
                rec("b1", "B", "password.x", Verdict::Pass, &[P51]),
                rec(
                    "b1",
                    "B",
                    "password.z",
                    Verdict::NotApplicable,
                    &["EN 303 645 5.1-5"],
                ),
                rec(
                    "b1",
                    "B",
                    "disclosure.p",
                    Verdict::Inconclusive,
                    &["EN 303 645 5.2-1", "RFC 9116"],
                ),
            ],
        );
        let page = Page::build(&f, tmp.path());
        let key = |c: &CellView| c.verdict.map(|v| v.key);
        assert_eq!(key(cell(&page, "en303645", "A", "5.1-1")), Some("fail"));
        assert_eq!(key(cell(&page, "en303645", "B", "5.1-1")), Some("pass"));
        assert_eq!(
            key(cell(&page, "en303645", "B", "5.1-5")),
            Some("not_applicable")
        );
        assert_eq!(
            key(cell(&page, "en303645", "A", "5.1-5")),
            None,
            "no test: empty"
        );
        assert_eq!(key(cell(&page, "psti", "A", "1(2)")), Some("pass"));
        assert_eq!(
            key(cell(&page, "other", "B", "RFC 9116")),
            Some("inconclusive")
        );
        let tip = &cell(&page, "en303645", "A", "5.1-1").tip;
        assert!(tip.contains("password.x: fail (1 of 2 records)"), "{tip}");
        assert!(tip.contains("password.y: error (1 of 1 records)"), "{tip}");
        // CLS Level 1 is derived from EN 303 645.
        assert_eq!(
            key(cell(&page, "cls1", "A", "Unique default passwords")),
            Some("fail")
        );
        assert_eq!(
            key(cell(&page, "cls1", "B", "Vulnerability disclosure")),
            Some("inconclusive")
        );
        assert_eq!(key(cell(&page, "cls1", "B", "Support period")), None);
        // Problems: worst first.
        let p: Vec<&str> = page.problems.iter().map(|t| t.verdict.key).collect();
        assert_eq!(p, ["fail", "error", "inconclusive"]);
    }

    #[test]
    fn uncatalogued_provisions_still_get_a_column() {
        let tmp = tempfile_dir();
        let f = file(
            vec![unit("a1", "A")],
            vec![
                rec(
                    "a1",
                    "A",
                    "t.one",
                    Verdict::Fail,
                    &["EN 303 645 5.3-10", "EN 303 645 9.9-10"],
                ),
                rec("a1", "A", "t.two", Verdict::Pass, &["EN 303 645 9.9-2"]),
            ],
        );
        let page = Page::build(&f, tmp.path());
        let g = page
            .groups
            .iter()
            .find(|g| g.key == "en303645")
            .expect("en");
        let extra: Vec<&str> = g
            .columns
            .iter()
            .filter(|c| c.uncatalogued)
            .map(|c| c.label.as_str())
            .collect();
        assert_eq!(extra, ["9.9-2", "9.9-10"]);
        assert!(
            page.groups.iter().all(|g| g.key != "other"),
            "no other references cited"
        );
    }

    #[test]
    fn messages_are_escaped() {
        let tmp = tempfile_dir();
        let mut r = rec("a1", "A<b>", "password.x", Verdict::Fail, &[P51]);
        r.message = "banner: <script>alert('x')</script> & \"quoted\"".into();
        let mut f = file(vec![unit("a1", "A<b>")], vec![r]);
        f.run.units[0].serial = Some("<img src=x onerror=alert(1)>".into());
        let html = render(&f, tmp.path()).expect("render");
        assert!(!html.contains("<script>alert"), "raw script in the page");
        assert!(!html.contains("<img src=x"), "raw markup from a serial");
        assert!(
            html.contains("&lt;script&gt;alert("),
            "escaped message shown"
        );
        assert!(html.contains("A&lt;b&gt;"), "escaped model name");
        // The page's own inline script is the only one.
        assert_eq!(html.matches("<script").count(), 1);
    }

    #[test]
    fn evidence_is_linked_only_when_the_file_exists() {
        let tmp = tempfile_dir();
        let out = tmp.path();
        std::fs::create_dir_all(out.join("evidence/a1")).expect("mkdir");
        std::fs::write(out.join("evidence/a1/password.x.log"), "log").expect("write");
        let mut odd = rec("a1", "A", "password.y", Verdict::Pass, &[P51]);
        odd.evidence = Some("../outside.log".into());
        let f = file(
            vec![unit("a1", "A")],
            vec![
                rec("a1", "A", "password.x", Verdict::Pass, &[P51]),
                rec("a1", "A", "password.z", Verdict::Pass, &[P51]),
                odd,
            ],
        );
        // minijinja escapes `/` as `&#x2f;` (the same to a browser).
        let html = render(&f, out).expect("render").replace("&#x2f;", "/");
        assert!(
            html.contains("href=\"evidence/a1/password.x.log\""),
            "link to the file"
        );
        assert!(
            !html.contains("href=\"evidence/a1/password.z.log\""),
            "no link to a missing file"
        );
        assert!(
            html.contains("evidence/a1/password.z.log"),
            "the missing path is named"
        );
        assert!(!html.contains("href=\"../outside.log\""));
        assert_eq!(evidence_href("evidence/u #1/t?.log", out), None);
        std::fs::create_dir_all(out.join("evidence/u #1")).expect("mkdir");
        std::fs::write(out.join("evidence/u #1/t?.log"), "log").expect("write");
        assert_eq!(
            evidence_href("evidence/u #1/t?.log", out).as_deref(),
            Some("evidence/u%20%231/t%3F.log")
        );
    }

    #[test]
    fn run_metadata_is_shown() {
        let tmp = tempfile_dir();
        let mut f = file(
            vec![unit("a1", "A")],
            vec![rec("a1", "A", "password.x", Verdict::Pass, &[P51])],
        );
        f.run.interrupted = true;
        f.run.shard = Some("2/4".into());
        f.run.merged_from = vec![MergedRun {
            dir: "shard-1".into(),
            shard: Some("1/4".into()),
            started: "2026-01-01T00:00:00.000Z".into(),
            finished: "2026-01-01T00:02:00.000Z".into(),
            interrupted: false,
        }];
        f.model_findings.push(ModelFindingRecord {
            model: "A".into(),
            suite: "password".into(),
            test: "password.unique-across-units".into(),
            verdict: Verdict::Fail,
            provisions: vec![P51.into()],
            message: "two units share a password".into(),
            units: vec!["a1".into()],
            concerned: Some(vec!["a1".into()]),
            data: None,
        });
        let html = render(&f, tmp.path())
            .expect("render")
            .replace("&#x2f;", "/");
        for needle in [
            "hilsec 0.1.0",
            "interrupted",
            "2/4",
            "shard-1",
            "1 min 00 s",
            "two units share a password",
            &"ab".repeat(32),
            "boards/A.toml",
            "SN-a1",
            "Not covered by automation",
            "EN 303 645 5.1-3",
        ] {
            assert!(html.contains(needle), "{needle} missing");
        }
    }

    #[test]
    fn an_empty_run_renders() {
        let tmp = tempfile_dir();
        let f = file(vec![], vec![]);
        let html = render(&f, tmp.path()).expect("render");
        assert!(html.contains("No test records"));
        write(&f, tmp.path()).expect("write");
        assert!(tmp.path().join("report.html").is_file());
    }

    #[test]
    fn units_and_models_known_only_from_records_render() {
        let tmp = tempfile_dir();
        let mut f = file(
            vec![],
            vec![rec("ghost-1", "Ghost", "password.x", Verdict::Pass, &[P51])],
        );
        f.model_findings.push(ModelFindingRecord {
            model: "Lonely".into(),
            suite: "password".into(),
            test: "password.unique-across-units".into(),
            verdict: Verdict::Error,
            provisions: vec![],
            message: "no unit answered".into(),
            units: vec![],
            concerned: None,
            data: None,
        });
        let page = Page::build(&f, tmp.path());
        let models: Vec<&str> = page.models.iter().map(|m| m.name).collect();
        assert_eq!(models, ["Ghost", "Lonely"]);
        assert!(page.models[0].units[0].meta.is_none());
        let html = render(&f, tmp.path()).expect("render");
        assert!(html.contains("not listed in the run"));
        assert!(html.contains("no unit answered"));
    }

    #[test]
    fn a_large_fleet_renders_quickly() {
        let tmp = tempfile_dir();
        let models = ["M0", "M1", "M2", "M3"];
        let units: Vec<UnitMeta> = (0..256)
            .map(|i| unit(&format!("unit-{i}"), models[i % 4]))
            .collect();
        let mut tests = Vec::new();
        for u in &units {
            for t in 0..60 {
                let v = [Verdict::Pass, Verdict::Fail, Verdict::NotApplicable][t % 3];
                tests.push(rec(
                    &u.name,
                    &u.model,
                    &format!("suite.test-{t}"),
                    v,
                    &[P51, "TS 103 701 5.1-1-2"],
                ));
            }
        }
        let f = file(units, tests);
        let t0 = std::time::Instant::now();
        let html = render(&f, tmp.path()).expect("render");
        let took = t0.elapsed();
        eprintln!("rendered 15,360 records in {took:?}, {} bytes", html.len());
        assert!(html.len() > 1_000_000);
        // Well under a second in a release build; debug builds (tests) are several times slower.
        let limit = if cfg!(debug_assertions) { 10.0 } else { 1.0 };
        assert!(took.as_secs_f64() < limit, "{took:?} for 15,360 records");
    }

    #[test]
    fn natural_order_and_durations() {
        let mut v = vec!["5.3-10", "5.3-2", "5.1-1-2 a", "5.1-1-2"];
        v.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(v, ["5.1-1-2", "5.1-1-2 a", "5.3-2", "5.3-10"]);
        assert_eq!(human_duration(850), "850 ms");
        assert_eq!(human_duration(12_345), "12.3 s");
        assert_eq!(human_duration(245_000), "4 min 05 s");
        assert_eq!(human_duration(7_380_000), "2 h 03 min");
        let mut a = Anchors::default();
        assert_eq!(a.make("unit", "Sim Cam #1"), "unit-sim-cam--1");
        assert_eq!(a.make("unit", "Sim Cam #1"), "unit-sim-cam--1-2");
        // A name whose slug is an earlier duplicate's id gets an id of its own.
        let mut a = Anchors::default();
        let ids = [
            a.make("model", "x y"),
            a.make("model", "x-y"),
            a.make("model", "x-y-2"),
        ];
        assert_eq!(
            ids.len(),
            ids.iter().collect::<std::collections::HashSet<_>>().len(),
            "{ids:?}"
        );
        assert_eq!(
            without_control_characters("a\x1b[31mb\n".into()),
            "a\u{FFFD}[31mb\n"
        );
    }

    fn tempfile_dir() -> TempDir {
        TempDir::new()
    }

    /// A temporary folder removed on drop (the crate has no tempfile dependency).
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> Self {
            use std::sync::atomic::{AtomicUsize, Ordering};
            static N: AtomicUsize = AtomicUsize::new(0);
            let p = std::env::temp_dir().join(format!(
                "hilsec-html-test-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&p).expect("temp dir");
            TempDir(p)
        }
        fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}
