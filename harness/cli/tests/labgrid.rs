//! `kind = "labgrid"` against a real labgrid: a coordinator and an exporter on loopback, the
//! exporter serving a simulated unit's console (its pseudo-terminal, as a `RawSerialPort`: the
//! exporter runs ser2net in RFC 2217 mode for it when the place is acquired), a place matching
//! it. `hilsec run` must acquire the place, log in on the console through RFC 2217, and release
//! the place when the unit is done; a place someone else holds must make the unit's tests
//! `error`, naming the holder.
//!
//! labgrid comes from PyPI, installed once into `<target dir>/labgrid-venv` (pinned version;
//! `HILSEC_LABGRID_VENV` names another venv with labgrid installed); ser2net from the system
//! (Debian package `ser2net`). Without either the test is SKIPPED, saying so loudly on stderr,
//! unless `HILSEC_REQUIRE_LABGRID` is set (CI), where it fails instead.

mod common;

use std::fs::{self, File};
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;

/// The labgrid release the venv gets (the one `iface/labgrid.rs` was checked against).
const LABGRID_SPEC: &str = "labgrid==26.0.1";
/// The simulated unit's label password.
const PASSWORD: &str = "Lg7-pQx2-Wm9r";

fn target_dir() -> PathBuf {
    // CARGO_TARGET_TMPDIR is <target dir>/tmp.
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().map(Path::to_path_buf).unwrap_or(tmp)
}

/// Says why the test cannot run: SKIPPED (loudly), or a failure where it must run.
fn skip(why: &str) {
    if std::env::var_os("HILSEC_REQUIRE_LABGRID").is_some() {
        panic!("labgrid test cannot run (HILSEC_REQUIRE_LABGRID is set): {why}");
    }
    // Straight to the process's stderr: the test harness captures `eprintln!` of passing
    // tests, and a skip must be seen.
    use std::io::Write as _;
    let _ = writeln!(
        std::io::stderr(),
        "\n=== SKIPPED: labgrid place test: {why} (set HILSEC_REQUIRE_LABGRID=1 to fail instead) ===\n"
    );
}

