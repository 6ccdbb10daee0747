//! Emulated units in a real QEMU running the reference firmware: the console connected at
//! start keeps the boot output, a QMP warm reset is seen on the console, a power cycle starts
//! from the factory state, the running firmware's memory is read and written through the GDB
//! stub; and, for any emulator command, `{port.*}` variables, readiness by TCP, and an
//! emulator that exits before it is ready reported at once with its last output.
//!
//! Needs `qemu-system-arm` and the firmware in `target/firmware/` (the test command installs
//! and builds both). Without QEMU the QEMU tests say loudly that they were skipped, except in CI
//! (`CI` set), where that is a failure.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hilsec_core::board::{load_boards, Board, LoadMode};
use hilsec_core::device::RunEnv;
use hilsec_core::emulator::{start_unit, EmulatorError, StartedUnit};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The secure build's ELF, built on demand; `None` (with a loud message) when QEMU is missing
/// outside CI.
fn firmware() -> Option<PathBuf> {
    let have_qemu = std::process::Command::new("qemu-system-arm")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !have_qemu {
        assert!(
            std::env::var_os("CI").is_none(),
            "qemu-system-arm is missing in CI: the test command (ci/test) installs it"
        );
        eprintln!("SKIPPED: qemu-system-arm is not on PATH; install it (apt-get install --no-install-recommends qemu-system-arm) or run ci/test");
        return None;
    }
    let elf = repo().join("target/firmware/secure.elf");
    if !elf.is_file() {
        let st = std::process::Command::new(repo().join("fixtures/firmware/build"))
            .arg("secure")
            .status()
            .expect("run fixtures/firmware/build");
        assert!(st.success(), "fixtures/firmware/build failed");
    }
    Some(elf)
}

