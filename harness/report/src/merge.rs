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
    #[error("--out {} is also an input; write the merged results to a folder of their own", out.display())]
    OutIsInput { out: PathBuf },
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
    if let Ok(out_canon) = out.canonicalize() {
        if dirs
            .iter()
            .any(|d| d.canonicalize().is_ok_and(|c| c == out_canon))
        {
            return Err(MergeError::OutIsInput {
                out: out.to_path_buf(),
            });
        }
    }
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
    order_by_shard(&mut inputs);
    let results = merged_results(&inputs);

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
    })
}

/// Same tool, version and schema everywhere; no unit twice.
fn check(inputs: &[Input]) -> Result<(), MergeError> {
    let first = &inputs[0];
    let mut owner: HashMap<&str, &Path> = HashMap::new();
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
        for unit in &b.units {
            if let Some(prev) = owner.insert(unit.name.as_str(), input.dir.as_path()) {
                return Err(MergeError::OverlappingUnits {
                    unit: unit.name.clone(),
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
                dir: input.dir.clone(),
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
            return Err(MergeError::Unreadable {
                dir: from.to_path_buf(),
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
        let entry = entry.map_err(|source| MergeError::Unreadable {
            dir: from.to_path_buf(),
            source,
        })?;
        let kind = entry.file_type().map_err(|source| MergeError::Unreadable {
            dir: entry.path(),
            source,
        })?;
        let dest = to.join(entry.file_name());
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
                Err(e) => return Err(e),
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
    }
}