/// The venv's `bin` folder with labgrid installed, installing it on first use; `Err`: why not.
fn labgrid_bin() -> Result<PathBuf, String> {
    if let Some(v) = std::env::var_os("HILSEC_LABGRID_VENV") {
        let bin = PathBuf::from(v).join("bin");
        return if bin.join("labgrid-client").is_file() {
            Ok(bin)
        } else {
            Err(format!(
                "HILSEC_LABGRID_VENV: {} has no labgrid-client",
                bin.display()
            ))
        };
    }
    let venv = target_dir().join("labgrid-venv");
    let bin = venv.join("bin");
    fs::create_dir_all(target_dir()).map_err(|e| e.to_string())?;
    // Other test processes may install at the same time: take a file lock.
    let lock = File::create(target_dir().join("labgrid-venv.lock")).map_err(|e| e.to_string())?;
    lock.lock().map_err(|e| e.to_string())?;
    let tools = ["labgrid-client", "labgrid-coordinator", "labgrid-exporter"];
    if tools.iter().all(|t| bin.join(t).is_file()) {
        return Ok(bin);
    }
    let _ = fs::remove_dir_all(&venv);
    let out = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .output()
        .map_err(|e| format!("cannot run python3 -m venv: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "python3 -m venv {} failed: {}",
            venv.display(),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let out = Command::new(bin.join("pip"))
        .args([
            "install",
            "--quiet",
            "--disable-pip-version-check",
            LABGRID_SPEC,
        ])
        .output()
        .map_err(|e| format!("cannot run pip: {e}"))?;
    if !out.status.success() {
        let _ = fs::remove_dir_all(&venv);
        return Err(format!(
            "pip install {LABGRID_SPEC} failed (no network to PyPI?): {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    if let Some(t) = tools.iter().find(|t| !bin.join(t).is_file()) {
        return Err(format!("pip installed labgrid but {t} is missing"));
    }
    Ok(bin)
}

/// ser2net, which the exporter runs for a serial port: `Err` when it is not installed.
fn have_ser2net() -> Result<(), String> {
    let found = ["/usr/sbin/ser2net", "/usr/bin/ser2net"]
        .iter()
        .any(|p| Path::new(p).is_file())
        || Command::new("ser2net")
            .arg("-v")
            .output()
            .is_ok_and(|o| !o.stdout.is_empty());
    if found {
        Ok(())
    } else {
        Err("ser2net is not installed (Debian: apt-get install ser2net); the labgrid exporter runs it for serial ports".into())
    }
}

/// A process the test started, leading its own process group; the group is ended on drop
/// (SIGTERM, then SIGKILL after 5 s).
struct Group {
    name: &'static str,
    child: Child,
}

impl Group {
    fn spawn(name: &'static str, cmd: &mut Command, log: &Path) -> Group {
        let log = File::create(log).expect("log file");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Group { name, child }
    }

    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        let pgid = self.child.id() as i32;
        // SAFETY: kill(2) on the process group this test created; no memory involved.
        unsafe { libc::kill(-pgid, libc::SIGTERM) };
        let t0 = Instant::now();
        let mut stopped = false;
        while t0.elapsed() < Duration::from_secs(5) {
            if !matches!(self.child.try_wait(), Ok(None)) {
                stopped = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if !stopped {
            eprintln!("{} did not stop within 5 s of SIGTERM: killed", self.name);
        }
        // Whatever is left of the group (ser2net started by the exporter, say).
        // SAFETY: as above.
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The simulated unit: started by the test (hilsec reaches it only through labgrid), its
/// console's pseudo-terminal read from its ready line.
struct SimUnit {
    child: Child,
    console: String,
}

impl SimUnit {
    fn start(name: &str) -> SimUnit {
        let simdev = std::env::var_os("HILSEC_SIMDEV")
            .map(PathBuf::from)
            .unwrap_or_else(|| hilsec_bin().with_file_name("hilsec-simdev"));
        let mut child = Command::new(simdev)
            .args([
                "--model",
                "plug",
                "--unit",
                name,
                "--serial",
                "SP1-LG0001",
                "--mac",
                "02:1a:2b:00:0a:01",
            ])
            .env("HILSEC_SIM_PASSWORD", PASSWORD)
            // stdin's EOF (the test dropping it) is the unit's shutdown.
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("start hilsec-simdev");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(rest) = line.strip_prefix("HILSEC-SIM-READY console=") {
                        let console = rest.split_whitespace().next().unwrap_or("").to_string();
                        return SimUnit { child, console };
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("hilsec-simdev did not announce its console within 20 s");
                }
            }
        }
    }
}

impl Drop for SimUnit {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(5) {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free loopback TCP port (bound once and let go).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// `labgrid-client -x COORDINATOR ARGS` with `env`, bounded by 60 s: (success, stdout+stderr).
fn lg_client(bin: &Path, coordinator: &str, args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let out_file = tempfile::NamedTempFile::new().expect("temp file");
    let mut child = Command::new(bin.join("labgrid-client"))
        .arg("-x")
        .arg(coordinator)
        .args(args)
        .envs(env.iter().copied())
        .env_remove("LG_ENV")
        .stdin(Stdio::null())
        .stdout(out_file.reopen().expect("reopen"))
        .stderr(out_file.reopen().expect("reopen"))
        .process_group(0)
        .spawn()
        .expect("run labgrid-client");
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if t0.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("labgrid-client {args:?} did not finish within 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let text = fs::read_to_string(out_file.path()).unwrap_or_default();
    (status.success(), text)
}

/// Waits (bounded) until `check` holds, polling every 200 ms; false when `limit` passed.
fn wait_until(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let t0 = Instant::now();
    loop {
        if check() {
            return true;
        }
        if t0.elapsed() > limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The board file: SimPlug's console recipes on a labgrid place (serial port `resource`, when
/// given; written as `file`).
fn board(
    dir: &Path,
    file: &str,
    client: &Path,
    coordinator: &str,
    place: &str,
    resource: Option<&str>,
) -> PathBuf {
    let resource = resource
        .map(|r| format!("resource = \"{r}\"\n"))
        .unwrap_or_default();
    let text = format!(
        r#"# SimPlug S1 reached through a labgrid place (harness/cli/tests/labgrid.rs).
[model]
name = "SimPlug S1 via labgrid"
manufacturer = "Simulated Plugs Ltd"

[declarations]
password_mechanism = "unique-per-unit"
login_user = "admin"
min_password_length = 10

[interfaces.console]
kind = "labgrid"
place = "{{unit.place}}"
coordinator = "{coordinator}"
client = "{client}"
{resource}baud = 115200
timeout = "5s"

[actions.login]
params = ["user", "password"]
secret_params = ["password"]
steps = [
  {{ send = "\n" }},
  {{ expect = 'login: $' }},
  {{ send = "{{user}}\n" }},
  {{ expect = 'Password: $', accept = '\$ $' }},
  {{ send = "{{password}}\n" }},
  {{ expect = '\$ $', reject = 'Login incorrect', timeout = "20s" }},
]

[actions.sync]
steps = [
  {{ send = "\n", flush = true }},
  {{ expect = '\$ $', accept = 'login: $' }},
  {{ send = "exit\n" }},
  {{ expect = 'login: $' }},
]

[[unit]]
name = "lg-plug-1"
serial = "SP1-LG0001"
mac = "02:1a:2b:00:0a:01"
password = {{ value = "{PASSWORD}" }}
vars = {{ place = "{place}" }}
"#,
        client = client.display()
    );
    let path = dir.join(file);
    fs::write(&path, text).expect("write board");
    path
}

#[test]
fn a_labgrid_place_is_acquired_used_as_console_and_released() {
    require_simdev();
    if let Err(why) = have_ser2net() {
        return skip(&why);
    }
    let bin = match labgrid_bin() {
        Ok(b) => b,
        Err(why) => return skip(&why),
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let unit = SimUnit::start("lg-plug-1");

    // The coordinator on loopback (it keeps its places in its working folder).
    let port = free_port();
    let coordinator = format!("127.0.0.1:{port}");
    let coord_dir = dir.join("coordinator");
    fs::create_dir_all(&coord_dir).expect("coordinator dir");
    let mut coord = Group::spawn(
        "labgrid-coordinator",
        Command::new(bin.join("labgrid-coordinator"))
            .args(["-l", &coordinator])
            .current_dir(&coord_dir),
        &dir.join("coordinator.log"),
    );
    let up = wait_until(Duration::from_secs(30), || {
        std::net::TcpStream::connect(&coordinator).is_ok() || !coord.alive()
    });
    assert!(
        up && coord.alive(),
        "labgrid-coordinator did not listen on {coordinator} within 30 s: {}",
        fs::read_to_string(dir.join("coordinator.log")).unwrap_or_default()
    );

    // The exporter: the unit's console as a RawSerialPort (ser2net when acquired).
    let exporter = format!("hilsec-test-{}", std::process::id());
    let config = dir.join("exporter.yaml");
    fs::write(
        &config,
        format!(
            "sim:\n  RawSerialPort:\n    port: {}\n    speed: 115200\n",
            unit.console
        ),
    )
    .expect("exporter config");
    let mut exp = Group::spawn(
        "labgrid-exporter",
        Command::new(bin.join("labgrid-exporter"))
            .args([
                "-c",
                &coordinator,
                "--hostname",
                "127.0.0.1",
                "-n",
                &exporter,
            ])
            .arg(&config)
            .current_dir(dir),
        &dir.join("exporter.log"),
    );
    let resource = format!("{exporter}/sim/NetworkSerialPort");
    let exported = wait_until(Duration::from_secs(30), || {
        !exp.alive()
            || lg_client(&bin, &coordinator, &["resources"], &[])
                .1
                .contains(&resource)
    });
    assert!(
        exported && exp.alive(),
        "the exporter did not register {resource} within 30 s: {}",
        fs::read_to_string(dir.join("exporter.log")).unwrap_or_default()
    );

    // The place.
    let place = format!("hilsec-lg-{}", std::process::id());
    for args in [
        vec!["-p", &place, "create"],
        vec!["-p", &place, "add-match", &resource],
    ] {
        let (ok, text) = lg_client(&bin, &coordinator, &args, &[]);
        assert!(ok, "labgrid-client {args:?}: {text}");
    }
    let show = |who: &str| {
        let (ok, text) = lg_client(&bin, &coordinator, &["-p", &place, "show"], &[]);
        assert!(ok, "labgrid-client show ({who}): {text}");
        text
    };
    assert!(show("before").contains("acquired: None"));

    // 1. A run on the place: the positive-control login over the place's console.
    let board_file = board(
        dir,
        "labgrid-plug.toml",
        &bin.join("labgrid-client"),
        &coordinator,
        &place,
        None,
    );
    let board_s = board_file.to_str().expect("utf-8");
    let check = hilsec(&["check-board", board_s], dir, Duration::from_secs(30));
    assert_eq!(
        check.code(),
        0,
        "check-board: {}{}",
        check.stdout,
        check.stderr
    );
    let out = dir.join("results");
    let out_s = out.to_str().expect("utf-8");
    let run = hilsec(
        &[
            "run",
            "--board",
            board_s,
            "--suite",
            "password",
            "--test",
            "password.unit-password-accepted",
            "--out",
            out_s,
        ],
        dir,
        Duration::from_secs(120),
    );
    let results = results(&out);
    let rec = record(&results, "lg-plug-1", "password.unit-password-accepted");
    assert_eq!(
        rec["verdict"],
        "pass",
        "exit {}; record {rec}; stderr: {}",
        run.code(),
        run.stderr
    );
    assert_eq!(run.code(), 0, "stderr: {}", run.stderr);
    // The evidence shows the place, the port and RFC 2217 at work, and the unit's own text.
    let evidence: String = files_under(&out.join("evidence"))
        .iter()
        .map(|p| fs::read_to_string(p).unwrap_or_default())
        .collect();
    for want in [
        &format!("acquiring labgrid place {place}") as &str,
        &format!("labgrid place {place} acquired"),
        "(RFC 2217)",
        "SET-BAUDRATE 115200 (in effect)",
        "lg-plug-1 login:",
    ] {
        assert!(
            evidence.contains(want),
            "evidence lacks {want:?}:\n{evidence}"
        );
    }
    assert!(
        !evidence.contains(PASSWORD),
        "the password reached the evidence"
    );
    // Released when the unit was done.
    let after = show("after the run");
    assert!(
        after.contains("acquired: None"),
        "the place is still acquired after the run:\n{after}"
    );

    // 2. The place held by someone else: the unit's tests are `error`, naming the holder.
    let alice = [("LG_USERNAME", "alice"), ("LG_HOSTNAME", "benchhost")];
    let (ok, text) = lg_client(&bin, &coordinator, &["-p", &place, "acquire"], &alice);
    assert!(ok, "acquire as alice: {text}");
    let out2 = dir.join("results-held");
    let out2_s = out2.to_str().expect("utf-8");
    let run = hilsec(
        &[
            "run",
            "--board",
            board_s,
            "--suite",
            "password",
            "--test",
            "password.unit-password-accepted",
            "--out",
            out2_s,
        ],
        dir,
        Duration::from_secs(120),
    );
    assert_eq!(run.code(), 3, "an error, no fail; stderr: {}", run.stderr);
    let results = common::results(&out2);
    let rec = record(&results, "lg-plug-1", "password.unit-password-accepted");
    assert_eq!(rec["verdict"], "error", "{rec}");
    let msg = rec["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("already acquired by benchhost/alice"),
        "the message names the holder: {msg}"
    );
    // Someone else's place is left alone.
    assert!(show("held by alice").contains("acquired: benchhost/alice"));
    let (ok, text) = lg_client(&bin, &coordinator, &["-p", &place, "release"], &alice);
    assert!(ok, "release as alice: {text}");

    // 3. Interrupted (Ctrl-C) in the middle of a long test: the place is released all the same.
    let out3 = dir.join("results-interrupted");
    let out3_s = out3.to_str().expect("utf-8");
    let run = spawn(
        &[
            "run",
            "--board",
            board_s,
            "--suite",
            "password",
            "--test",
            "password.brute-force-throttled",
            "--out",
            out3_s,
        ],
        dir,
    );
    let ours = wait_until(Duration::from_secs(60), || {
        show("during the run").contains("acquired: ")
            && !show("during the run").contains("acquired: None")
    });
    assert!(ours, "the run never acquired the place");
    // Into the throttled guesses, then Ctrl-C.
    std::thread::sleep(Duration::from_secs(2));
    signal(run.child.id(), libc::SIGINT);
    let done = run.finish(Duration::from_secs(60));
    assert_eq!(done.code(), 130, "stderr: {}", done.stderr);
    let after = show("after the interrupted run");
    assert!(
        after.contains("acquired: None"),
        "the place is still acquired after an interrupted run:\n{after}"
    );

    // 4. A serial port that is not there (a typo in `resource`): the unit's tests are `error`
    //    naming the ports the place has, and the place is given back as soon as no console
    //    could be opened on it, not held until the unit is done.
    let bad_board = board(
        dir,
        "labgrid-plug-typo.toml",
        &bin.join("labgrid-client"),
        &coordinator,
        &place,
        Some("uart9"),
    );
    let out4 = dir.join("results-typo");
    let out4_s = out4.to_str().expect("utf-8");
    let run = hilsec(
        &[
            "run",
            "--board",
            bad_board.to_str().expect("utf-8"),
            "--suite",
            "password",
            "--test",
            "password.unit-password-accepted",
            "--out",
            out4_s,
        ],
        dir,
        Duration::from_secs(120),
    );
    assert_eq!(run.code(), 3, "an error, no fail; stderr: {}", run.stderr);
    let results = common::results(&out4);
    let rec = record(&results, "lg-plug-1", "password.unit-password-accepted");
    assert_eq!(rec["verdict"], "error", "{rec}");
    let msg = rec["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("no serial port named \"uart9\" (it has: RawSerialPort)"),
        "the message names the place's ports: {msg}"
    );
    let evidence: String = files_under(&out4.join("evidence"))
        .iter()
        .map(|p| fs::read_to_string(p).unwrap_or_default())
        .collect();
    for want in [
        format!("labgrid place {place} acquired"),
        format!("no console on labgrid place {place}; releasing the place"),
        format!("labgrid place {place} released"),
    ] {
        assert!(
            evidence.contains(&want),
            "evidence lacks {want:?}:\n{evidence}"
        );
    }
    assert!(
        !run.stderr.contains("may still be acquired"),
        "stderr: {}",
        run.stderr
    );
    let after = show("after the run with a wrong resource");
    assert!(
        after.contains("acquired: None"),
        "the place is still acquired:\n{after}"
    );

    drop(exp);
    drop(coord);
    drop(unit);
}