struct Scratch(PathBuf);
impl Scratch {
    fn new(tag: &str) -> Scratch {
        let d = std::env::temp_dir().join(format!("hilsec-qemu-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("scratch dir");
        Scratch(d)
    }
    fn board(&self, text: &str) -> Board {
        let f = self.0.join("board.toml");
        std::fs::write(&f, text).expect("write board");
        let mut b = load_boards(std::slice::from_ref(&f), LoadMode::Run)
            .unwrap_or_else(|e| panic!("board loads: {e:?}"));
        b.remove(0)
    }
}
impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn qemu_board(elf: &Path, actions: &str) -> String {
    format!(
        r#"
[model]
name = "HilRef F4"

[emulator]
kind = "qemu"
machine = "netduinoplus2"
firmware = "{elf}"
load = [ {{ address = "0x2001f000", text = "HSUNIT1\nname={{unit.name}}\nserial={{unit.serial}}\nmac=02:00:00:00:00:01\npassword={{secret.password}}\n" }} ]
console = "console"
ready_timeout = "30s"

[interfaces.console]
kind = "serial"
tcp = "127.0.0.1:{{port.serial}}"
timeout = "10s"

[interfaces.debug]
kind = "gdb"
address = "127.0.0.1:{{port.gdb}}"
reset_command = "system_reset"
timeout = "5s"

{actions}

[[unit]]
name = "qemu-test-1"
serial = "QT-0001"
password = {{ value = "Qx7!test#Pw4" }}
"#,
        elf = elf.display()
    )
}

async fn bring_up(b: &Board) -> StartedUnit {
    match start_unit(b.units[0].clone(), b.model.clone(), &RunEnv::default()).await {
        Ok(s) => s,
        Err((_, e)) => panic!("the unit starts: {e}"),
    }
}

async fn stop(s: StartedUnit) -> Option<u32> {
    let StartedUnit { device, emulator } = s;
    drop(device);
    let em = emulator.expect("emulated");
    let mut em = em.lock().await;
    let pid = em.pid();
    em.stop().await;
    pid
}

fn gone(pid: Option<u32>) {
    let pid = pid.expect("a pid while running");
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "the emulator (pid {pid}) is still there after stop"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boot_output_is_kept_and_a_qmp_reset_is_seen_on_the_console() {
    let Some(elf) = firmware() else { return };
    let s = Scratch::new("reset");
    let b = s.board(&qemu_board(
        &elf,
        r#"
# Nothing is sent first: the banner can only be there because the console was connected when
# QEMU started listening (QEMU waits for it before the CPU runs).
[actions.boot]
steps = [
  { expect = 'HilRef F4 boot' },
  { expect = 'reset: cold' },
  { expect = 'login: $' },
]

[actions.warm_reset]
steps = [
  { emulator = "reset" },
  { expect = 'reset: warm' },
  { expect = 'login: $', timeout = "20s" },
]
"#,
    ));
    let mut started = bring_up(&b).await;
    let dev = &mut started.device;
    let t = dev.begin_test();
    dev.run_action("boot", &[])
        .await
        .unwrap_or_else(|e| panic!("boot output: {e}\n{}", t.render(dev.redactor())));
    let t = dev.begin_test();
    dev.run_action("warm_reset", &[])
        .await
        .unwrap_or_else(|e| panic!("warm reset: {e}\n{}", t.render(dev.redactor())));
    let text = t.render(dev.redactor());
    assert!(text.contains("QMP system_reset"), "{text}");
    gone(stop(started).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_of_the_running_firmware_is_read_and_written_through_gdb() {
    let Some(elf) = firmware() else { return };
    let s = Scratch::new("gdb");
    let b = s.board(&qemu_board(
        &elf,
        r#"
[actions.prompt]
steps = [ { send = "\n", flush = true }, { expect = 'login: $' } ]

# The unit data the harness placed at start: "HSUNIT1\n".
[actions.peek_unit_data]
on = "debug"
steps = [ { read_memory = "0x2001f000", length = 8, expect = '^4853554e', capture = "raw" } ]

[actions.poke]
params = ["value"]
on = "debug"
steps = [
  { write_memory = "0x2001fc00", value = "{value}" },
  { read_memory = "0x2001fc00", length = 4, capture = "back" },
]
"#,
    ));
    let mut started = bring_up(&b).await;
    let dev = &mut started.device;
    let t = dev.begin_test();
    let out = dev.run_action("peek_unit_data", &[]).await.expect("peek");
    assert_eq!(out.captures["raw"], "4853554e4954310a", "HSUNIT1\\n");
    let value = hilsec_core::secret::SecretValue::plain("c0ffee42");
    let out = dev
        .run_action("poke", &[("value", value)])
        .await
        .expect("poke");
    assert_eq!(out.captures["back"], "c0ffee42");
    // The firmware still runs after the debug accesses: its console answers.
    dev.run_action("prompt", &[])
        .await
        .expect("the console answers after the debug accesses");
    let text = t.render(dev.redactor());
    assert!(
        text.contains("0x2001fc00"),
        "each access is in the evidence:\n{text}"
    );
    gone(stop(started).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_power_cycle_restarts_the_emulator_from_the_factory_state() {
    let Some(elf) = firmware() else { return };
    let s = Scratch::new("power");
    let b = s.board(&qemu_board(
        &elf,
        r#"
[actions.power_cycle]
steps = [
  { emulator = "power_cycle" },
  { expect = 'reset: cold', timeout = "20s" },
  { expect = 'login: $', timeout = "20s" },
]
"#,
    ));
    let mut started = bring_up(&b).await;
    let first = started
        .emulator
        .as_ref()
        .expect("emulated")
        .lock()
        .await
        .pid();
    let dev = &mut started.device;
    let t = dev.begin_test();
    dev.run_action("power_cycle", &[])
        .await
        .expect("power cycle");
    let text = t.render(dev.redactor());
    assert!(text.contains("power cycle"), "{text}");
    assert!(text.contains("started again"), "{text}");
    let second = started
        .emulator
        .as_ref()
        .expect("emulated")
        .lock()
        .await
        .pid();
    assert_ne!(first, second, "a new process");
    gone(first);
    gone(stop(started).await);
}

fn process_board(args: &str, ready: &str) -> String {
    format!(
        r#"
[model]
name = "Process"

[emulator]
kind = "process"
command = "sh"
args = {args}
{ready}
ready_timeout = "60s"

[[unit]]
name = "proc-1"
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emulator_that_exits_before_it_is_ready_is_reported_at_once_with_its_last_output() {
    let s = Scratch::new("early-exit");
    let b = s.board(&process_board(
        r#"["-c", "echo starting; printf 'fatal: no such machine'; exit 3"]"#,
        "ready = 'never printed'",
    ));
    let t0 = Instant::now();
    let err = match start_unit(b.units[0].clone(), b.model.clone(), &RunEnv::default()).await {
        Ok(_) => panic!("must not be ready"),
        Err((_, e)) => e,
    };
    // Not after the 60 s ready timeout.
    assert!(t0.elapsed() < Duration::from_secs(20), "{:?}", t0.elapsed());
    match &err {
        EmulatorError::Exited { status, tail, .. } => {
            assert!(status.contains('3'), "{status}");
            // The last line had no newline; it is kept.
            assert!(tail.contains("fatal: no such machine"), "{tail}");
        }
        other => panic!("{other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unit_is_ready_when_its_port_accepts_and_ports_are_template_variables() {
    let s = Scratch::new("ready-tcp");
    // Listens only after a while, prints nothing: ready only by TCP.
    let b = s.board(&process_board(
        r#"["-c", "sleep 0.5; exec python3 -c 'import socket,sys,time; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind((\"127.0.0.1\", int(sys.argv[1]))); s.listen(); time.sleep(60)' {port.web}"]"#,
        r#"ready_tcp = "127.0.0.1:{port.web}""#,
    ));
    let model = Arc::clone(&b.model);
    let e = model.emulator.as_ref().expect("emulator");
    assert!(e.ports.contains("web"), "{:?}", e.ports);
    let started = bring_up(&b).await;
    let port = started
        .device
        .globals()
        .get("port.web")
        .map(|v| v.expose().to_string())
        .expect("{port.web} is set");
    let port: u16 = port.parse().expect("a port number");
    tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("the unit listens on {port.web}");
    gone(stop(started).await);
}
