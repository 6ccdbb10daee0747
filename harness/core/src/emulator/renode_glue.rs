//! The Renode backend as the emulator module uses it: the board's values turned into a
//! [`super::renode::RenodeSetup`] and its script, and the monitor requests behind `reset` and
//! the orderly stop. One monitor connection per request (Renode serves one client at a time).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::renode::{BinaryLoad, Monitor, Platform, RenodeSetup};
use super::EmulatorError;

/// What the board and the chosen ports say about one Renode unit.
pub(super) struct Setup {
    pub machine: String,
    pub platform: String,
    pub firmware: PathBuf,
    pub loads: Vec<(u64, PathBuf)>,
    pub uart: String,
    pub serial: u16,
    pub gdb: u16,
    pub monitor: u16,
}

/// Renode machine names: the unit's name with every character Renode's monitor would not read
/// as part of one literal replaced by `_`.
fn machine_name(unit: &str) -> String {
    unit.chars()
        .map(|c| {
            if super::renode::is_monitor_literal(c.encode_utf8(&mut [0; 4])) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Writes the unit's script into `dir` and returns Renode's arguments.
pub(super) fn prepare(s: &Setup, dir: &Path) -> Result<Vec<String>, EmulatorError> {
    let absolute = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    if !s.firmware.is_file() {
        return Err(EmulatorError::Files(format!(
            "firmware {} does not exist",
            s.firmware.display()
        )));
    }
    let platform = match Platform::parse(&s.platform) {
        Platform::File(p) => Platform::File(absolute(&p)),
        builtin => builtin,
    };
    let mut setup = RenodeSetup::new(
        machine_name(&s.machine),
        platform,
        absolute(&s.firmware),
        s.serial,
        s.monitor,
    );
    setup.uart = s.uart.clone();
    setup.gdb_port = Some(s.gdb);
    setup.binaries = s
        .loads
        .iter()
        .map(|(address, path)| BinaryLoad {
            path: absolute(path),
            address: *address,
        })
        .collect();
    let script = super::renode::script(&setup).map_err(|e| EmulatorError::Files(e.to_string()))?;
    let path = dir.join("unit.resc");
    super::write_private(&path, script.as_bytes())?;
    super::renode::command_line(&setup, &path).map_err(|e| EmulatorError::Files(e.to_string()))
}

fn socket(addr: &str) -> Result<SocketAddr, EmulatorError> {
    addr.parse()
        .map_err(|_| EmulatorError::Control(format!("{addr} is not a monitor address")))
}

/// `machine Reset` on the unit's machine.
pub(super) async fn reset(addr: &str, machine: &str, t: Duration) -> Result<(), EmulatorError> {
    let control = |e: super::renode::MonitorError| EmulatorError::Control(e.to_string());
    let mut m = Monitor::connect(socket(addr)?, t).await.map_err(control)?;
    m.select_machine(&machine_name(machine), t)
        .await
        .map_err(control)?;
    m.reset(t).await.map_err(control)
}

/// Asks Renode to quit (best effort; the caller kills the process group afterwards anyway).
pub(super) async fn quit(addr: &str, t: Duration) {
    if let Ok(a) = socket(addr) {
        if let Ok(m) = Monitor::connect(a, t).await {
            let _ = m.quit(t).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a board's `[emulator] kind = "renode"` becomes: the script loads the firmware and
    /// the unit data at their addresses, wires the UART to the serial port raw (no telnet), starts
    /// the GDB server, and Renode's monitor listens on the monitor port.
    #[test]
    fn a_board_becomes_a_renode_script_and_command_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fw = dir.path().join("fw.elf");
        std::fs::write(&fw, b"\x7fELF").expect("fw");
        let data = dir.path().join("load-0.bin");
        std::fs::write(&data, b"HSUNIT1\n\0").expect("data");
        let setup = Setup {
            machine: "renode-hilref-secure-1".into(),
            platform: "@platforms/boards/stm32f4_discovery-kit.repl".into(),
            firmware: fw.clone(),
            loads: vec![(0x2001_f000, data.clone())],
            uart: "sysbus.usart1".into(),
            serial: 40001,
            gdb: 40002,
            monitor: 40003,
        };
        let args = prepare(&setup, dir.path()).expect("prepared");
        let script = std::fs::read_to_string(dir.path().join("unit.resc")).expect("script written");
        assert!(args.iter().any(|a| a == "40003"), "{args:?}");
        assert!(args.iter().any(|a| a == "--disable-xwt"), "{args:?}");
        for want in [
            "mach create \"renode-hilref-secure-1\"",
            "machine LoadPlatformDescription @platforms/boards/stm32f4_discovery-kit.repl",
            &format!("sysbus LoadELF @{}", fw.display()),
            &format!("sysbus LoadBinary @{} 0x2001f000", data.display()),
            "emulation CreateServerSocketTerminal 40001 \"uart\" false",
            "connector Connect sysbus.usart1 uart",
            "machine StartGdbServer 40002 false",
            "start",
        ] {
            assert!(script.contains(want), "{want:?} missing from:\n{script}");
        }
        // A missing firmware is said before Renode is started.
        let mut bad = setup;
        bad.firmware = dir.path().join("missing.elf");
        let err = prepare(&bad, dir.path()).expect_err("refused").to_string();
        assert!(err.contains("missing.elf"), "{err}");
    }
}
