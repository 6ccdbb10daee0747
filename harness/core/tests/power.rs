//! Power links against real counterparts: shell scripts written here, the simulated device's
//! relay (coil 0 of `hilsec-simdev` over Modbus TCP), and a Tasmota-like plug (a task speaking
//! MQTT as Tasmota does) on the embedded broker. Timeouts are generous (a loaded 2-core CI
//! machine); nothing is asserted about timing beyond "it ended".

mod common;
use common::simdev::simdev_exe;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hilsec_core::board::ModbusTable;
use hilsec_core::iface::modbus::ModbusLink;
use hilsec_core::iface::power::{PowerDriver, PowerLink};
use hilsec_core::iface::LinkError;
use hilsec_core::secret::Redactor;
use hilsec_core::transcript::Transcript;

/// Bound of every operation that should succeed.
const PATIENCE: Duration = Duration::from_secs(20);
/// Guard against a hang: a test that takes this long has failed.
const HANG: Duration = Duration::from_secs(120);

fn text(t: &Transcript) -> String {
    t.render(&Redactor::default())
}

async fn bounded<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(HANG, f).await.expect("no hang")
}

// ---------------------------------------------------------------------------------------------
// Shell commands

/// A script that appends `<argument> <HILSEC_POWER> [<third argument>]` to the log file named by
/// its first argument.
fn relay_script(dir: &Path) -> (PathBuf, PathBuf) {
    let script = dir.join("relay.sh");
    let log = dir.join("log");
    std::fs::write(
        &script,
        "#!/bin/sh\necho \"$2 $HILSEC_POWER${3:+ $3}\" >> \"$1\"\necho \"relay $2 done\"\n",
    )
    .expect("write script");
    (script, log)
}

fn command_driver(script: &Path, log: &Path, cycle: bool) -> PowerDriver {
    let run = |arg: &str| format!("sh '{}' '{}' {arg}", script.display(), log.display());
    PowerDriver::Command {
        on: run("on"),
        off: run("off"),
        cycle: cycle.then(|| format!("{} $HILSEC_POWER_OFF_MS", run("cycle"))),
    }
}

fn log_lines(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn commands_switch_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (script, log) = relay_script(dir.path());
    let t = Transcript::new();
    let mut p = PowerLink::open(
        "relay",
        command_driver(&script, &log, false),
        PATIENCE,
        t.clone(),
    )
    .await
    .expect("open");
    bounded(async {
        p.set(true).await.expect("on");
        p.set(false).await.expect("off");
        // No cycle command: off, wait, on.
        p.cycle(Duration::from_millis(50)).await.expect("cycle");
        assert_eq!(p.state().await.expect("state"), None);
    })
    .await;
    assert!(!p.is_closed());
    assert_eq!(log_lines(&log), ["on on", "off off", "off off", "on on"]);
    let shown = text(&t);
    assert!(shown.contains("power relay: on (command: sh '"), "{shown}");
    assert!(
        shown.contains("power relay: off done (command exited with status 0"),
        "{shown}"
    );
    assert!(shown.contains("stdout: relay on done"), "{shown}");
    assert!(shown.contains("state unknown"), "{shown}");
}

#[tokio::test]
async fn a_cycle_command_is_used_when_given() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (script, log) = relay_script(dir.path());
    let t = Transcript::new();
    let mut p = PowerLink::open(
        "pdu",
        command_driver(&script, &log, true),
        PATIENCE,
        t.clone(),
    )
    .await
    .expect("open");
    bounded(p.cycle(Duration::from_millis(1500)))
        .await
        .expect("cycle");
    // The script logs its argument, HILSEC_POWER and the off time it was given.
    assert_eq!(log_lines(&log), ["cycle cycle 1500"]);
    assert!(
        text(&t).contains("power pdu: cycle (command: sh '"),
        "{}",
        text(&t)
    );
}

