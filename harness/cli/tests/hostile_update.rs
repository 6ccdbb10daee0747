//! Units that misbehave during an update: one drops the link mid-transfer, one answers after
//! the timeout. Each gets an `error` for the positive control and `inconclusive` for the
//! rejection tests (which cannot be judged without it); the run continues and finishes.

mod common;

use std::time::Duration;

use common::*;

#[test]
fn update_drop_and_late_answer_get_verdicts_and_the_run_continues() {
    require_simdev();
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("out");
    let run = hilsec(
        &[
            "run",
            "--board",
            "fixtures/boards/hostile-update.toml",
            "--suite",
            "update",
            "--out",
            out.to_str().expect("utf-8"),
        ],
        tmp.path(),
        Duration::from_secs(120),
    );
    assert_eq!(run.code(), 3, "errors, no fail; stderr:\n{}", run.stderr);
    let results = results(&out);
    let drop = record(&results, "hostile-update-drop", "update.accepts-genuine");
    assert_eq!(drop["verdict"], "error", "{drop}");
    assert!(
        drop["message"].as_str().unwrap_or("").contains("exited"),
        "{drop}"
    );
    let late = record(&results, "hostile-late-answer", "update.accepts-genuine");
    assert_eq!(late["verdict"], "error", "{late}");
    assert!(
        late["message"].as_str().unwrap_or("").contains("within 1s"),
        "{late}"
    );
    for t in ["update.rejects-unsigned", "update.rejects-rollback"] {
        // The unit that dropped out has exited: its remaining tests say so at once.
        let r = record(&results, "hostile-update-drop", t);
        assert_eq!(r["verdict"], "error", "{r}");
        assert!(
            r["message"].as_str().unwrap_or("").contains("exited"),
            "{r}"
        );
        // The late one is alive but its positive control failed: nothing can be judged.
        assert_eq!(
            verdict(&results, "hostile-late-answer", t),
            "inconclusive",
            "hostile-late-answer {t}"
        );
    }
    assert_eq!(journal(&out).len(), 20, "every test of both units recorded");
}
