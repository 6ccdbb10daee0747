//! Firmware images written through a GDB stub (`iface::flash::load_via_memory`, reached through
//! `GdbLink`'s `DebugAccess::flash`) against a real QEMU.
//!
//! QEMU runs `-M netduinoplus2` (STM32F405, flash at 0x08000000) booting the reference
//! firmware's `universal-password.elf`; the test writes `secure.elf` over it as ELF, as Intel HEX
//! and as a raw binary, and reads the flash back each time. What QEMU 7.2's gdbstub does, as
//! observed and relied on here:
//! - memory writes reach the flash (it is ROM to the CPU, but the stub writes it), and the data
//!   stays there across `system_reset`;
//! - a write to an unmapped address (0x60000000) is answered `OK` and dropped; only reading it
//!   back is refused (`E14`), so verification is what catches it;
//! - writes to peripheral registers are dropped too (they read back their own value), which
//!   gives a real verification mismatch.
//!
//! Needs the reference firmware (`fixtures/firmware/build` puts it in `target/firmware/`; CI
//! builds it before the tests) and fails if it is missing. If `qemu-system-arm` is not on PATH
//! the test says loudly that it was skipped and passes.

mod common;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hilsec_core::iface::debug::{register, DebugAccess};
use hilsec_core::iface::flash::{
    FlashProgress, FlashReport, FlashRequest, ImageFormat, ProgressSink,
};
use hilsec_core::iface::gdb::{GdbLink, GdbOptions};
use hilsec_core::iface::LinkError;
use hilsec_core::transcript::Transcript;
use object::read::elf::{FileHeader, ProgramHeader};

use common::qemu::{firmware, qemu_available, skipped, Qemu};

/// Start of the STM32F405's flash.
const FLASH: u64 = 0x0800_0000;
/// USART1's status register: reads back its own value (0xc0, transmitter idle), whatever is
/// written through the stub.
const USART1_SR: u64 = 0x4001_1000;
/// Nothing is mapped here on the STM32F405 (FSMC bank 1 without memory).
const UNMAPPED: u64 = 0x6000_0000;

/// An ELF's `PT_LOAD` segments with file contents: (physical address, bytes), sorted.
/// Parsed here with `object` directly, independently of the code under test.
fn loadable(path: &Path) -> Vec<(u64, Vec<u8>)> {
    let bytes = std::fs::read(path).expect("read ELF");
    let header = object::elf::FileHeader32::<object::Endianness>::parse(&*bytes).expect("ELF32");
    let endian = header.endian().expect("endianness");
    let mut out: Vec<(u64, Vec<u8>)> = header
        .program_headers(endian, &*bytes)
        .expect("program headers")
        .iter()
        .filter(|ph| ph.p_type(endian) == object::elf::PT_LOAD && ph.p_filesz(endian) > 0)
        .map(|ph| {
            (
                u64::from(ph.p_paddr(endian)),
                ph.data(endian, &*bytes).expect("segment data").to_vec(),
            )
        })
        .collect();
    out.sort_by_key(|(a, _)| *a);
    out
}

/// The loadable segments as one contiguous block from the first address (the reference
/// firmware's are contiguous: vector table, code, read-only data).
fn contiguous(segments: &[(u64, Vec<u8>)]) -> (u64, Vec<u8>) {
    let base = segments[0].0;
    let mut block = Vec::new();
    for (address, data) in segments {
        assert_eq!(
            *address,
            base + block.len() as u64,
            "the firmware's loadable segments are expected to be contiguous"
        );
        block.extend_from_slice(data);
    }
    (base, block)
}

/// The block as Intel HEX: 16-byte data records, an extended linear address record per 64 KiB.
fn to_hex(base: u64, data: &[u8]) -> String {
    let mut records = Vec::new();
    let mut upper = None;
    for (i, part) in data.chunks(16).enumerate() {
        let address = base + (i * 16) as u64;
        let high = (address >> 16) as u16;
        if upper != Some(high) {
            records.push(ihex::Record::ExtendedLinearAddress(high));
            upper = Some(high);
        }
        records.push(ihex::Record::Data {
            offset: address as u16,
            value: part.to_vec(),
        });
    }
    records.push(ihex::Record::StartLinearAddress(base as u32 | 1));
    records.push(ihex::Record::EndOfFile);
    ihex::create_object_file_representation(&records).expect("write Intel HEX")
}

