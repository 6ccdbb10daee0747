//! RTT consoles (`iface::rtt`) against the reference firmware's `rtt` build in a real QEMU,
//! through QEMU's GDB stub (`iface::gdb::GdbLink`): the firmware's console on RTT channel 0 is
//! driven with the same send/expect as a UART's.
//!
//! Needs `target/firmware/rtt.elf` and `secure.elf` (`fixtures/firmware/build`): a missing ELF
//! fails the test with that instruction. Without `qemu-system-arm` on PATH the tests say
//! loudly that they were skipped and pass (as `gdb_qemu.rs` does).
//!
//! Set `RTT_QEMU_SHOW=1` to print the transcripts and the measured latency and throughput.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hilsec_core::iface::debug::DebugAccess;
use hilsec_core::iface::gdb::{GdbLink, GdbOptions};
use hilsec_core::iface::rtt::{open_console, RttOptions, SharedDebug};
use hilsec_core::iface::serial::Console;
use hilsec_core::iface::LinkError;
use hilsec_core::transcript::Transcript;
use regex::bytes::Regex;

use common::qemu::{firmware, qemu_available, skipped, Qemu};

const PASSWORD: &str = "Rtt-Tr0ub4dor-42x";
const SERIAL: &str = "HRF4-RTT-0001";
const UNIT_NAME: &str = "hilref-rtt-1";
/// The STM32F405's SRAM (112 + 16 KiB contiguous at 0x20000000).
const RAM: (u64, u64) = (0x2000_0000, 0x2_0000);
/// Generous: a loaded 2-core machine.
const WAIT: Duration = Duration::from_secs(20);

fn no_qemu(test: &str) -> bool {
    if qemu_available() {
        return false;
    }
    skipped(&format!(
        "rtt_qemu::{test}: qemu-system-arm is not on PATH; install QEMU (Debian: \
         qemu-system-arm) to run the RTT console tests"
    ));
    true
}

/// The address of `symbol` in a 32-bit little-endian ELF (its symbol table), read by hand.
fn elf_symbol(elf: &Path, symbol: &str) -> Option<u64> {
    let f = std::fs::read(elf).ok()?;
    let u16_at = |o: usize| Some(u16::from_le_bytes(f.get(o..o + 2)?.try_into().ok()?));
    let u32_at = |o: usize| Some(u32::from_le_bytes(f.get(o..o + 4)?.try_into().ok()?));
    if f.get(..5)? != b"\x7fELF\x01" {
        return None;
    }
    let shoff = u32_at(0x20)? as usize;
    let shentsize = u16_at(0x2e)? as usize;
    let shnum = u16_at(0x30)? as usize;
    for i in 0..shnum {
        let sh = shoff + i * shentsize;
        if u32_at(sh + 4)? != 2 {
            continue; // not SHT_SYMTAB
        }
        let (off, size, link) = (
            u32_at(sh + 16)? as usize,
            u32_at(sh + 20)? as usize,
            u32_at(sh + 24)? as usize,
        );
        let strtab = u32_at(shoff + link * shentsize + 16)? as usize;
        for s in (off..off + size).step_by(16) {
            let name = strtab + u32_at(s)? as usize;
            let end = name + f.get(name..)?.iter().position(|&b| b == 0)?;
            if &f[name..end] == symbol.as_bytes() {
                return Some(u64::from(u32_at(s + 4)?));
            }
        }
    }
    None
}

/// QEMU running `elf` with a unit's data loaded and its UART written to `uart.txt`, attached
/// through its GDB stub with the target left running.
async fn start(elf: &Path, t: &Transcript) -> (Qemu, SharedDebug) {
    let elf = elf.display().to_string();
    let qemu = Qemu::start(|dir| {
        let unit = dir.join("unit.bin");
        std::fs::write(
            &unit,
            format!(
                "HSUNIT1\nserial={SERIAL}\nmac=02:48:52:00:00:99\npassword={PASSWORD}\nname={UNIT_NAME}\n\0"
            ),
        )
        .expect("write unit data");
        vec![
            "-kernel".into(),
            elf.clone(),
            "-device".into(),
            format!("loader,file={},addr=0x2001f000", unit.display()),
            "-serial".into(),
            format!("file:{}", dir.join("uart.txt").display()),
        ]
    })
    .await;
    let link = GdbLink::connect(
        "gdb",
        &qemu.address(),
        Duration::from_secs(5),
        t.clone(),
        GdbOptions {
            reset_command: Some("system_reset".into()),
            running: true,
        },
    )
    .await
    .unwrap_or_else(|e| panic!("cannot attach to QEMU's gdbstub: {e}"));
    let boxed: Box<dyn DebugAccess> = Box::new(link);
    (qemu, Arc::new(tokio::sync::Mutex::new(boxed)))
}

/// What the firmware wrote on its UART so far.
fn uart(qemu: &Qemu) -> String {
    std::fs::read_to_string(qemu.dir.path().join("uart.txt")).unwrap_or_default()
}

