//! QEMU for the debug-port tests (`gdb_qemu`, `flash_qemu`, `rtt_qemu`): an emulated STM32F405
//! (`-M netduinoplus2`) with its GDB stub on a loopback port, dying with the test.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// Whether `qemu-system-arm` runs here.
pub fn qemu_available() -> bool {
    std::process::Command::new("qemu-system-arm")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Says loudly that a test did not run: straight to the process's stderr, which the test
/// harness does not capture (it captures only `print!`/`eprint!`), so it shows in CI logs.
pub fn skipped(why: &str) {
    use std::io::Write as _;
    let bar = "!".repeat(78);
    let _ = writeln!(std::io::stderr(), "\n{bar}\n!! SKIPPED {why}\n{bar}");
}

/// `<workspace root>/target/firmware/<name>.elf`, or a failure saying how to build it.
pub fn firmware(name: &str) -> PathBuf {
    let elf = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/firmware")
        .join(format!("{name}.elf"));
    assert!(
        elf.exists(),
        "{} is missing: run fixtures/firmware/build (it builds every variant of the reference \
         firmware into target/firmware/)",
        elf.display()
    );
    elf
}

/// A QEMU process with its GDB stub on `port`: own process group, killed on drop (also when
/// the test panics), and by the kernel if the test process dies. `dir` is a scratch folder for
/// the test's files (images, a UART log).
pub struct Qemu {
    pub child: tokio::process::Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
}

impl Qemu {
    /// Starts QEMU with `extra` arguments (made by `args` from the scratch folder) and waits
    /// until its GDB stub listens; with a new port when QEMU could not bind the one chosen
    /// (another process took it in between). A bare connection to the stub changes nothing.
    pub async fn start(args: impl Fn(&Path) -> Vec<String>) -> Qemu {
        for _ in 0..3 {
            let mut qemu = Qemu::spawn(&args);
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Some(status)) = qemu.child.try_wait() {
                    eprintln!("qemu-system-arm exited at start ({status}); trying another port");
                    break;
                }
                if tokio::net::TcpStream::connect(qemu.address()).await.is_ok() {
                    return qemu;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        panic!("qemu-system-arm did not start its gdbstub");
    }

    fn spawn(args: &impl Fn(&Path) -> Vec<String>) -> Qemu {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind a free port")
            .local_addr()
            .expect("local addr")
            .port();
        let mut cmd = tokio::process::Command::new("qemu-system-arm");
        cmd.args(["-M", "netduinoplus2", "-nographic", "-monitor", "none"])
            .args(args(dir.path()))
            .arg("-gdb")
            .arg(format!("tcp:127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .process_group(0);
        // SAFETY: only an async-signal-safe prctl between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                rustix::process::set_parent_process_death_signal(Some(
                    rustix::process::Signal::KILL,
                ))?;
                Ok(())
            });
        }
        let child = cmd.spawn().expect("start qemu-system-arm");
        Qemu { child, port, dir }
    }

    /// The GDB stub's `host:port`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Kills QEMU's process group (the target vanishes).
    pub fn kill(&mut self) {
        if let Some(pid) = self
            .child
            .id()
            .and_then(|p| rustix::process::Pid::from_raw(p as i32))
        {
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
        let _ = self.child.start_kill();
    }
}

impl Drop for Qemu {
    fn drop(&mut self) {
        self.kill();
    }
}
