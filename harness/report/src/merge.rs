//! `hilsec merge`: the output folders of several runs (the shards of one run, spread over CI
//! runners) made into one folder that looks as if one run had written it.
//!
//! Only whole runs are merged: each input needs its `results.json` (a run killed before the
//! end has only its journal). Inputs must come from the same tool version and results schema,
//! and no unit may appear in two inputs (the per-model tests judged a model's units together
//! in one run; a unit twice would be two different answers for one device). `results.json`,
//! `junit.xml` and `report.html` are rendered from the merged [`ResultsFile`] the way a run
//! renders its own; `journal.jsonl` is the inputs' journals one after the other; `evidence/`
//! the union of the inputs' (units are distinct, so their files are too).

use std::collections::HashMap;
use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use hilsec_core::results::{Counts, MergedRun, ResultsError, ResultsFile, RunMeta};

use crate::files::write_whole_run;
use crate::ReportError;

/// Why inputs cannot be merged, or the merged folder not written.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error("nothing to merge: name the output folders of the runs")]
    NoInputs,
    #[error(
        "{}: cannot read results.json there: {source}; pass the --out folder of a finished \
         `hilsec run` (a run killed before its end leaves only journal.jsonl)",
        dir.display()
    )]
    Unreadable {
        dir: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}:{source}; pass the --out folder of a `hilsec run` or `hilsec merge`", path.display())]
    Invalid {
        path: PathBuf,
        #[source]
        source: ResultsError,
    },
    #[error(
        "{} was written by {first_writer} and {} by {writer}; merge only results of one hilsec \
         version: re-run the shards with the same build",
        first.display(), dir.display()
    )]
    VersionMismatch {
        first: PathBuf,
        /// e.g. "hilsec 0.1.0 (results schema 2)".
        first_writer: String,
        dir: PathBuf,
        writer: String,
    },
    #[error(
        "unit {unit} is in both {} and {}: shards of one run never share a unit; merge each \
         unit's results once (did two shards run with different --shard counts, or is a folder \
         named twice?)",
        first.display(), second.display()
    )]
    OverlappingUnits {
        unit: String,
        first: PathBuf,
        second: PathBuf,
    },
    #[error(
        "model {model:?} has units in both {} and {}: a model's units must be judged in one run \
         (the per-model tests compare them); shard with `run --shard I/N`, which keeps a \
         model's units together",
        first.display(), second.display()
    )]
    SplitModel {
        model: String,
        first: PathBuf,
        second: PathBuf,
    },
    #[error(
        "{} is shard {shard} but {} is shard {other}: merge the shards of one split (the same \
         N everywhere, each index once)",
        dir.display(), other_dir.display()
    )]
    MixedShards {
        dir: PathBuf,
        shard: String,
        other_dir: PathBuf,
        other: String,
    },
    #[error(
        "--out {} is an input or inside one ({}); write the merged results to a folder of \
         their own",
        out.display(), input.display()
    )]
    OutIsInput { out: PathBuf, input: PathBuf },
    #[error("{}: cannot read it: {source}; every input's evidence/ and journal.jsonl must be readable", path.display())]
    UnreadableInput {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot copy evidence from {}: {source}", path.display())]
    Copy {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Report(#[from] ReportError),
}

/// What was merged.
#[derive(Debug)]
pub struct Merged {
    pub results: ResultsFile,
    /// Evidence files copied.
    pub evidence_files: usize,
    /// What the merge could not vouch for, e.g. shards missing from a split.
    pub warnings: Vec<String>,
}

/// One input, read and checked.
struct Input {
    dir: PathBuf,
    results: ResultsFile,
}

/// Reads and checks every input, then writes the merged folder `out`.
pub fn merge(dirs: &[PathBuf], out: &Path) -> Result<Merged, MergeError> {
    if dirs.is_empty() {
        return Err(MergeError::NoInputs);
    }
    refuse_out_in_inputs(dirs, out)?;
    let mut inputs = Vec::with_capacity(dirs.len());
    for dir in dirs {
        let path = dir.join("results.json");
        let text = fs::read_to_string(&path).map_err(|source| MergeError::Unreadable {
            dir: dir.clone(),
            source,
        })?;
        let results = ResultsFile::from_json_str(&text)
            .map_err(|source| MergeError::Invalid { path, source })?;
        inputs.push(Input {
            dir: dir.clone(),
            results,
        });
    }
    check(&inputs)?;
    let warnings = check_shards(&inputs)?;
    order_by_shard(&mut inputs);
    for input in &inputs {
        readable_input(&input.dir.join("evidence"), true)?;
        readable_input(&input.dir.join("journal.jsonl"), false)?;
    }
    let results = merged_results(&inputs);

    // Nothing was written up to here; from now on a failure is the output's (exit 3).

    fs::create_dir_all(out).map_err(|source| MergeError::Write {
        path: out.to_path_buf(),
        source,
    })?;
    let evidence = out.join("evidence");
    if evidence.is_dir() {
        // Evidence of an earlier merge into this folder must not be mistaken for these runs'.
        fs::remove_dir_all(&evidence).map_err(|source| MergeError::Write {
            path: evidence.clone(),
            source,
        })?;
    }
    let mut evidence_files = 0;
    for input in &inputs {
        evidence_files += copy_tree(&input.dir.join("evidence"), &evidence)?;
    }
    concat_journals(&inputs, &out.join("journal.jsonl"))?;
    write_whole_run(&results, out)?;
    Ok(Merged {
        results,
        evidence_files,
        warnings,
    })
}

/// `--out` must be neither an input nor inside one (copying an input's evidence into itself
/// would never end). An `--out` that does not exist yet is judged by its nearest existing
/// ancestor.
fn refuse_out_in_inputs(dirs: &[PathBuf], out: &Path) -> Result<(), MergeError> {
    let mut existing = out.to_path_buf();
    let mut rest = Vec::new();
    let out_canon = loop {
        if let Ok(c) = existing.canonicalize() {
            break Some(rest.iter().rev().fold(c, |p: PathBuf, part| p.join(part)));
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                existing = if parent.as_os_str().is_empty() {
                    PathBuf::from(".")
                } else {
                    parent.to_path_buf()
                };
            }
            _ => break None,
        }
    };
    let Some(out_canon) = out_canon else {
        return Ok(());
    };
    for d in dirs {
        if let Ok(c) = d.canonicalize() {
            if out_canon.starts_with(&c) {
                return Err(MergeError::OutIsInput {
                    out: out.to_path_buf(),
                    input: d.clone(),
                });
            }
        }
    }
    Ok(())
}

/// An input's evidence folder or journal: absent is fine (a run with no evidence), present
/// must be readable, checked before anything is written.
fn readable_input(path: &Path, dir: bool) -> Result<(), MergeError> {
    let result = if dir {
        fs::read_dir(path).map(|_| ())
    } else {
        fs::File::open(path).and_then(|f| {
            if f.metadata()?.is_file() {
                Ok(())
            } else {
                Err(io::Error::other("not a regular file"))
            }
        })
    };
    match result {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(MergeError::UnreadableInput {
            path: path.to_path_buf(),
            source,
        }),
        Ok(()) => Ok(()),
    }
}

/// Shards of one split: all say `I/N` with the same N and distinct I; inputs without a shard
/// are whole runs of their own. Missing shards are a warning (a shard with no model writes an
/// empty folder, so a missing one is more likely a lost job).
fn check_shards(inputs: &[Input]) -> Result<Vec<String>, MergeError> {
    let mut seen: Vec<(usize, usize, &Input)> = Vec::new();
    for input in inputs {
        let Some(shard) = input.results.run.shard.as_deref() else {
            continue;
        };
        let parsed = shard
            .split_once('/')
            .and_then(|(a, b)| Some((a.parse::<usize>().ok()?, b.parse::<usize>().ok()?)));
        let Some((index, count)) = parsed else {
            continue;
        };
        if let Some((_, _, other)) = seen.iter().find(|(i, n, _)| *n != count || *i == index) {
            return Err(MergeError::MixedShards {
                dir: input.dir.clone(),
                shard: shard.to_string(),
                other_dir: other.dir.clone(),
                other: other.results.run.shard.clone().unwrap_or_default(),
            });
        }
        seen.push((index, count, input));
    }
    let mut warnings = Vec::new();
    if let Some((_, count, _)) = seen.first() {
        let missing: Vec<String> = (1..=*count)
            .filter(|i| !seen.iter().any(|(j, _, _)| j == i))
            .map(|i| format!("{i}/{count}"))
            .collect();
        if !missing.is_empty() {
            warnings.push(format!(
                "shards {} are not among the inputs: the merged results lack their models",
                missing.join(", ")
            ));
        }
    }
    Ok(warnings)
}

/// Same tool, version and schema everywhere; no unit twice, and no model in two inputs. A
/// unit counts as an input's when its unit list, a test record or a per-model finding names it.
fn check(inputs: &[Input]) -> Result<(), MergeError> {
    let first = &inputs[0];
    let mut unit_owner: HashMap<&str, &Path> = HashMap::new();
    let mut model_owner: HashMap<&str, &Path> = HashMap::new();
    for input in inputs {
        let (a, b) = (&first.results.run, &input.results.run);
        if (&a.tool, &a.version, a.schema) != (&b.tool, &b.version, b.schema) {
            let writer =
                |m: &RunMeta| format!("{} {} (results schema {})", m.tool, m.version, m.schema);
            return Err(MergeError::VersionMismatch {
                first: first.dir.clone(),
                first_writer: writer(a),
                dir: input.dir.clone(),
                writer: writer(b),
            });
        }
        let r = &input.results;
        let mut units: Vec<&str> = b.units.iter().map(|u| u.name.as_str()).collect();
        units.extend(r.tests.iter().map(|t| t.board.as_str()));
        units.extend(
            r.model_findings
                .iter()
                .flat_map(|f| f.units.iter().map(String::as_str)),
        );
        units.sort_unstable();
        units.dedup();
        for unit in units {
            if let Some(prev) = unit_owner.insert(unit, input.dir.as_path()) {
                return Err(MergeError::OverlappingUnits {
                    unit: unit.to_string(),
                    first: prev.to_path_buf(),
                    second: input.dir.clone(),
                });
            }
        }
        let mut models: Vec<&str> = b.units.iter().map(|u| u.model.as_str()).collect();
        models.extend(r.tests.iter().map(|t| t.model.as_str()));
        models.sort_unstable();
        models.dedup();
        for model in models {
            if let Some(prev) = model_owner.insert(model, input.dir.as_path()) {
                return Err(MergeError::SplitModel {
                    model: model.to_string(),
                    first: prev.to_path_buf(),
                    second: input.dir.clone(),
                });
            }
        }
    }
    Ok(())
}

/// When every input is a shard of the same count, puts them in shard order (a shell glob puts
/// `shard-10` before `shard-2`); otherwise keeps the order given.
fn order_by_shard(inputs: &mut [Input]) {
    fn shard(i: &Input) -> Option<(usize, usize)> {
        let (a, b) = i.results.run.shard.as_deref()?.split_once('/')?;
        Some((a.parse().ok()?, b.parse().ok()?))
    }
    let shards: Option<Vec<(usize, usize)>> = inputs.iter().map(shard).collect();
    if shards.is_some_and(|s| s.windows(2).all(|w| w[0].1 == w[1].1)) {
        inputs.sort_by_key(|i| shard(i).map(|(index, _)| index));
    }
}

/// The merged file: units, tests and findings in input order; the run spans the earliest start
/// to the latest finish (shards run side by side on different runners).
fn merged_results(inputs: &[Input]) -> ResultsFile {
    let first = &inputs[0].results.run;
    // RFC 3339 UTC as hilsec writes it compares as text.
    let started = inputs
        .iter()
        .map(|i| i.results.run.started.clone())
        .min()
        .unwrap_or_default();
    let finished = inputs
        .iter()
        .map(|i| i.results.run.finished.clone())
        .max()
        .unwrap_or_default();
    let duration_ms = match (
        humantime::parse_rfc3339_weak(&started),
        humantime::parse_rfc3339_weak(&finished),
    ) {
        (Ok(s), Ok(f)) => f.duration_since(s).map(|d| d.as_millis() as u64).ok(),
        _ => None,
    }
    .unwrap_or_else(|| {
        inputs
            .iter()
            .map(|i| i.results.run.duration_ms)
            .max()
            .unwrap_or(0)
    });
    let mut counts = Counts::default();
    let mut units = Vec::new();
    let mut tests = Vec::new();
    let mut model_findings = Vec::new();
    let mut merged_from = Vec::new();
    for input in inputs {
        let r = &input.results;
        units.extend(r.run.units.iter().cloned());
        for t in &r.tests {
            counts.add(t.verdict);
        }
        tests.extend(r.tests.iter().cloned());
        model_findings.extend(r.model_findings.iter().cloned());
        if r.run.merged_from.is_empty() {
            merged_from.push(MergedRun {
                dir: input.dir.to_string_lossy().into_owned(),
                shard: r.run.shard.clone(),
                started: r.run.started.clone(),
                finished: r.run.finished.clone(),
                interrupted: r.run.interrupted,
            });
        } else {
            // A merge of merges lists the runs themselves.
            merged_from.extend(r.run.merged_from.iter().cloned());
        }
    }
    ResultsFile {
        run: RunMeta {
            schema: first.schema,
            tool: first.tool.clone(),
            version: first.version.clone(),
            started,
            finished,
            duration_ms,
            interrupted: inputs.iter().any(|i| i.results.run.interrupted),
            units,
            counts,
            shard: None,
            merged_from,
        },
        tests,
        model_findings,
    }
}

/// Copies the files under `from` (if it exists) into `to`, keeping relative paths; symbolic
/// links are not followed. Returns the number of files copied.
fn copy_tree(from: &Path, to: &Path) -> Result<usize, MergeError> {
    let entries = match fs::read_dir(from) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(source) => {
            return Err(MergeError::Copy {
                path: from.to_path_buf(),
                source,
            })
        }
    };
    fs::create_dir_all(to).map_err(|source| MergeError::Write {
        path: to.to_path_buf(),
        source,
    })?;
    let mut copied = 0;
    for entry in entries {
        let entry = entry.map_err(|source| MergeError::Copy {
            path: from.to_path_buf(),
            source,
        })?;
        let kind = entry.file_type().map_err(|source| MergeError::Copy {
            path: entry.path(),
            source,
        })?;
        let dest = to.join(entry.file_name());
        if dest.exists() {
            // Units are distinct, so their files are: a clash means a unit's evidence folder
            // holds another's name. Keep the first rather than overwrite it silently.
            continue;
        }
        if kind.is_dir() {
            copied += copy_tree(&entry.path(), &dest)?;
        } else if kind.is_file() {
            fs::copy(entry.path(), &dest).map_err(|source| MergeError::Write {
                path: dest.clone(),
                source,
            })?;
            copied += 1;
        }
    }
    Ok(copied)
}