fn render(t: &Transcript) -> String {
    t.render(&hilsec_core::secret::Redactor::default())
}

fn show(what: &str, t: &Transcript) {
    if std::env::var_os("RTT_QEMU_SHOW").is_some() {
        eprintln!("---- {what} ----\n{}", render(t));
    }
}

async fn expect(c: &mut Console, pattern: &str) -> String {
    let re = Regex::new(pattern).unwrap();
    match c.expect(&re, None, WAIT).await {
        Ok(m) => m.text,
        Err(e) => panic!("waiting for /{pattern}/: {e}"),
    }
}

async fn send(c: &mut Console, text: &str) {
    c.send(text.as_bytes(), text, WAIT)
        .await
        .unwrap_or_else(|e| panic!("sending {text:?}: {e}"));
}

fn ram_scan() -> RttOptions {
    RttOptions {
        scan: vec![RAM],
        timeout: WAIT,
        ..Default::default()
    }
}

/// Boot banner, login, a command and its answer, all over RTT found by scanning RAM; the
/// transcript holds the console's bytes and not the polling.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_and_commands_over_rtt() {
    if no_qemu("login_and_commands_over_rtt") {
        return;
    }
    let elf = firmware("rtt");
    let t = Transcript::new();
    let (qemu, debug) = start(&elf, &t).await;
    let debug_entries = |t: &Transcript| render(t).lines().filter(|l| l.contains(" gdb ")).count();
    let attach_entries = debug_entries(&t);
    let mut c = open_console("rtt", debug.clone(), &ram_scan(), t.clone())
        .await
        .unwrap_or_else(|e| panic!("open the RTT console: {e}"));

    // The banner was written before we attached: it waited in the up buffer.
    expect(
        &mut c,
        &format!(r"(?s)build: secure \(console on RTT\)\r\n.*\r\n{UNIT_NAME} login: $"),
    )
    .await;
    send(&mut c, "admin\r").await;
    expect(&mut c, "Password: $").await;
    send(&mut c, &format!("{PASSWORD}\r")).await;
    expect(&mut c, "Welcome to HilRef F4").await;
    let prompt = format!(r"admin@{UNIT_NAME}:~\$ $");
    expect(&mut c, &prompt).await;
    send(&mut c, "identity\r").await;
    expect(
        &mut c,
        &format!(r"(?s)serial={SERIAL}\r\n.*firmware=1\.0\.0\r\n{prompt}"),
    )
    .await;

    // Latency: command round trips.
    let rounds = 20;
    let start = Instant::now();
    for _ in 0..rounds {
        send(&mut c, "version\r").await;
        expect(&mut c, &format!(r"firmware 1\.0\.0\r\n{prompt}")).await;
    }
    let rtt_ms = start.elapsed().as_secs_f64() * 1000.0 / rounds as f64;

    // Throughput host → target: update data lines of 768 base64 characters (576 bytes).
    send(&mut c, "update begin 11520\r").await;
    expect(&mut c, "ready for 11520 bytes").await;
    let chunk = "QUFB".repeat(192); // 576 bytes of 'A'
    let start = Instant::now();
    let mut sent = 0usize;
    for i in 0..20 {
        let line = format!("update data {} {chunk}\r", i * 576);
        sent += line.len();
        send(&mut c, &line).await;
        expect(&mut c, &format!("update: ok {}\r\n", (i + 1) * 576)).await;
    }
    let down_bps = sent as f64 / start.elapsed().as_secs_f64();
    send(&mut c, "update abort\r").await;
    expect(&mut c, "update: aborted").await;

    // Lines twice the down buffer's size (512 bytes): written as the firmware makes room.
    let long = "x".repeat(1000);
    for _ in 0..5 {
        send(&mut c, &format!("{long}\r")).await;
        expect(&mut c, &format!(r"-sh: x{{80}}: not found\r\n{prompt}")).await;
    }
    if std::env::var_os("RTT_QEMU_SHOW").is_some() {
        eprintln!(
            "RTT over QEMU's gdbstub: `version` round trip {rtt_ms:.1} ms; down \
             {down_bps:.0} B/s ({sent} bytes in update lines, each answered)"
        );
    }

    // The UART carries one boot line naming the block.
    let uart = uart(&qemu);
    let at = elf_symbol(&elf, "_SEGGER_RTT").expect("_SEGGER_RTT in rtt.elf");
    assert!(
        uart.contains(&format!("control block _SEGGER_RTT at {at:#010x}")),
        "UART: {uart:?}"
    );

    let text = render(&t);
    show("login_and_commands_over_rtt", &t);
    assert!(
        text.contains(&format!("RTT control block at {at:#010x}")),
        "{text}"
    );
    assert!(text.contains("serial=HRF4-RTT-0001"), "{text}");
    // Hundreds of polls happened; the debug link noted nothing since its attach.
    let polling = debug_entries(&t) - attach_entries;
    assert_eq!(
        polling, 0,
        "{polling} debug-link entries since attach: polling buried the transcript\n{text}"
    );
    drop(c);
    // The link is free again for other users, and not left quiet.
    let mut d = debug.lock().await;
    let before = render(&t).len();
    d.read_memory(at, 16).await.expect("read after the console");
    assert!(render(&t).len() > before, "debug link left quiet");
}

