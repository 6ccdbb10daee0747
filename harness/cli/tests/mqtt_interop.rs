//! The MQTT parts of a run against mosquitto instead of the embedded broker: the SimPlug units
//! take their updates over MQTT, and `--mqtt-broker` points the run (harness and units) at the
//! lab's broker.

mod common;

use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

#[test]
fn update_suite_over_mosquitto() {
    require_simdev();
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let exe = ["/usr/sbin/mosquitto", "mosquitto"]
        .into_iter()
        .find(|p| {
            Command::new(p)
                .arg("-h")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok()
        })
        .expect("mosquitto is installed (ci/test installs the Debian package when missing)");
    let mut broker = Command::new(exe)
        .args(["-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start mosquitto");
    let t0 = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "mosquitto did not listen"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("out");
    // A host name, as a lab writes it; the harness resolves it once.
    let addr = format!("localhost:{port}");
    let run = hilsec(
        &[
            "run",
            "--board",
            "boards/sim/simplug-s1.toml",
            "--suite",
            "update",
            "--mqtt-broker",
            &addr,
            "--out",
            out.to_str().expect("utf-8"),
        ],
        tmp.path(),
        Duration::from_secs(180),
    );
    let _ = broker.kill();
    let _ = broker.wait();
    assert_eq!(
        run.code(),
        0,
        "SimPlug passes every update test; stderr:\n{}\nstdout:\n{}",
        run.stderr,
        run.stdout
    );
    assert!(
        !run.stderr.contains("embedded MQTT broker"),
        "no embedded broker was started"
    );
    let results = results(&out);
    for unit in ["sim-plug-1", "sim-plug-2"] {
        assert_eq!(verdict(&results, unit, "update.accepts-genuine"), "pass");
        assert_eq!(verdict(&results, unit, "update.rejects-unsigned"), "pass");
    }
    let ev = std::fs::read_to_string(out.join("evidence/sim-plug-1/update.accepts-genuine.log"))
        .expect("evidence");
    assert!(
        ev.contains(&format!("broker 127.0.0.1:{port}")),
        "the evidence names mosquitto's address, resolved from {addr}"
    );
}

#[test]
fn a_broker_that_does_not_resolve_is_a_usage_error() {
    let tmp = tempfile::tempdir().expect("tempdir");
    for (arg, says) in [
        ("no-such-host.invalid:1883", "cannot resolve"),
        ("localhost", "no port"),
    ] {
        let run = hilsec(
            &["run", "--mqtt-broker", arg, "--out", "out"],
            tmp.path(),
            Duration::from_secs(60),
        );
        assert_eq!(run.code(), 2, "{arg}: stderr:\n{}", run.stderr);
        assert!(run.stderr.contains(says), "{arg}: stderr:\n{}", run.stderr);
        assert!(
            !tmp.path().join("out").exists(),
            "nothing was run for {arg}"
        );
    }
}