/// The inputs' journals one after the other (each ending in a newline), written through a
/// temporary file so a reader never sees half of it.
fn concat_journals(inputs: &[Input], path: &Path) -> Result<(), MergeError> {
    let tmp = path.with_extension("jsonl.tmp");
    let write = || -> io::Result<()> {
        let mut w = io::BufWriter::new(fs::File::create(&tmp)?);
        for input in inputs {
            let journal = input.dir.join("journal.jsonl");
            let mut file = match fs::File::open(&journal) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => {
                    return Err(io::Error::new(
                        e.kind(),
                        format!("reading {}: {e}", journal.display()),
                    ))
                }
            };
            let len = file.metadata()?.len();
            io::copy(&mut file, &mut w)?;
            if len > 0 {
                use std::io::{Read as _, Seek as _, SeekFrom};
                let mut last = [0u8; 1];
                file.seek(SeekFrom::End(-1))?;
                file.read_exact(&mut last)?;
                if last[0] != b'\n' {
                    w.write_all(b"\n")?;
                }
            }
        }
        w.flush()
    };
    let done = write().and_then(|()| fs::rename(&tmp, path));
    if let Err(source) = done {
        let _ = fs::remove_file(&tmp);
        return Err(MergeError::Write {
            path: path.to_path_buf(),
            source,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use hilsec_core::results::{ResultRecord, UnitMeta};
    use hilsec_core::test::Verdict;

    struct Scratch(PathBuf);
    impl Scratch {
        fn new(tag: &str) -> Self {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default();
            let p = std::env::temp_dir()
                .join(format!("hilsec-merge-{tag}-{}-{nanos}", std::process::id()));
            fs::create_dir_all(&p).expect("scratch");
            Scratch(p)
        }
    }
    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    /// Writes a run folder with one unit and one test, as a shard `shard`.
    fn run_dir(
        root: &Path,
        name: &str,
        unit: &str,
        verdict: Verdict,
        shard: &str,
        start: &str,
    ) -> PathBuf {
        let dir = root.join(name);
        let ev = format!("evidence/{unit}/password.per-unit-password-works.log");
        fs::create_dir_all(dir.join("evidence").join(unit)).expect("mkdir");
        fs::write(dir.join(&ev), format!("transcript of {unit}\n")).expect("evidence");
        fs::write(
            dir.join("journal.jsonl"),
            format!("{{\"board\":\"{unit}\"}}"),
        )
        .expect("journal");
        let mut counts = Counts::default();
        counts.add(verdict);
        let file = ResultsFile {
            run: RunMeta {
                schema: 2,
                tool: "hilsec".into(),
                version: "0.1.0".into(),
                started: format!("2026-12-02T10:{start}:00.000Z"),
                finished: format!("2026-12-02T10:{start}:30.000Z"),
                duration_ms: 30_000,
                interrupted: false,
                units: vec![UnitMeta {
                    name: unit.into(),
                    model: format!("model of {unit}"),
                    manufacturer: None,
                    serial: None,
                    mac: None,
                    firmware: None,
                    board_file: format!("boards/{unit}.toml").into(),
                    emulated: true,
                    board_files: Vec::new(),
                }],
                counts,
                shard: Some(shard.into()),
                merged_from: Vec::new(),
            },
            tests: vec![ResultRecord {
                board: unit.into(),
                model: format!("model of {unit}"),
                suite: "password".into(),
                test: "password.per-unit-password-works".into(),
                verdict,
                provisions: vec!["EN 303 645 5.1-1".into()],
                message: String::new(),
                duration_ms: 5,
                evidence: Some(ev),
                started_at: None,
                data: None,
            }],
            model_findings: Vec::new(),
        };
        fs::write(
            dir.join("results.json"),
            serde_json::to_string(&file).expect("json"),
        )
        .expect("results");
        dir
    }

    #[test]
    fn merges_shards_in_shard_order_with_evidence_and_journals() {
        let s = Scratch::new("ok");
        // Named so that a glob would put shard 10 first.
        let b = run_dir(&s.0, "shard-10", "unit-b", Verdict::Fail, "10/10", "05");
        let a = run_dir(&s.0, "shard-2", "unit-a", Verdict::Pass, "2/10", "00");
        let out = s.0.join("merged");
        let merged = merge(&[b, a], &out).expect("merge");
        let run = &merged.results.run;
        let names: Vec<&str> = run.units.iter().map(|u| u.name.as_str()).collect();
        assert_eq!(names, ["unit-a", "unit-b"]);
        assert_eq!((run.counts.pass, run.counts.fail), (1, 1));
        assert_eq!(run.started, "2026-12-02T10:00:00.000Z");
        assert_eq!(run.finished, "2026-12-02T10:05:30.000Z");
        assert_eq!(run.duration_ms, 330_000);
        assert_eq!(run.merged_from.len(), 2);
        assert_eq!(run.shard, None);
        assert_eq!(merged.evidence_files, 2);
        for t in &merged.results.tests {
            let ev = t.evidence.as_deref().expect("evidence");
            assert!(out.join(ev).is_file(), "{ev} not copied");
        }
        let journal = fs::read_to_string(out.join("journal.jsonl")).expect("journal");
        assert_eq!(journal.lines().count(), 2, "{journal}");
        let again = ResultsFile::from_json_str(
            &fs::read_to_string(out.join("results.json")).expect("results.json"),
        )
        .expect("typed");
        assert_eq!(again, merged.results);
        assert!(out.join("junit.xml").is_file());
    }

    #[test]
    fn refuses_overlapping_units_other_versions_and_out_among_inputs() {
        let s = Scratch::new("refuse");
        let a = run_dir(&s.0, "a", "unit-a", Verdict::Pass, "1/2", "00");
        let a2 = run_dir(&s.0, "a2", "unit-a", Verdict::Pass, "2/2", "01");
        let e = merge(&[a.clone(), a2], &s.0.join("m1")).expect_err("overlap");
        assert!(
            matches!(&e, MergeError::OverlappingUnits { unit, .. } if unit == "unit-a"),
            "{e}"
        );
        assert!(!s.0.join("m1").exists(), "nothing written when refused");

        let b = run_dir(&s.0, "b", "unit-b", Verdict::Pass, "2/2", "01");
        let path = b.join("results.json");
        let text = fs::read_to_string(&path)
            .expect("read")
            .replace("\"0.1.0\"", "\"0.2.0\"");
        fs::write(&path, text).expect("write");
        let e = merge(&[a.clone(), b], &s.0.join("m2")).expect_err("version");
        assert!(e.to_string().contains("0.2.0"), "{e}");

        let e = merge(std::slice::from_ref(&a), &a).expect_err("out is input");
        assert!(matches!(e, MergeError::OutIsInput { .. }), "{e}");

        let e = merge(&[s.0.join("nowhere")], &s.0.join("m3")).expect_err("missing");
        assert!(e.to_string().contains("results.json"), "{e}");

        // Inside an input (its evidence folder): refused, nothing copied into the input.
        let c = run_dir(&s.0, "c", "unit-c", Verdict::Pass, "2/2", "02");
        let e = merge(&[a.clone(), c.clone()], &a.join("evidence/merged")).expect_err("inside");
        assert!(matches!(e, MergeError::OutIsInput { .. }), "{e}");
        assert!(!a.join("evidence/merged").exists());
    }

    #[test]
    fn refuses_a_model_split_over_inputs_and_mixed_splits() {
        let s = Scratch::new("split");
        let a = run_dir(&s.0, "a", "unit-a", Verdict::Pass, "1/2", "00");
        let b = run_dir(&s.0, "b", "unit-b", Verdict::Pass, "2/2", "01");
        // unit-b's records say it is of unit-a's model.
        let path = b.join("results.json");
        let text = fs::read_to_string(&path)
            .expect("read")
            .replace("model of unit-b", "model of unit-a");
        fs::write(&path, text).expect("write");
        let e = merge(&[a.clone(), b], &s.0.join("m1")).expect_err("split model");
        assert!(matches!(e, MergeError::SplitModel { .. }), "{e}");

        let c = run_dir(&s.0, "c", "unit-c", Verdict::Pass, "1/3", "01");
        let e = merge(&[a.clone(), c], &s.0.join("m2")).expect_err("mixed");
        assert!(matches!(e, MergeError::MixedShards { .. }), "{e}");

        // A missing shard is a warning, not a refusal.
        let merged = merge(std::slice::from_ref(&a), &s.0.join("m3")).expect("one of two");
        assert!(
            merged.warnings.iter().any(|w| w.contains("2/2")),
            "{:?}",
            merged.warnings
        );
    }
}
