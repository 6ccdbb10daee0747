//! The built-in simulated fleet end to end: the verdicts the foundation promises, and the
//! artefacts (results.json, junit.xml, journal.jsonl, evidence) agreeing with each other.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;

const PASSWORD_TESTS: [&str; 10] = [
    "password.universal-default-rejected",
    "password.unit-password-accepted",
    "password.unique-across-units",
    "password.not-derived-from-identity",
    "password.no-counter-pattern",
    "password.not-common",
    "password.complexity",
    "password.brute-force-throttled",
    "password.no-undeclared-surfaces",
    "password.broker-requires-auth",
];

const UPDATE_TESTS: [&str; 10] = [
    "update.accepts-genuine",
    "update.rejects-payload-bitflip",
    "update.rejects-header-bitflip",
    "update.rejects-signature-bitflip",
    "update.rejects-truncate",
    "update.rejects-unsigned",
    "update.rejects-wrong-key",
    "update.rejects-transplant-signature",
    "update.rejects-bad-magic",
    "update.rejects-rollback",
];

/// Secrets of the demo fleet that must never reach an artefact.
const SECRETS: [&str; 4] = ["Vq7#mZ2p!Lk9", "Rt4%wB8n?Jd2", "3a910c", "3a910d"];

fn has_provision(rec: &serde_json::Value, p: &str) -> bool {
    rec["provisions"]
        .as_array()
        .expect("provisions")
        .iter()
        .any(|x| x == p)
}

