//! The Renode backend against a real Renode: the reference firmware boots to its login prompt
//! on the UART's TCP port, a reset through the monitor boots it again, and `quit` ends Renode.
//!
//! Runs only when `renode` is on PATH (otherwise it says SKIPPED on stderr and passes). Needs
//! the reference firmware at `target/firmware/secure.elf` (built from `fixtures/firmware`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use hilsec_core::emulator::renode::{
    command_line, script, BinaryLoad, Monitor, Platform, RenodeSetup, STM32F4_DISCOVERY,
};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::process::Command;

fn on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// Free loopback ports, all bound at once so they differ, then released for Renode.
fn free_ports<const N: usize>() -> [u16; N] {
    let listeners: Vec<std::net::TcpListener> = (0..N)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port"))
        .collect();
    let mut ports = [0u16; N];
    for (p, l) in ports.iter_mut().zip(&listeners) {
        *p = l.local_addr().expect("addr").port();
    }
    ports
}

/// Reads the UART until `needle` has appeared (after what was already seen), or panics.
async fn wait_for(
    uart: &mut TcpStream,
    seen: &mut Vec<u8>,
    needle: &str,
    within: Duration,
    log: &Path,
) {
    let from = seen.len();
    let deadline = Instant::now() + within;
    let mut buf = [0u8; 1024];
    loop {
        if String::from_utf8_lossy(&seen[from..]).contains(needle) {
            return;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, uart.read(&mut buf)).await {
            Ok(Ok(0)) => panic!(
                "the UART connection closed before {needle:?}; UART so far: {:?}\nRenode output:\n{}",
                String::from_utf8_lossy(seen),
                std::fs::read_to_string(log).unwrap_or_default()
            ),
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
            Ok(Err(e)) => panic!("reading the UART: {e}"),
            Err(_) => panic!(
                "no {needle:?} on the UART within {within:?}; UART so far: {:?}\nRenode output:\n{}",
                String::from_utf8_lossy(seen),
                std::fs::read_to_string(log).unwrap_or_default()
            ),
        }
    }
}

async fn connect_uart(addr: SocketAddr, within: Duration) -> TcpStream {
    let deadline = Instant::now() + within;
    loop {
        match TcpStream::connect(addr).await {
            Ok(s) => return s,
            Err(e) if Instant::now() >= deadline => panic!("UART port {addr}: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reference_firmware_boots_resets_and_quits_under_renode() {
    let Some(renode) = on_path("renode") else {
        eprintln!(
            "SKIPPED: renode is not on PATH; install Renode 1.16 (portable package or .deb) and \
             put `renode` on PATH to run the Renode integration test"
        );
        return;
    };
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let firmware = workspace.join("target/firmware/secure.elf");
    assert!(
        firmware.is_file(),
        "renode is on PATH ({}) but the reference firmware {} is missing: build fixtures/firmware first",
        renode.display(),
        firmware.display()
    );
    let firmware = firmware.canonicalize().expect("firmware path");

    let dir = tempfile::Builder::new()
        .prefix("hilsec renode ")
        .tempdir()
        .expect("temp dir");
    let unit = dir.path().join("unit 1.bin");
    std::fs::write(
        &unit,
        b"HSUNIT1\nserial=RN-TEST-0001\nmac=02:00:5e:10:00:01\npassword=Renode-Test-Pass-1\n\0",
    )
    .expect("unit data");

    let [uart_port, monitor_port] = free_ports::<2>();
    let mut setup = RenodeSetup::new(
        "hilsec-it",
        Platform::Builtin(STM32F4_DISCOVERY.into()),
        firmware,
        uart_port,
        monitor_port,
    );
    setup.binaries.push(BinaryLoad {
        path: unit,
        address: 0x2001_f000,
    });
    let script_path = dir.path().join("unit.resc");
    std::fs::write(&script_path, script(&setup).expect("script")).expect("write script");
    let args = command_line(&setup, &script_path).expect("command line");

    let log = dir.path().join("renode.log");
    let out = std::fs::File::create(&log).expect("log file");
    let mut child = Command::new(&renode)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("log"))
        .stderr(out)
        .kill_on_drop(true)
        .process_group(0)
        .spawn()
        .expect("start renode");

    let monitor_addr: SocketAddr = ([127, 0, 0, 1], monitor_port).into();
    let mut monitor = match Monitor::connect(monitor_addr, Duration::from_secs(90)).await {
        Ok(m) => m,
        Err(e) => panic!(
            "{e}\nRenode output:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        ),
    };

    let mut uart = connect_uart(([127, 0, 0, 1], uart_port).into(), Duration::from_secs(60)).await;
    let mut seen = Vec::new();
    wait_for(
        &mut uart,
        &mut seen,
        " login: ",
        Duration::from_secs(60),
        &log,
    )
    .await;
    let first = String::from_utf8_lossy(&seen).into_owned();
    assert!(
        first.contains("RN-TEST-0001"),
        "the unit data was not loaded: {first:?}"
    );

    if let Err(e) = monitor.reset(Duration::from_secs(30)).await {
        panic!(
            "{e}\nmonitor text so far: {:?}\nRenode output:\n{}",
            monitor.take_unsolicited(),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }
    wait_for(
        &mut uart,
        &mut seen,
        "boot (",
        Duration::from_secs(30),
        &log,
    )
    .await;
    wait_for(
        &mut uart,
        &mut seen,
        " login: ",
        Duration::from_secs(30),
        &log,
    )
    .await;

    monitor.quit(Duration::from_secs(30)).await.expect("quit");
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("renode exits within 30 s of quit")
        .expect("wait for renode");
    eprintln!("renode exited: {status}");
    // The process is gone: its monitor port no longer accepts.
    assert!(TcpStream::connect(monitor_addr).await.is_err());
}