/// QEMU booting `kernel`, attached with the target running.
async fn start_attached(kernel: &Path, t: &Transcript) -> (Qemu, GdbLink) {
    let kernel = kernel.display().to_string();
    let qemu = Qemu::start(|_| {
        vec![
            "-serial".into(),
            "null".into(),
            "-kernel".into(),
            kernel.clone(),
        ]
    })
    .await;
    let link = GdbLink::connect(
        "gdb",
        &qemu.address(),
        Duration::from_secs(10),
        t.clone(),
        GdbOptions {
            reset_command: Some("system_reset".into()),
            running: true,
        },
    )
    .await
    .unwrap_or_else(|e| panic!("cannot attach to QEMU's gdbstub: {e}"));
    (qemu, link)
}

/// Progress events with when they came.
type Events = Arc<Mutex<Vec<(Instant, FlashProgress)>>>;

/// A progress sink that keeps every event with when it came.
fn recorder() -> (ProgressSink, Events) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    (
        Arc::new(move |p| log.lock().unwrap().push((Instant::now(), p))),
        seen,
    )
}

/// Checks the events of a successful flash of `total` bytes: started, written monotonically
/// up to the total in chunks of at most 4 KiB, verifying when asked, finished.
fn check_progress(events: &[FlashProgress], total: u64, verify: bool) {
    assert_eq!(
        events.first(),
        Some(&FlashProgress::Started { total }),
        "{events:?}"
    );
    assert_eq!(events.last(), Some(&FlashProgress::Finished), "{events:?}");
    let written: Vec<u64> = events
        .iter()
        .filter_map(|e| match e {
            FlashProgress::Written { done, total: t } => {
                assert_eq!(*t, total);
                Some(*done)
            }
            _ => None,
        })
        .collect();
    assert!(!written.is_empty(), "{events:?}");
    let mut last = 0;
    for done in &written {
        assert!(*done > last && done - last <= 4096, "{events:?}");
        last = *done;
    }
    assert_eq!(last, total, "{events:?}");
    let verifying = events
        .iter()
        .position(|e| *e == FlashProgress::Verifying { total });
    if verify {
        let at = verifying.expect("a Verifying event");
        assert!(
            events[..at]
                .iter()
                .all(|e| !matches!(e, FlashProgress::Finished)),
            "{events:?}"
        );
        assert_eq!(
            at,
            events.len() - 2,
            "Verifying comes after the writes: {events:?}"
        );
    } else {
        assert!(verifying.is_none(), "{events:?}");
    }
}

/// Reads `len` bytes from `address` in pieces the link allows.
async fn read_back(link: &mut GdbLink, address: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        let n = (len - out.len()).min(16 * 1024);
        let part = link
            .read_memory(address + out.len() as u64, n)
            .await
            .expect("read back");
        out.extend_from_slice(&part);
    }
    out
}

async fn flash(
    link: &mut GdbLink,
    path: &Path,
    format: ImageFormat,
    verify: bool,
) -> (
    Result<FlashReport, LinkError>,
    Vec<(Instant, FlashProgress)>,
) {
    let (sink, seen) = recorder();
    let req = FlashRequest {
        path: path.to_path_buf(),
        format,
        verify,
    };
    let r = link.flash(&req, &sink).await;
    let events = seen.lock().unwrap().clone();
    (r, events)
}