/// The block at its symbol's address (no scan), and a wrong address refused within the
/// timeout, naming the address and what to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declared_control_block_address() {
    if no_qemu("declared_control_block_address") {
        return;
    }
    let elf = firmware("rtt");
    let at = elf_symbol(&elf, "_SEGGER_RTT").expect("_SEGGER_RTT in rtt.elf");
    let t = Transcript::new();
    let (_qemu, debug) = start(&elf, &t).await;

    let wrong = RttOptions {
        control_block: Some(at + 0x40),
        timeout: Duration::from_secs(2),
        ..Default::default()
    };
    let e = open_console("rtt", debug.clone(), &wrong, t.clone())
        .await
        .err()
        .expect("no block at a wrong address");
    let s = e.to_string();
    assert!(matches!(e, LinkError::Open { .. }), "{s}");
    assert!(
        s.contains(&format!("{:#010x}", at + 0x40)) && s.contains("initialises RTT"),
        "{s}"
    );

    let opts = RttOptions {
        control_block: Some(at),
        timeout: WAIT,
        ..Default::default()
    };
    let mut c = open_console("rtt", debug, &opts, t.clone())
        .await
        .unwrap_or_else(|e| panic!("open at {at:#x}: {e}"));
    expect(&mut c, "login: $").await;
    send(&mut c, "\r").await;
    expect(&mut c, &format!("\r\n{UNIT_NAME} login: $")).await;
    // A wrong password, answered at once (first failure).
    send(&mut c, "admin\r").await;
    expect(&mut c, "Password: $").await;
    send(&mut c, "not-the-password\r").await;
    expect(&mut c, "Login incorrect\r\n").await;

    // A warm reset of the firmware (startup zeroes and rebuilds the block at the same
    // address): the console carries on.
    expect(&mut c, "login: $").await;
    send(&mut c, "admin\r").await;
    expect(&mut c, "Password: $").await;
    send(&mut c, &format!("{PASSWORD}\r")).await;
    expect(&mut c, r"\$ $").await;
    send(&mut c, "factory-reset\r").await;
    expect(&mut c, "Rebooting...\r\n").await;
    expect(
        &mut c,
        &format!(r"(?s)reset: warm \(state retained\).*{UNIT_NAME} login: $"),
    )
    .await;
    send(&mut c, "admin\r").await;
    expect(&mut c, "Password: $").await;
    show("declared_control_block_address", &t);
}

/// A firmware without RTT (the UART build): an Open error once the timeout passes, naming the
/// scanned RAM and what to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firmware_without_rtt_is_an_open_error() {
    if no_qemu("firmware_without_rtt_is_an_open_error") {
        return;
    }
    let elf = firmware("secure");
    let t = Transcript::new();
    let (_qemu, debug) = start(&elf, &t).await;
    let opts = RttOptions {
        scan: vec![RAM],
        timeout: Duration::from_secs(2),
        ..Default::default()
    };
    let e = tokio::time::timeout(WAIT * 3, open_console("rtt", debug, &opts, t.clone()))
        .await
        .expect("open_console must give up after its timeout")
        .err()
        .expect("no RTT in the UART build");
    let s = e.to_string();
    assert!(matches!(e, LinkError::Open { .. }), "{s}");
    assert!(
        s.contains("0x20000000..0x20020000") && s.contains("control_block"),
        "{s}"
    );
    show("firmware_without_rtt_is_an_open_error", &t);
}

/// QEMU killed under an open console: the console reports the link closed (not a timeout, not
/// a hang) and the transcript says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_target_closes_the_console() {
    if no_qemu("killed_target_closes_the_console") {
        return;
    }
    let elf = firmware("rtt");
    let t = Transcript::new();
    let (mut qemu, debug) = start(&elf, &t).await;
    let mut c = open_console("rtt", debug, &ram_scan(), t.clone())
        .await
        .unwrap_or_else(|e| panic!("open the RTT console: {e}"));
    expect(&mut c, "login: $").await;
    qemu.kill();
    let never = Regex::new("never sent").unwrap();
    let e = c
        .expect(&never, None, Duration::from_secs(120))
        .await
        .expect_err("the target is gone");
    assert!(matches!(e, LinkError::Closed(_)), "{e}");
    assert!(c.is_closed());
    let err = c.send(b"\r", "\\r", WAIT).await.expect_err("closed");
    assert!(matches!(err, LinkError::Closed(_)), "{err}");
    let text = render(&t);
    show("killed_target_closes_the_console", &t);
    assert!(text.contains("RTT console closed"), "{text}");
}
