//! `hilsec merge DIR... --out DIR`: the shards of one run (or any runs of distinct units) into
//! one output folder, through `hilsec_report::merge`.
//!
//! Exit status: 2 when the inputs are refused (missing or unreadable results.json, evidence or
//! journal; different tool versions; a unit or a model in two inputs; shards of different
//! splits or one shard twice; --out an input or inside one) and nothing was written; 3 when
//! writing failed; otherwise the merged verdicts' status as `run` would give it: 1 any `fail`,
//! 3 any `error` or an interrupted input, else 0.

use std::path::{Path, PathBuf};

use hilsec_report::merge::{merge, MergeError};

pub fn run(dirs: &[PathBuf], out: &Path) -> i32 {
    match merge(dirs, out) {
        Ok(merged) => {
            for w in &merged.warnings {
                eprintln!("hilsec merge: warning: {w}");
            }
            let run = &merged.results.run;
            let c = &run.counts;
            println!(
                "hilsec merge: {} runs, {} units, {} tests ({} pass, {} fail, {} error, {} \
                 inconclusive, {} not applicable), {} evidence files -> {}",
                run.merged_from.len(),
                run.units.len(),
                merged.results.tests.len(),
                c.pass,
                c.fail,
                c.error,
                c.inconclusive,
                c.not_applicable,
                merged.evidence_files,
                out.display()
            );
            if c.fail > 0 {
                1
            } else if c.error > 0 || run.interrupted {
                3
            } else {
                0
            }
        }
        Err(e @ (MergeError::Write { .. } | MergeError::Copy { .. } | MergeError::Report(_))) => {
            eprintln!("hilsec merge: {e}");
            3
        }
        Err(e) => {
            eprintln!("hilsec merge: {e}");
            2
        }
    }
}