#[test]
fn sim_fleet_run_finds_every_weakness_and_reports_consistently() {
    require_simdev();
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("results");
    let out_s = out.to_str().expect("utf-8 path");
    let run = hilsec(
        &["run", "--out", out_s],
        tmp.path(),
        Duration::from_secs(180),
    );
    assert_eq!(
        run.code(),
        1,
        "weak models fail, so exit 1; stderr:\n{}",
        run.stderr
    );
    assert!(
        run.stdout.contains("total"),
        "a summary table: {}",
        run.stdout
    );

    let results = results(&out);
    let tests = results["tests"].as_array().expect("tests");
    // The simulated units are healthy processes: any `error` is a harness or recipe bug that
    // an exit code of 1 (a fail somewhere) would otherwise hide.
    let errors: Vec<String> = tests
        .iter()
        .filter(|t| t["verdict"] == "error")
        .map(|t| format!("{} {}: {}", t["board"], t["test"], t["message"]))
        .collect();
    assert!(
        errors.is_empty(),
        "errors on the healthy fleet:\n{}",
        errors.join("\n")
    );
    let password = tests.iter().filter(|t| t["suite"] == "password").count();
    assert_eq!(
        password,
        6 * PASSWORD_TESTS.len(),
        "every password test on every unit"
    );

    for unit in ["sim-plug-1", "sim-plug-2"] {
        for t in PASSWORD_TESTS {
            if t == "password.broker-requires-auth" {
                // The plug runs no broker of its own.
                assert_eq!(verdict(&results, unit, t), "not_applicable");
                continue;
            }
            assert_eq!(
                verdict(&results, unit, t),
                "pass",
                "{unit} {t}: {}",
                record(&results, unit, t)["message"]
            );
        }
    }
    for unit in ["sim-cam-1", "sim-cam-2"] {
        let r = record(&results, unit, "password.universal-default-rejected");
        assert_eq!(r["verdict"], "fail", "{unit}: {r}");
        assert!(has_provision(r, "EN 303 645 5.1-1"));
        assert_eq!(
            verdict(&results, unit, "password.unique-across-units"),
            "fail"
        );
        assert_eq!(
            verdict(&results, unit, "password.unit-password-accepted"),
            "pass"
        );
        // The universal default works over telnet too, and the debug shell nobody declared
        // is found by the surface scan.
        let msg = r["message"].as_str().expect("message");
        assert!(msg.contains("admin/admin (login_telnet)"), "{unit}: {msg}");
        let r = record(&results, unit, "password.no-undeclared-surfaces");
        assert_eq!(r["verdict"], "fail", "{unit}: {r}");
        let msg = r["message"].as_str().expect("message");
        assert!(
            msg.contains("port 9527") && msg.contains("SimCam debug shell"),
            "{unit}: {msg}"
        );
        assert!(
            !msg.contains("port 2323 ("),
            "the declared telnet port is not blamed: {msg}"
        );
    }
    // The plug's SSH login is a surface the default sweep covered, with its positive control.
    for unit in ["sim-plug-1", "sim-plug-2"] {
        let msg = record(&results, unit, "password.universal-default-rejected")["message"]
            .as_str()
            .expect("message")
            .to_string();
        assert!(msg.contains("login_ssh"), "{unit}: {msg}");
    }
    for unit in ["sim-hub-1", "sim-hub-2"] {
        let r = record(&results, unit, "password.not-derived-from-identity");
        assert_eq!(r["verdict"], "fail", "{unit}: {r}");
        assert!(has_provision(r, "EN 303 645 5.1-2"));
        assert!(has_provision(r, "PSTI Sch.1 1(3)(c)"));
        assert_eq!(
            verdict(&results, unit, "password.universal-default-rejected"),
            "pass"
        );
        // Its own broker lets anyone read and command it.
        let r = record(&results, unit, "password.broker-requires-auth");
        assert_eq!(r["verdict"], "fail", "{unit}: {r}");
        let msg = r["message"].as_str().expect("message");
        assert!(
            msg.contains(&format!("simhub/{unit}/state"))
                && msg.contains(&format!("simhub/{unit}/cmd/relay")),
            "{unit}: {msg}"
        );
        assert_eq!(
            verdict(&results, unit, "password.no-undeclared-surfaces"),
            "pass"
        );
    }

    // Updates: over MQTT (plug), the console (cam) and Modbus TCP (hub).
    for unit in ["sim-plug-1", "sim-plug-2"] {
        for t in UPDATE_TESTS {
            assert_eq!(
                verdict(&results, unit, t),
                "pass",
                "{unit} {t}: {}",
                record(&results, unit, t)["message"]
            );
        }
    }
    for unit in ["sim-cam-1", "sim-cam-2"] {
        assert_eq!(verdict(&results, unit, "update.accepts-genuine"), "pass");
        for t in ["update.rejects-unsigned", "update.rejects-payload-bitflip"] {
            let r = record(&results, unit, t);
            assert_eq!(r["verdict"], "fail", "{unit} {t}: {r}");
            assert!(has_provision(r, "EN 303 645 5.3-9"));
        }
    }
    for unit in ["sim-hub-1", "sim-hub-2"] {
        assert_eq!(verdict(&results, unit, "update.accepts-genuine"), "pass");
        assert_eq!(verdict(&results, unit, "update.rejects-rollback"), "fail");
        assert_eq!(verdict(&results, unit, "update.rejects-unsigned"), "pass");
    }

    // The journal has a complete line per test; evidence exists where a record points to it.
    assert_eq!(journal(&out).len(), tests.len());
    for t in tests {
        if let Some(ev) = t["evidence"].as_str() {
            assert!(out.join(ev).is_file(), "evidence {ev} written");
        }
    }
    let ev =
        fs::read_to_string(out.join("evidence/sim-plug-1/password.unit-password-accepted.log"))
            .expect("evidence of the positive control");
    assert!(
        ev.contains("-> admin\\n") && ev.contains("login: "),
        "the transcript: {ev}"
    );

    // Secrets are redacted everywhere.
    for f in files_under(tmp.path()) {
        let text = String::from_utf8_lossy(&fs::read(&f).expect("read artefact")).into_owned();
        for s in SECRETS {
            assert!(
                !text.contains(s),
                "secret {s:?} leaked into {}",
                f.display()
            );
        }
        assert!(
            !text.contains("PRIVATE KEY"),
            "a private key in {}",
            f.display()
        );
    }

    check_junit(&out, &results);
}

