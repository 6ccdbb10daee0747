//! `hilsec report DIR`: (re)writes `DIR/report.html`, the provision report, from
//! `DIR/results.json`, e.g. for a folder an older version wrote, or one copied from CI. A run and
//! a merge write the page themselves; this command only reads what they left.
//!
//! Exit status: 0 written (its path printed); 2 `DIR/results.json` missing, unreadable or not a
//! hilsec results.json (nothing written); 3 the page could not be written.

use std::io::ErrorKind;
use std::path::Path;

use hilsec_core::results::ResultsFile;

pub fn run(dir: &Path) -> i32 {
    let path = dir.join("results.json");
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            eprintln!(
                "hilsec report: {} does not exist: give the output folder of `hilsec run` or \
                 `hilsec merge` (the one holding results.json)",
                path.display()
            );
            return 2;
        }
        Err(e) => {
            eprintln!(
                "hilsec report: cannot read {}: {e}; check the folder's permissions",
                path.display()
            );
            return 2;
        }
    };
    let results = match ResultsFile::from_json_str(&text) {
        Ok(r) => r,
        Err(e) => {
            eprintln!(
                "hilsec report: {}:{e}; it must be a results.json written by `hilsec run` or \
                 `hilsec merge` (run again to write a fresh one)",
                path.display()
            );
            return 2;
        }
    };
    match hilsec_report::html::write(&results, dir) {
        Ok(()) => {
            println!("{}", dir.join("report.html").display());
            0
        }
        Err(e) => {
            eprintln!(
                "hilsec report: {e}; nothing was changed in {} (check free space and \
                 permissions)",
                dir.display()
            );
            3
        }
    }
}