#[tokio::test]
async fn a_failing_command_is_a_protocol_error_with_its_stderr() {
    let t = Transcript::new();
    let driver = PowerDriver::Command {
        on: "echo 'usbrelay: no device 6QMBS' >&2; exit 3".into(),
        off: "true".into(),
        cycle: None,
    };
    let mut p = PowerLink::open("usb", driver, PATIENCE, t.clone())
        .await
        .expect("open");
    let e = bounded(p.set(true)).await.expect_err("a failure");
    match &e {
        LinkError::Protocol(m) => {
            assert!(m.contains("status 3"), "{m}");
            assert!(m.contains("usbrelay: no device 6QMBS"), "{m}");
        }
        other => panic!("expected a protocol error, got {other:?}"),
    }
    let shown = text(&t);
    assert!(
        shown.contains("power usb: on failed: power command"),
        "{shown}"
    );
    assert!(
        shown.contains("stderr: usbrelay: no device 6QMBS"),
        "{shown}"
    );
    // A success after a failure.
    bounded(p.set(false)).await.expect("off");
}

#[tokio::test]
async fn output_is_kept_bounded() {
    let t = Transcript::new();
    let driver = PowerDriver::Command {
        on: "head -c 100000 /dev/zero | tr '\\0' x".into(),
        off: "true".into(),
        cycle: None,
    };
    let mut p = PowerLink::open("noisy", driver, PATIENCE, t.clone())
        .await
        .expect("open");
    bounded(p.set(true)).await.expect("on");
    let shown = text(&t);
    assert!(
        shown.contains("stdout: (last 4096 of 100000 bytes)"),
        "{shown}"
    );
    assert!(shown.len() < 20_000, "{} bytes of transcript", shown.len());
}

/// True once `pid` no longer runs (gone, or a zombie nobody reaped yet).
fn gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // `pid (comm) S ...`: the state follows the last ')'.
        Ok(s) => s
            .rsplit_once(')')
            .map(|(_, rest)| rest.trim_start().starts_with(['Z', 'X']))
            .unwrap_or(false),
    }
}

