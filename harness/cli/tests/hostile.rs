//! Misbehaving devices: flooding, silent, garbage-sending and disconnecting units each get an
//! `error`/`inconclusive` verdict with a reason; the run finishes, memory stays bounded.

mod common;

use std::time::Duration;

use common::*;

const DEVICE_TESTS: [&str; 3] = [
    "password.universal-default-rejected",
    "password.unit-password-accepted",
    "password.brute-force-throttled",
];

/// Largest resident set of any finished child process of this test process (KiB).
fn children_peak_rss_kib() -> i64 {
    // SAFETY: getrusage only writes into the struct we pass.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    assert_eq!(rc, 0, "getrusage");
    usage.ru_maxrss
}

#[test]
fn hostile_units_get_verdicts_not_hangs() {
    require_simdev();
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("out");
    let out_s = out.to_str().expect("utf-8");
    let run = hilsec(
        &[
            "run",
            "--board",
            "fixtures/boards/hostile.toml",
            "--out",
            out_s,
        ],
        tmp.path(),
        Duration::from_secs(120),
    );
    assert_eq!(
        run.code(),
        3,
        "errors and no fail: exit 3; stderr:\n{}",
        run.stderr
    );

    let results = results(&out);
    for unit in [
        "hostile-flood",
        "hostile-silent",
        "hostile-garbage",
        "hostile-disconnect",
    ] {
        for t in DEVICE_TESTS {
            let r = record(&results, unit, t);
            let v = r["verdict"].as_str().expect("verdict");
            assert!(v == "error" || v == "inconclusive", "{unit} {t}: {r}");
            assert!(
                !r["message"].as_str().unwrap_or("").is_empty(),
                "{unit} {t} says why"
            );
        }
    }
    let msg = |u: &str| {
        record(&results, u, DEVICE_TESTS[1])["message"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    assert!(
        msg("hostile-silent").contains("within"),
        "a timeout: {}",
        msg("hostile-silent")
    );
    assert!(
        msg("hostile-disconnect").contains("exited"),
        "the unit went away: {}",
        msg("hostile-disconnect")
    );
    let garbage: Vec<String> = DEVICE_TESTS
        .iter()
        .map(|t| {
            record(&results, "hostile-garbage", t)["message"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    assert!(
        garbage.iter().any(|m| m.contains("\\x")),
        "garbage is shown escaped: {garbage:?}"
    );

    // The flood is held to the transcript and match-buffer bounds: no process of the run
    // (harness or device) grew anywhere near the amount of data the flood produced.
    let peak_mib = children_peak_rss_kib() / 1024;
    assert!(
        peak_mib < 200,
        "peak RSS {peak_mib} MiB under a flooding device"
    );

    // Every record made it to every artefact.
    assert_eq!(
        journal(&out).len(),
        results["tests"].as_array().expect("tests").len()
    );
    assert!(out.join("junit.xml").is_file());
}