fn kinds(events: &[(Instant, FlashProgress)]) -> Vec<FlashProgress> {
    events.iter().map(|(_, p)| *p).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flash_through_qemu_gdbstub() {
    let secure_elf = firmware("secure");
    let universal_elf = firmware("universal-password");
    if !qemu_available() {
        skipped(
            "flash_qemu::flash_through_qemu_gdbstub: qemu-system-arm is not on PATH; \
             install QEMU (Debian: qemu-system-arm) to run the GDB flash test",
        );
        return;
    }
    let secure_segments = loadable(&secure_elf);
    let (base, secure) = contiguous(&secure_segments);
    let (universal_base, universal) = contiguous(&loadable(&universal_elf));
    assert_eq!(base, FLASH);
    assert_eq!(universal_base, FLASH);
    let total: u64 = secure_segments.iter().map(|(_, d)| d.len() as u64).sum();
    assert_eq!(total, secure.len() as u64);
    // Compare over the longer of the two images, so leftovers would show.
    let span = secure.len().max(universal.len());
    let expect = |image: &[u8], now: &[u8]| {
        let n = image.len();
        assert!(
            now[..n] == *image,
            "flash does not hold the image; first difference at {:#010x}",
            FLASH + now.iter().zip(image).position(|(a, b)| a != b).unwrap_or(0) as u64
        );
    };
    assert_ne!(
        secure, universal,
        "the two firmware variants must differ for this test to show anything"
    );

    let t = Transcript::new();
    let (_qemu, mut link) = start_attached(&universal_elf, &t).await;
    assert!(!link.is_halted(), "the firmware runs while attached");
    let before = read_back(&mut link, FLASH, span).await;
    expect(&universal, &before);

    // ELF, verified.
    let started = Instant::now();
    let (r, events) = flash(&mut link, &secure_elf, ImageFormat::Elf, true).await;
    let elapsed = started.elapsed();
    let report = r.unwrap_or_else(|e| panic!("flashing secure.elf: {e}"));
    assert_eq!(
        report,
        FlashReport {
            bytes: total,
            regions: vec![(FLASH, total)],
            verified: true,
        }
    );
    check_progress(&kinds(&events), total, true);
    assert!(
        link.is_halted(),
        "the core is left halted for the caller's reset"
    );
    expect(&secure, &read_back(&mut link, FLASH, span).await);
    // The alias of flash at 0 (boot from flash) shows the new image too.
    assert_eq!(link.read_memory(0, 64).await.unwrap(), secure[..64]);
    let write_end = events
        .iter()
        .find(|(_, p)| matches!(p, FlashProgress::Verifying { .. }))
        .map(|(at, _)| *at)
        .expect("Verifying");
    let write_time = write_end.duration_since(events[0].0);
    eprintln!(
        "flash_qemu: secure.elf, {total} bytes over GDB: {:.0} ms in all ({:.0} bytes/s with \
         verification), writing {:.0} ms ({:.0} bytes/s)",
        elapsed.as_secs_f64() * 1e3,
        total as f64 / elapsed.as_secs_f64(),
        write_time.as_secs_f64() * 1e3,
        total as f64 / write_time.as_secs_f64().max(1e-6),
    );

    // Back to the other firmware (ELF again, unverified), then the same image as Intel HEX.
    let dir = tempfile::tempdir().expect("temp dir");
    let (r, events) = flash(&mut link, &universal_elf, ImageFormat::Elf, false).await;
    let report = r.expect("flash universal-password.elf");
    assert!(!report.verified);
    check_progress(&kinds(&events), universal.len() as u64, false);
    expect(&universal, &read_back(&mut link, FLASH, span).await);

    let hex = dir.path().join("secure.hex");
    std::fs::write(&hex, to_hex(base, &secure)).expect("write HEX");
    let (r, events) = flash(&mut link, &hex, ImageFormat::Hex, true).await;
    let report = r.unwrap_or_else(|e| panic!("flashing secure.hex: {e}"));
    assert_eq!(
        report,
        FlashReport {
            bytes: total,
            regions: vec![(FLASH, total)],
            verified: true,
        }
    );
    check_progress(&kinds(&events), total, true);
    expect(&secure, &read_back(&mut link, FLASH, span).await);

    // ... and as a raw binary at its base.
    let (r, _) = flash(&mut link, &universal_elf, ImageFormat::Elf, true).await;
    r.expect("flash universal-password.elf");
    let bin = dir.path().join("secure.bin");
    std::fs::write(&bin, &secure).expect("write BIN");
    let (r, events) = flash(&mut link, &bin, ImageFormat::Bin { base }, true).await;
    let report = r.unwrap_or_else(|e| panic!("flashing secure.bin: {e}"));
    assert_eq!(
        report,
        FlashReport {
            bytes: total,
            regions: vec![(FLASH, total)],
            verified: true,
        }
    );
    check_progress(&kinds(&events), total, true);
    expect(&secure, &read_back(&mut link, FLASH, span).await);

    // A binary at an unmapped address: QEMU answers the writes OK and drops them; reading
    // back is refused, so a verified flash fails with the stub's refusal.
    let small = dir.path().join("small.bin");
    std::fs::write(&small, [0xa5u8; 256]).expect("write small BIN");
    let (r, events) = flash(&mut link, &small, ImageFormat::Bin { base: UNMAPPED }, true).await;
    match r {
        Err(LinkError::Refused(m)) => {
            assert!(m.contains("0x60000000") && m.contains("E14"), "{m}");
        }
        other => panic!("expected the stub's refusal, got {other:?}"),
    }
    assert!(!kinds(&events).contains(&FlashProgress::Finished));
    assert!(!link.is_closed(), "a refusal leaves the link usable");
    expect(&secure, &read_back(&mut link, FLASH, span).await);
    // Unverified, the same load "succeeds": only verification tells.
    let (r, _) = flash(
        &mut link,
        &small,
        ImageFormat::Bin { base: UNMAPPED },
        false,
    )
    .await;
    assert!(!r.expect("unverified load at an unmapped address").verified);

    // A verification mismatch for real: a peripheral register ignores the stub's writes.
    let sr = dir.path().join("sr.bin");
    std::fs::write(&sr, [0x5au8; 4]).expect("write SR BIN");
    let (r, events) = flash(&mut link, &sr, ImageFormat::Bin { base: USART1_SR }, true).await;
    match r {
        Err(LinkError::Protocol(m)) => {
            assert!(
                m.contains("at 0x40011000 expected 5a 5a 5a 5a but found"),
                "{m}"
            );
            assert!(
                m.contains("read-only") && m.contains("flash algorithm"),
                "{m}"
            );
            assert!(m.contains("sr.bin"), "{m}");
        }
        other => panic!("expected a verification mismatch, got {other:?}"),
    }
    assert_eq!(
        kinds(&events).last(),
        Some(&FlashProgress::Verifying { total: 4 })
    );
    assert!(!link.is_closed());

    // An image that cannot be read fails before anything is sent.
    let (r, events) = flash(&mut link, &bin, ImageFormat::Elf, true).await;
    match r {
        Err(LinkError::Protocol(m)) => assert!(m.contains("not an ELF file"), "{m}"),
        other => panic!("expected an image error, got {other:?}"),
    }
    assert!(events.is_empty());

    // The flashed image survives a reset and is what boots: the core starts at secure.elf's
    // reset vector, and flash still holds it afterwards.
    link.reset().await.expect("reset");
    assert!(link.is_halted(), "reset keeps the caller's run state");
    let reset_vector = u32::from_le_bytes(secure[4..8].try_into().unwrap());
    let regs = link.read_registers().await.unwrap();
    assert_eq!(
        register(&regs, "pc"),
        Some(u64::from(reset_vector & !1)),
        "{regs:?}"
    );
    expect(&secure, &read_back(&mut link, FLASH, span).await);
    link.resume().await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    link.halt().await.unwrap();
    let pc = register(&link.read_registers().await.unwrap(), "pc").unwrap();
    assert!(
        (FLASH..FLASH + total).contains(&pc),
        "the new image runs: pc {pc:#x}"
    );
    link.close().await.unwrap();

    let text = t.render(&hilsec_core::secret::Redactor::default());
    for needle in [
        "debug gdb: wrote 4096 bytes at 0x08000000",
        "debug gdb: read 4096 bytes at 0x08000000",
        "debug gdb: halted",
    ] {
        assert!(text.contains(needle), "transcript lacks {needle:?}");
    }
    if std::env::var_os("FLASH_QEMU_SHOW").is_some() {
        eprintln!("{text}");
    }
}