fn read_pid(path: &Path) -> u32 {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Ok(s) = std::fs::read_to_string(path) {
            if let Ok(p) = s.trim().parse() {
                return p;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{} never written",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn a_hanging_command_is_killed_with_its_children() {
    let dir = tempfile::tempdir().expect("tempdir");
    let shell = dir.path().join("shell.pid");
    let child = dir.path().join("child.pid");
    let driver = PowerDriver::Command {
        on: format!(
            "echo $$ > '{}'; sleep 1000 & echo $! > '{}'; echo 'waiting for the relay' >&2; wait",
            shell.display(),
            child.display()
        ),
        off: "true".into(),
        cycle: None,
    };
    let t = Transcript::new();
    let mut p = PowerLink::open("hub", driver, Duration::from_secs(3), t.clone())
        .await
        .expect("open");
    let e = bounded(p.set(true)).await.expect_err("a timeout");
    match &e {
        LinkError::Timeout { tail, .. } => assert!(tail.contains("waiting for the relay"), "{e}"),
        other => panic!("expected a timeout, got {other:?}"),
    }
    wait_gone(&[read_pid(&shell), read_pid(&child)]);
    assert!(text(&t).contains("power hub: on failed: no match for /exit of power command"));
}

fn wait_gone(pids: &[u32]) {
    let deadline = Instant::now() + PATIENCE;
    while !pids.iter().all(|p| gone(*p)) {
        assert!(Instant::now() < deadline, "processes {pids:?} still run");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test]
async fn processes_a_command_leaves_behind_are_ended() {
    let dir = tempfile::tempdir().expect("tempdir");
    let holder = dir.path().join("holder.pid");
    let quiet = dir.path().join("quiet.pid");
    let driver = PowerDriver::Command {
        // One keeps the output pipes open, one does not; the command itself succeeds at once.
        on: format!("sleep 1000 & echo $! > '{}'", holder.display()),
        off: format!(
            "sleep 1000 >/dev/null 2>&1 & echo $! > '{}'",
            quiet.display()
        ),
        cycle: None,
    };
    let t = Transcript::new();
    let mut p = PowerLink::open("hub", driver, PATIENCE, t.clone())
        .await
        .expect("open");
    bounded(p.set(true)).await.expect("on");
    wait_gone(&[read_pid(&holder)]);
    assert!(
        text(&t).contains("the command left a process holding its output"),
        "{}",
        text(&t)
    );
    bounded(p.set(false)).await.expect("off");
    wait_gone(&[read_pid(&quiet)]);
}

#[tokio::test]
async fn an_abandoned_switch_ends_its_command() {
    let dir = tempfile::tempdir().expect("tempdir");
    let shell = dir.path().join("shell.pid");
    let driver = PowerDriver::Command {
        on: format!("echo $$ > '{}'; sleep 1000", shell.display()),
        off: "true".into(),
        cycle: None,
    };
    let mut p = PowerLink::open("hub", driver, Duration::from_secs(600), Transcript::new())
        .await
        .expect("open");
    // The caller gives up (a cancelled run) long before the link's own timeout.
    let abandoned = tokio::time::timeout(Duration::from_secs(2), p.set(true)).await;
    assert!(abandoned.is_err(), "the command cannot have finished");
    wait_gone(&[read_pid(&shell)]);
}

// ---------------------------------------------------------------------------------------------
// Modbus coil: the simulated device's relay

/// A running simulated unit serving Modbus TCP; ended when dropped.
struct SimUnit {
    child: Child,
    stdin: Option<ChildStdin>,
    modbus: String,
}

impl Drop for SimUnit {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_simdev() -> SimUnit {
    let mut child = Command::new(simdev_exe())
        .args([
            "--model",
            "plug",
            "--unit",
            "sim-plug-1",
            "--serial",
            "SP1-000123",
            "--mac",
            "02:1a:2b:00:01:0a",
            "--password",
            "Zx8-pLq2-Hv4",
            "--modbus-tcp",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn hilsec-simdev");
    let stdin = child.stdin.take();
    let stdout = child.stdout.take().expect("stdout");
    // The ready line is read on a thread so that a hung unit cannot hang the test.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let mut unit = SimUnit {
        child,
        stdin,
        modbus: String::new(),
    };
    let line = rx.recv_timeout(PATIENCE).expect("ready line in time");
    assert!(
        line.starts_with("HILSEC-SIM-READY "),
        "ready line: {line:?}"
    );
    unit.modbus = line
        .split_whitespace()
        .find_map(|f| f.strip_prefix("modbus="))
        .unwrap_or_else(|| panic!("no modbus= in {line:?}"))
        .to_string();
    unit
}

async fn relay_coil(addr: &str) -> bool {
    let mut link = ModbusLink::connect_tcp("check", addr, 1, PATIENCE, Transcript::new())
        .await
        .expect("second connection");
    let v = link
        .read(ModbusTable::Coils, 0, 1, PATIENCE)
        .await
        .expect("read coil 0");
    v == [1]
}

fn coil_driver(addr: &str, on_value: bool) -> PowerDriver {
    PowerDriver::ModbusCoil {
        address: addr.to_string(),
        unit_id: 1,
        coil: 0,
        on_value,
    }
}

#[tokio::test]
async fn modbus_coil_switches_the_simulated_relay() {
    let unit = start_simdev();
    let t = Transcript::new();
    let mut p = PowerLink::open(
        "relay",
        coil_driver(&unit.modbus, true),
        PATIENCE,
        t.clone(),
    )
    .await
    .expect("open");
    bounded(async {
        p.set(true).await.expect("on");
        assert_eq!(p.state().await.expect("state"), Some(true));
        assert!(relay_coil(&unit.modbus).await);
        p.set(false).await.expect("off");
        assert_eq!(p.state().await.expect("state"), Some(false));
        assert!(!relay_coil(&unit.modbus).await);
        p.cycle(Duration::from_millis(50)).await.expect("cycle");
        assert!(relay_coil(&unit.modbus).await);
    })
    .await;
    assert!(!p.is_closed());
    let shown = text(&t);
    assert!(
        shown.contains("power relay: on (write coil 0 = 1)"),
        "{shown}"
    );
    assert!(
        shown.contains("power relay: off confirmed by reading coil 0 back (= 0)"),
        "{shown}"
    );
    // The Modbus traffic itself is in the evidence too.
    assert!(shown.contains("write coil 0 = 1"), "{shown}");
}

#[tokio::test]
async fn a_normally_closed_relay_inverts_the_coil() {
    let unit = start_simdev();
    let t = Transcript::new();
    let mut p = PowerLink::open(
        "relay",
        coil_driver(&unit.modbus, false),
        PATIENCE,
        t.clone(),
    )
    .await
    .expect("open");
    bounded(async {
        p.set(true).await.expect("on");
        assert!(!relay_coil(&unit.modbus).await, "power on = coil cleared");
        assert_eq!(p.state().await.expect("state"), Some(true));
        p.set(false).await.expect("off");
        assert!(relay_coil(&unit.modbus).await, "power off = coil set");
        assert_eq!(p.state().await.expect("state"), Some(false));
    })
    .await;
    assert!(text(&t).contains("normally closed"));
}

/// A loopback port nobody listens on (bound, then released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

#[tokio::test]
async fn an_unreachable_relay_board_is_an_open_error() {
    let t = Transcript::new();
    let addr = format!("127.0.0.1:{}", free_port());
    let r = bounded(PowerLink::open(
        "relay",
        coil_driver(&addr, true),
        PATIENCE,
        t.clone(),
    ))
    .await;
    match r {
        Err(LinkError::Open { endpoint, .. }) => assert_eq!(endpoint, addr),
        Err(other) => panic!("expected an open error, got {other:?}"),
        Ok(_) => panic!("opened a relay board nobody serves"),
    }
    assert!(
        text(&t).contains("power relay: cannot open"),
        "{}",
        text(&t)
    );
}

// ---------------------------------------------------------------------------------------------
// Tasmota plug on the embedded broker

#[derive(Clone, Copy, PartialEq, Eq)]
enum Plug {
    /// Answers as Tasmota does.
    Honest,
    /// Never answers.
    Silent,
    /// Reports the opposite of what it was told.
    Contrary,
}

/// A Tasmota-like plug: subscribes to `cmnd/<topic>/#`; `POWER<n>` `ON`/`OFF`/`TOGGLE` switches
/// relay n, an empty payload asks; it answers `stat/<topic>/RESULT` `{"POWER<n>":"ON"}` (key
/// `POWER` for relay 1, as a single-relay plug does) and then `stat/<topic>/POWER<n>` `ON`.
/// Returns the commands it received (`POWER2 ON`, `POWER ?`).
async fn plug(broker: SocketAddr, topic: &str, behaviour: Plug) -> Arc<Mutex<Vec<String>>> {
    use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
    let seen = Arc::new(Mutex::new(Vec::new()));
    let opts = MqttOptions::new(format!("tasmota-{topic}"), "127.0.0.1", broker.port());
    let (client, mut eventloop) = AsyncClient::new(opts, 64);
    client
        .subscribe(format!("cmnd/{topic}/#"), QoS::AtLeastOnce)
        .await
        .expect("subscribe");
    // Waits for the SUBACK: no command is sent before the plug listens.
    let deadline = Instant::now() + PATIENCE;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, eventloop.poll()).await {
            Ok(Ok(Event::Incoming(Packet::SubAck(_)))) => break,
            Ok(Ok(_)) => {}
            Ok(Err(e)) => panic!("plug: {e}"),
            Err(_) => panic!("plug: no SUBACK"),
        }
    }
    let topic = topic.to_string();
    let log = seen.clone();
    tokio::spawn(async move {
        let mut relays = std::collections::HashMap::<String, bool>::new();
        let prefix = format!("cmnd/{topic}/");
        while let Ok(ev) = eventloop.poll().await {
            let Event::Incoming(Packet::Publish(p)) = ev else {
                continue;
            };
            let Some(command) = p.topic.strip_prefix(&prefix) else {
                continue;
            };
            let command = command.to_ascii_uppercase();
            if !command.starts_with("POWER") {
                continue;
            }
            let key = if command == "POWER1" {
                "POWER"
            } else {
                &command
            };
            let payload = String::from_utf8_lossy(&p.payload).to_ascii_uppercase();
            if let Ok(mut l) = log.lock() {
                l.push(format!(
                    "{command} {}",
                    if payload.is_empty() { "?" } else { &payload }
                ));
            }
            let state = relays.entry(key.to_string()).or_insert(false);
            match payload.as_str() {
                "ON" | "1" => *state = true,
                "OFF" | "0" => *state = false,
                "TOGGLE" | "2" => *state = !*state,
                _ => {}
            }
            let reported = match behaviour {
                Plug::Honest => *state,
                Plug::Contrary => !*state,
                Plug::Silent => continue,
            };
            let word = if reported { "ON" } else { "OFF" };
            let _ = client.try_publish(
                format!("stat/{topic}/RESULT"),
                QoS::AtLeastOnce,
                false,
                format!("{{\"{key}\":\"{word}\"}}"),
            );
            let _ =
                client.try_publish(format!("stat/{topic}/{key}"), QoS::AtLeastOnce, false, word);
        }
    });
    seen
}

fn tasmota(broker: SocketAddr, topic: &str, relay: Option<u8>) -> PowerDriver {
    PowerDriver::Tasmota {
        broker: broker.to_string(),
        topic: topic.to_string(),
        relay,
        // One per connection: a broker drops the older of two clients with the same id.
        client_id: format!("hilsec-power-{topic}-{}", relay.unwrap_or(0)),
        credentials: Some(("lab".into(), "Tr0ub4dor-plug-pw".into())),
    }
}

fn commands(seen: &Arc<Mutex<Vec<String>>>) -> Vec<String> {
    seen.lock().map(|s| s.clone()).unwrap_or_default()
}

#[tokio::test]
async fn a_tasmota_plug_switches_and_reports() {
    let broker = hilsec_core::broker::start_embedded().expect("embedded broker");
    let seen = plug(broker.addr, "desk-plug", Plug::Honest).await;
    let t = Transcript::new();
    let mut p = PowerLink::open(
        "plug",
        tasmota(broker.addr, "desk-plug", None),
        PATIENCE,
        t.clone(),
    )
    .await
    .expect("open");
    bounded(async {
        assert_eq!(p.state().await.expect("state"), Some(false));
        p.set(true).await.expect("on");
        assert_eq!(p.state().await.expect("state"), Some(true));
        p.set(false).await.expect("off");
        p.cycle(Duration::from_millis(50)).await.expect("cycle");
        assert_eq!(p.state().await.expect("state"), Some(true));
        // Switching to the state it is in is confirmed too.
        p.set(true).await.expect("on again");
    })
    .await;
    assert!(!p.is_closed());
    assert_eq!(
        commands(&seen),
        [
            "POWER ?",
            "POWER ON",
            "POWER ?",
            "POWER OFF",
            "POWER OFF",
            "POWER ON",
            "POWER ?",
            "POWER ON"
        ]
    );
    let shown = text(&t);
    assert!(
        shown.contains(
            r#"power plug: off confirmed by the plug (stat/desk-plug/+ {"POWER":"OFF"})"#
        ),
        "{shown}"
    );
    assert!(
        shown.contains("power plug: on (publish cmnd/desk-plug/POWER ON)"),
        "{shown}"
    );
    assert!(!shown.contains("Tr0ub4dor"), "the password leaked: {shown}");
}

#[tokio::test]
async fn a_tasmota_relay_by_number() {
    let broker = hilsec_core::broker::start_embedded().expect("embedded broker");
    let seen = plug(broker.addr, "strip", Plug::Honest).await;
    let t = Transcript::new();
    let mut two = PowerLink::open(
        "outlet2",
        tasmota(broker.addr, "strip", Some(2)),
        PATIENCE,
        t.clone(),
    )
    .await
    .expect("open");
    let mut one = PowerLink::open(
        "outlet1",
        tasmota(broker.addr, "strip", Some(1)),
        PATIENCE,
        t.clone(),
    )
    .await
    .expect("open");
    bounded(async {
        two.set(true).await.expect("on");
        assert_eq!(two.state().await.expect("state"), Some(true));
        // Relay 1 is still off: relay 2's reports are not taken for its own.
        assert_eq!(one.state().await.expect("state"), Some(false));
        one.set(true).await.expect("on");
        two.set(false).await.expect("off");
        assert_eq!(one.state().await.expect("state"), Some(true));
    })
    .await;
    assert_eq!(
        commands(&seen),
        [
            "POWER2 ON",
            "POWER2 ?",
            "POWER1 ?",
            "POWER1 ON",
            "POWER2 OFF",
            "POWER1 ?"
        ]
    );
    assert!(
        text(&t).contains(r#"(stat/strip/+ {"POWER2":"ON"})"#),
        "{}",
        text(&t)
    );
}

#[tokio::test]
async fn a_silent_plug_is_a_timeout() {
    let broker = hilsec_core::broker::start_embedded().expect("embedded broker");
    let seen = plug(broker.addr, "mute", Plug::Silent).await;
    let t = Transcript::new();
    let mut p = PowerLink::open(
        "plug",
        tasmota(broker.addr, "mute", None),
        Duration::from_secs(3),
        t.clone(),
    )
    .await
    .expect("open");
    match bounded(p.set(true)).await {
        Err(LinkError::Timeout { pattern, .. }) => {
            assert!(pattern.contains("POWER ON"), "{pattern}")
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    match bounded(p.state()).await {
        Err(LinkError::Timeout { .. }) => {}
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert_eq!(commands(&seen), ["POWER ON", "POWER ?"]);
    assert!(
        text(&t).contains("power plug: on failed: no match for"),
        "{}",
        text(&t)
    );
}

#[tokio::test]
async fn a_plug_reporting_the_wrong_state_is_a_protocol_error() {
    let broker = hilsec_core::broker::start_embedded().expect("embedded broker");
    let _seen = plug(broker.addr, "liar", Plug::Contrary).await;
    let t = Transcript::new();
    let mut p = PowerLink::open(
        "plug",
        tasmota(broker.addr, "liar", None),
        PATIENCE,
        t.clone(),
    )
    .await
    .expect("open");
    match bounded(p.set(true)).await {
        Err(LinkError::Protocol(m)) => assert!(m.contains("reports OFF after ON"), "{m}"),
        other => panic!("expected a protocol error, got {other:?}"),
    }
    assert!(
        text(&t).contains("power plug: on failed: the plug reports OFF after ON"),
        "{}",
        text(&t)
    );
}

#[tokio::test]
async fn an_unreachable_broker_is_an_open_error() {
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port())
        .parse()
        .expect("address");
    let r = bounded(PowerLink::open(
        "plug",
        tasmota(addr, "gone", None),
        PATIENCE,
        Transcript::new(),
    ))
    .await;
    match r {
        Err(LinkError::Open { .. }) => {}
        Err(other) => panic!("expected an open error, got {other:?}"),
        Ok(_) => panic!("opened a plug on a broker nobody serves"),
    }
}

/// mosquitto on a free loopback port, killed on drop; `None` (a loud skip) where it is not
/// installed outside CI.
struct Mosquitto(Child, SocketAddr);

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_mosquitto() -> Option<Mosquitto> {
    let exe = ["/usr/sbin/mosquitto", "mosquitto"].into_iter().find(|p| {
        Command::new(p)
            .arg("-h")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok()
    });
    let Some(exe) = exe else {
        assert!(
            std::env::var_os("CI").is_none(),
            "mosquitto is missing in CI: the test command (ci/test) installs it"
        );
        eprintln!("SKIPPED: mosquitto is not installed (apt-get install mosquitto)");
        return None;
    };
    let port = free_port();
    let child = Command::new(exe)
        .args(["-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start mosquitto");
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let deadline = Instant::now() + PATIENCE;
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "mosquitto did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    Some(Mosquitto(child, addr))
}

#[tokio::test]
async fn a_tasmota_plug_through_mosquitto() {
    // The lab's broker is rarely the embedded one: the same exchange through mosquitto.
    let Some(broker) = start_mosquitto() else {
        return;
    };
    let seen = plug(broker.1, "bench-plug", Plug::Honest).await;
    let t = Transcript::new();
    let mut p = PowerLink::open(
        "plug",
        tasmota(broker.1, "bench-plug", None),
        PATIENCE,
        t.clone(),
    )
    .await
    .expect("open");
    bounded(async {
        p.set(false).await.expect("off");
        p.cycle(Duration::from_millis(50)).await.expect("cycle");
        assert_eq!(p.state().await.expect("state"), Some(true));
    })
    .await;
    assert_eq!(
        commands(&seen),
        ["POWER OFF", "POWER OFF", "POWER ON", "POWER ?"]
    );
}