fn check_junit(out: &Path, results: &serde_json::Value) {
    let junit = out.join("junit.xml");
    let xsd = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/junit.xsd");
    let lint = Command::new("xmllint")
        .arg("--noout")
        .arg("--schema")
        .arg(&xsd)
        .arg(&junit)
        .output()
        .expect("xmllint runs (install libxml2-utils; ci/test does it when missing)");
    assert!(
        lint.status.success(),
        "junit.xml does not validate against the JUnit schema:\n{}",
        String::from_utf8_lossy(&lint.stderr)
    );

    let text = fs::read_to_string(&junit).expect("junit.xml");
    let doc = roxmltree::Document::parse(&text).expect("junit.xml parses");
    let mut from_junit = BTreeSet::new();
    for suite in doc.descendants().filter(|n| n.has_tag_name("testsuite")) {
        let props: Vec<(&str, &str)> = suite
            .descendants()
            .filter(|n| n.has_tag_name("property"))
            .map(|p| {
                (
                    p.attribute("name").unwrap_or(""),
                    p.attribute("value").unwrap_or(""),
                )
            })
            .collect();
        let prop = |k: &str| props.iter().find(|(n, _)| *n == k).map(|(_, v)| *v);
        let board = prop("board").expect("board property");
        assert!(
            prop("model").is_some() && prop("serial").is_some() && prop("firmware").is_some(),
            "board identity as properties on {board}"
        );
        for case in suite.children().filter(|n| n.has_tag_name("testcase")) {
            let name = case.attribute("name").expect("testcase name");
            let outcome = if case.children().any(|c| c.has_tag_name("failure")) {
                "fail"
            } else if case.children().any(|c| c.has_tag_name("error")) {
                "error"
            } else if case.children().any(|c| c.has_tag_name("skipped")) {
                "skipped"
            } else {
                "pass"
            };
            assert!(
                prop(&format!("provisions:{name}")).is_some(),
                "provisions of {name} on {board}"
            );
            from_junit.insert((board.to_string(), name.to_string(), outcome.to_string()));
        }
    }
    let from_json: BTreeSet<_> = results["tests"]
        .as_array()
        .expect("tests")
        .iter()
        .map(|t| {
            let v = t["verdict"].as_str().expect("verdict");
            let outcome = match v {
                "not_applicable" | "inconclusive" => "skipped",
                other => other,
            };
            (
                t["board"].as_str().expect("board").to_string(),
                t["test"].as_str().expect("test").to_string(),
                outcome.to_string(),
            )
        })
        .collect();
    assert_eq!(
        from_junit, from_json,
        "junit.xml and results.json list the same tests and outcomes"
    );
}

#[test]
fn list_shows_tests_provisions_and_applicability() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let run = hilsec(&["list"], tmp.path(), Duration::from_secs(30));
    assert_eq!(run.code(), 0, "{}", run.stderr);
    for t in PASSWORD_TESTS {
        assert!(run.stdout.contains(t), "{t} listed");
    }
    assert!(run.stdout.contains("EN 303 645 5.1-1"));
    assert!(run
        .stdout
        .contains("SimPlug S1 [sim-plug-1, sim-plug-2]: applies"));
}

#[test]
fn usage_errors_exit_2_and_run_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("out");
    let out_s = out.to_str().expect("utf-8");
    for args in [
        vec!["run", "--suite", "no-such-suite", "--out", out_s],
        vec!["run", "--jobs", "many", "--out", out_s],
        vec!["run", "--bogus-flag"],
        vec!["frobnicate"],
    ] {
        let run = hilsec(&args, tmp.path(), Duration::from_secs(30));
        assert_eq!(run.code(), 2, "{args:?}: {}", run.stderr);
        assert!(!run.stderr.is_empty(), "{args:?} explains itself");
        assert!(!out.join("journal.jsonl").exists(), "{args:?} ran nothing");
    }
}
