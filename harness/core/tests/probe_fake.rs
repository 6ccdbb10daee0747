//! The probe-rs debug backend (`iface::probe`) against probe-rs's `FakeProbe`: no hardware.
//!
//! The fake attaches as an nRF51 (Cortex-M0), answers memory reads with zeros or with the
//! loadable bytes of an ELF file, halts and resumes through DHCSR, takes 32-bit writes and
//! panics (`todo!`) on 8-bit ones, which is how a panicking driver is exercised. The ELF is
//! written by the test itself (one PT_LOAD segment with known bytes), so no firmware build is
//! needed.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use hilsec_core::iface::debug::{hex_preview, register, DebugAccess, MAX_ACCESS};
use hilsec_core::iface::flash::{FlashRequest, ImageFormat, ProgressSink};
use hilsec_core::iface::probe::{
    check_chip, check_selector, list_probes, list_probes_with, ProbeOptions, ProbeRsLink,
};
use hilsec_core::iface::LinkError;
use hilsec_core::secret::Redactor;
use hilsec_core::transcript::Transcript;
use probe_rs::integration::{FakeProbe, ProbeLister};
use probe_rs::probe::list::{Lister, ProbeListItem};
use probe_rs::probe::{
    DebugProbe, DebugProbeError, DebugProbeInfo, DebugProbeSelector, ProbeCreationError,
    ProbeFactory,
};

const CHIP: &str = "nrf51822_xxAC";
const RAM: u32 = 0x2000_0000;

fn opts() -> ProbeOptions {
    ProbeOptions {
        chip: CHIP.into(),
        // Generous: the machine running the tests may be loaded.
        timeout: Duration::from_secs(60),
        ..ProbeOptions::default()
    }
}

fn text(t: &Transcript) -> String {
    t.render(&Redactor::default())
}

async fn fake_link(t: &Transcript) -> ProbeRsLink {
    ProbeRsLink::from_probe(
        "swd",
        FakeProbe::with_mocked_core().into_probe(),
        &opts(),
        t.clone(),
    )
    .await
    .expect("attach through the fake probe")
}

/// The bytes the test ELF loads at [`RAM`].
fn pattern() -> Vec<u8> {
    (0..64u32).map(|i| (i * 37 + 11) as u8).collect()
}

/// A minimal little-endian ELF32 (ARM) file: one PT_LOAD segment with `data` at `addr`, and a
/// section table (null, `.data` covering the segment, `.shstrtab`): the fake probe serves only
/// segments that contain a section.
fn tiny_elf(addr: u32, data: &[u8]) -> Vec<u8> {
    fn u16le(v: &mut Vec<u8>, x: u16) {
        v.extend_from_slice(&x.to_le_bytes());
    }
    fn u32le(v: &mut Vec<u8>, x: u32) {
        v.extend_from_slice(&x.to_le_bytes());
    }
    let shstrtab: &[u8] = b"\0.data\0.shstrtab\0";
    let data_off = 52u32 + 32;
    let str_off = data_off + data.len() as u32;
    let sh_off = (str_off + shstrtab.len() as u32).div_ceil(4) * 4;
    let mut f = Vec::new();
    f.extend_from_slice(&[0x7f, b'E', b'L', b'F', 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    u16le(&mut f, 2); // ET_EXEC
    u16le(&mut f, 40); // EM_ARM
    u32le(&mut f, 1); // EV_CURRENT
    u32le(&mut f, addr); // entry
    u32le(&mut f, 52); // phoff
    u32le(&mut f, sh_off);
    u32le(&mut f, 0x0500_0200); // EABI5, soft float
    u16le(&mut f, 52); // ehsize
    u16le(&mut f, 32); // phentsize
    u16le(&mut f, 1); // phnum
    u16le(&mut f, 40); // shentsize
    u16le(&mut f, 3); // shnum
    u16le(&mut f, 2); // shstrndx
    assert_eq!(f.len(), 52);
    // Program header: PT_LOAD.
    for x in [
        1,
        data_off,
        addr,
        addr,
        data.len() as u32,
        data.len() as u32,
        5,
        4,
    ] {
        u32le(&mut f, x);
    }
    f.extend_from_slice(data);
    f.extend_from_slice(shstrtab);
    f.resize(sh_off as usize, 0);
    // Section headers: null, .data (PROGBITS, ALLOC|WRITE), .shstrtab (STRTAB).
    f.extend_from_slice(&[0; 40]);
    for x in [1, 1, 3, addr, data_off, data.len() as u32, 0, 0, 4, 0] {
        u32le(&mut f, x);
    }
    for x in [7, 3, 0, 0, str_off, shstrtab.len() as u32, 0, 0, 1, 0] {
        u32le(&mut f, x);
    }
    f
}

#[tokio::test]
async fn attaches_and_halt_resume_are_idempotent() {
    let t = Transcript::new();
    let mut link = fake_link(&t).await;
    assert!(!link.is_halted(), "running = true leaves the core running");
    link.halt().await.unwrap();
    assert!(link.is_halted());
    link.halt().await.unwrap();
    link.resume().await.unwrap();
    assert!(!link.is_halted());
    link.resume().await.unwrap();
    link.halt().await.unwrap();
    assert!(link.is_halted());
    assert!(!link.is_closed());
    link.close().await.unwrap();
    assert!(link.is_closed());

    let ev = text(&t);
    assert!(
        ev.contains(
            "debug swd: attached to nrf51822_xxAC via Mock probe for testing (given probe, SWD"
        ),
        "{ev}"
    );
    assert!(ev.contains("kHz); core 0: core running"), "{ev}");
    assert!(ev.contains("debug swd: halted (pc 0x"), "{ev}");
    assert!(ev.contains("debug swd: halt: already halted"), "{ev}");
    assert!(ev.contains("debug swd: resumed"), "{ev}");
    assert!(ev.contains("debug swd: resume: already running"), "{ev}");
    assert!(
        ev.contains("debug swd: detached from nrf51822_xxAC"),
        "{ev}"
    );
}

#[tokio::test]
async fn running_false_halts_after_attach_and_close_resumes() {
    let t = Transcript::new();
    let o = ProbeOptions {
        running: false,
        ..opts()
    };
    let mut link = ProbeRsLink::from_probe(
        "swd",
        FakeProbe::with_mocked_core().into_probe(),
        &o,
        t.clone(),
    )
    .await
    .unwrap();
    assert!(link.is_halted());
    link.close().await.unwrap();
    assert!(!link.is_halted(), "close resumes a core the harness halted");
    let ev = text(&t);
    assert!(
        ev.contains("core halted after attach (running = false)"),
        "{ev}"
    );
}

#[tokio::test]
async fn reads_known_bytes_from_an_elf_while_running() {
    let dir = tempfile::tempdir().unwrap();
    let elf = dir.path().join("tiny.elf");
    std::fs::write(&elf, tiny_elf(RAM, &pattern())).unwrap();
    let t = Transcript::new();
    let mut link = ProbeRsLink::from_probe(
        "swd",
        FakeProbe::with_mocked_core_and_binary(&elf).into_probe(),
        &opts(),
        t.clone(),
    )
    .await
    .unwrap();

    let bytes = link.read_memory(u64::from(RAM), 16).await.unwrap();
    assert_eq!(bytes, pattern()[..16]);
    // Unaligned too.
    let bytes = link.read_memory(u64::from(RAM) + 5, 7).await.unwrap();
    assert_eq!(bytes, pattern()[5..12]);
    assert!(
        !link.is_halted(),
        "an ARM memory read keeps the core running"
    );

    let ev = text(&t);
    let want = format!(
        "debug swd: read 16 bytes at 0x20000000: {}",
        hex_preview(&pattern()[..16])
    );
    assert!(ev.contains(&want), "{want}\n{ev}");
    assert!(
        ev.contains("debug swd: read 7 bytes at 0x20000005: "),
        "{ev}"
    );
    assert!(
        !ev.contains("halted ("),
        "no halt for a memory read on ARM: {ev}"
    );
}

#[tokio::test]
async fn quiet_hides_successes_not_failures() {
    let t = Transcript::new();
    let mut link = fake_link(&t).await;
    link.set_quiet(true);
    assert_eq!(link.read_memory(0x1000, 8).await.unwrap(), vec![0; 8]);
    let _ = link.read_memory(0, MAX_ACCESS + 1).await.unwrap_err();
    link.set_quiet(false);
    let ev = text(&t);
    assert!(!ev.contains("read 8 bytes at 0x00001000"), "{ev}");
    assert!(ev.contains("failed"), "{ev}");
}

#[tokio::test]
async fn access_bound_is_refused_before_anything_is_sent() {
    let t = Transcript::new();
    let mut link = fake_link(&t).await;
    let e = link
        .read_memory(0x2000_0000, MAX_ACCESS + 1)
        .await
        .unwrap_err();
    assert!(matches!(e, LinkError::Protocol(_)), "{e:?}");
    assert!(e.to_string().contains("at most 65536 bytes"), "{e}");
    let big = vec![0u8; MAX_ACCESS + 4];
    let e = link.write_memory(0x2000_0000, &big).await.unwrap_err();
    assert!(e.to_string().contains("at most 65536 bytes"), "{e}");
    assert!(!link.is_closed(), "a refused bound does not close the link");
    // Still usable.
    assert_eq!(link.read_memory(0x2000_0000, 4).await.unwrap(), vec![0; 4]);
}

#[tokio::test]
async fn aligned_write_works() {
    let t = Transcript::new();
    let mut link = fake_link(&t).await;
    link.write_memory(0x2000_0000, &[1, 2, 3, 4, 5, 6, 7, 8])
        .await
        .unwrap();
    let ev = text(&t);
    assert!(
        ev.contains("debug swd: wrote 8 bytes at 0x20000000: 01020304 05060708"),
        "{ev}"
    );
    assert!(!link.is_closed());
}

#[tokio::test]
async fn registers_are_read_halted_and_the_core_resumed() {
    let t = Transcript::new();
    let mut link = fake_link(&t).await;
    let regs = link.read_registers().await.unwrap();
    let names: Vec<&str> = regs.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "r0", "r1", "r2", "r3", "r4", "r5", "r6", "r7", "r8", "r9", "r10", "r11", "r12", "sp",
            "lr", "pc", "xpsr"
        ]
    );
    assert!(register(&regs, "pc").is_some());
    assert!(!link.is_halted(), "the core runs again after the read");
    let ev = text(&t);
    assert!(ev.contains("debug swd: registers: r0=0x"), "{ev}");
    assert!(ev.contains("(halted for the read)"), "{ev}");
}

#[tokio::test]
async fn a_panicking_driver_closes_the_link_and_the_process_survives() {
    let t = Transcript::new();
    let mut link = fake_link(&t).await;
    // An unaligned write needs 8-bit transfers, which the fake leaves `todo!()`.
    let e = link
        .write_memory(0x2000_0001, &[1, 2, 3])
        .await
        .unwrap_err();
    assert!(matches!(e, LinkError::Closed(_)), "{e:?}");
    assert!(e.to_string().contains("panicked"), "{e}");
    assert!(link.is_closed());
    let e = link.read_memory(0x2000_0000, 4).await.unwrap_err();
    assert!(matches!(e, LinkError::Closed(_)), "{e:?}");
    // Closing a closed link is fine.
    link.close().await.unwrap();
    drop(link);
    let ev = text(&t);
    assert!(
        ev.contains("debug swd: link unusable: the link closed: probe-rs panicked"),
        "{ev}"
    );
}

#[tokio::test]
async fn flash_of_a_missing_file_fails_without_closing() {
    let t = Transcript::new();
    let mut link = fake_link(&t).await;
    let req = FlashRequest {
        path: "/nonexistent/hilsec-probe-test.bin".into(),
        format: ImageFormat::Bin { base: 0 },
        verify: true,
    };
    let progress: ProgressSink = Arc::new(|_| {});
    let e = link.flash(&req, &progress).await.unwrap_err();
    assert!(matches!(e, LinkError::Protocol(_)), "{e:?}");
    assert!(e.to_string().contains("cannot read the image"), "{e}");
    assert!(!link.is_closed());
}

#[tokio::test]
async fn unknown_chip_is_an_open_error_with_suggestions() {
    let t = Transcript::new();
    let o = ProbeOptions {
        chip: "nrf5182_bogus".into(),
        ..opts()
    };
    let e = ProbeRsLink::from_probe(
        "swd",
        FakeProbe::with_mocked_core().into_probe(),
        &o,
        t.clone(),
    )
    .await
    .unwrap_err();
    let LinkError::Open { endpoint, detail } = &e else {
        panic!("{e:?}");
    };
    assert!(endpoint.contains("nrf5182_bogus"), "{endpoint}");
    assert!(
        detail.contains("unknown chip \"nrf5182_bogus\""),
        "{detail}"
    );
    assert!(detail.contains("similar: nRF51822"), "{detail}");
    assert!(text(&t).contains("attaching to nrf5182_bogus"));

    assert!(check_chip("nRF52840_xxAA").is_ok());
    assert!(check_chip("STM32F411RETx").is_ok());
    assert!(check_chip("RP2040").is_ok());
    let m = check_chip("nrf52840_bogus").unwrap_err();
    let similar = m
        .split("similar: ")
        .nth(1)
        .and_then(|s| s.split(';').next())
        .unwrap_or_else(|| panic!("{m}"));
    let n = similar.split(", ").count();
    assert!((1..=5).contains(&n), "{m}");
    assert!(similar.to_lowercase().contains("nrf52840"), "{m}");
    let m = check_chip("zzzz-no-such-chip").unwrap_err();
    assert!(m.contains("probe-rs chip list"), "{m}");
}

#[test]
fn selector_forms() {
    for good in [
        "0d28:0204",
        "0d28:0204:0240000034544e45",
        "1366:1015:000683",
    ] {
        check_selector(good).unwrap_or_else(|e| panic!("{good}: {e}"));
    }
    for bad in ["", "0d28", "nope", "0d28:zz", "10000:0204", ":0204:1"] {
        let e = check_selector(bad).unwrap_err();
        assert!(e.contains("VID:PID:SERIAL"), "{bad}: {e}");
    }
}

#[test]
fn no_probes_attached_here() {
    // This machine has no debug probe: listing is empty and does not fail.
    assert!(list_probes().is_empty());
}

// ---------------------------------------------------------------------------------------------
// Probe selection through an injected lister.

#[derive(Debug)]
struct TestFactory;

impl fmt::Display for TestFactory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Test driver")
    }
}

impl ProbeFactory for TestFactory {
    fn open(&self, _: &DebugProbeSelector) -> Result<Box<dyn DebugProbe>, DebugProbeError> {
        Ok(Box::new(FakeProbe::with_mocked_core()))
    }
    fn list_probes(&self) -> Vec<ProbeListItem> {
        Vec::new()
    }
}

static FACTORY: TestFactory = TestFactory;

#[derive(Debug)]
struct TestLister(Vec<DebugProbeInfo>);

impl ProbeLister for TestLister {
    fn open(
        &self,
        selector: &DebugProbeSelector,
    ) -> Result<probe_rs::probe::Probe, DebugProbeError> {
        if self.0.iter().any(|i| selector.matches_probe(i)) {
            Ok(FakeProbe::with_mocked_core().into_probe())
        } else {
            Err(DebugProbeError::ProbeCouldNotBeCreated(
                ProbeCreationError::NotFound,
            ))
        }
    }
    fn list_with_access(&self, selector: Option<&DebugProbeSelector>) -> Vec<ProbeListItem> {
        self.0
            .iter()
            .filter(|i| selector.is_none_or(|s| s.matches_probe(i)))
            .cloned()
            .map(ProbeListItem::accessible)
            .collect()
    }
}

fn info(serial: &str) -> DebugProbeInfo {
    DebugProbeInfo::new(
        format!("Test probe {serial}"),
        0x1234,
        0x5678,
        Some(serial.to_string()),
        &FACTORY,
        None,
        false,
    )
}

fn lister(serials: &[&str]) -> Lister {
    Lister::with_lister(Box::new(TestLister(
        serials.iter().map(|s| info(s)).collect(),
    )))
}

#[tokio::test]
async fn no_probe_is_an_open_error() {
    let e = ProbeRsLink::open_with("swd", lister(&[]), &opts(), Transcript::new())
        .await
        .unwrap_err();
    assert!(matches!(e, LinkError::Open { .. }), "{e:?}");
    assert!(e.to_string().contains("no debug probe found"), "{e}");
    assert!(e.to_string().contains("hilsec probe list"), "{e}");
}

#[tokio::test]
async fn two_probes_and_no_selector_lists_both() {
    let e = ProbeRsLink::open_with("swd", lister(&["A1", "B2"]), &opts(), Transcript::new())
        .await
        .unwrap_err();
    assert!(matches!(e, LinkError::Open { .. }), "{e:?}");
    let m = e.to_string();
    assert!(m.contains("\"1234:5678:A1\""), "{m}");
    assert!(m.contains("\"1234:5678:B2\""), "{m}");
    assert!(m.contains("probe = \"VID:PID:SERIAL\""), "{m}");
}

#[tokio::test]
async fn a_selector_opens_its_probe() {
    let t = Transcript::new();
    let o = ProbeOptions {
        selector: Some("1234:5678:B2".into()),
        ..opts()
    };
    let mut link = ProbeRsLink::open_with("swd", lister(&["A1", "B2"]), &o, t.clone())
        .await
        .unwrap();
    assert_eq!(link.probe(), "Test probe B2 (1234:5678:B2)");
    link.close().await.unwrap();
    let ev = text(&t);
    assert!(
        ev.contains("attached to nrf51822_xxAC via Test probe B2 (1234:5678:B2, SWD"),
        "{ev}"
    );

    // A selector that matches none lists the attached ones.
    let o = ProbeOptions {
        selector: Some("1234:5678:C3".into()),
        ..opts()
    };
    let e = ProbeRsLink::open_with("swd", lister(&["A1", "B2"]), &o, Transcript::new())
        .await
        .unwrap_err();
    let m = e.to_string();
    assert!(m.contains("no debug probe matches \"1234:5678:C3\""), "{m}");
    assert!(
        m.contains("1234:5678:A1") && m.contains("1234:5678:B2"),
        "{m}"
    );

    // One attached and none selected: that one.
    let link = ProbeRsLink::open_with("swd", lister(&["A1"]), &opts(), Transcript::new())
        .await
        .unwrap();
    assert_eq!(link.probe(), "Test probe A1 (1234:5678:A1)");
}

#[test]
fn listing_through_a_lister() {
    let probes = list_probes_with(&lister(&["A1", "B2"]));
    assert_eq!(probes.len(), 2);
    assert_eq!(probes[0].selector, "1234:5678:A1");
    assert_eq!(probes[0].vendor_id, 0x1234);
    assert_eq!(probes[0].product_id, 0x5678);
    assert_eq!(probes[0].serial.as_deref(), Some("A1"));
    assert_eq!(probes[0].driver, "Test driver");
    assert_eq!(probes[1].name, "Test probe B2");
    assert!(probes[1].note.is_none());
}

// ---------------------------------------------------------------------------------------------
// Probes that do not answer.

/// A probe whose attach takes `delay` and then finds no target.
#[derive(Debug)]
struct DeadProbe {
    delay: Duration,
}

impl DebugProbe for DeadProbe {
    fn get_name(&self) -> &str {
        "Dead probe"
    }
    fn speed_khz(&self) -> u32 {
        1000
    }
    fn set_speed(&mut self, khz: u32) -> Result<u32, DebugProbeError> {
        Ok(khz)
    }
    fn attach(&mut self) -> Result<(), DebugProbeError> {
        std::thread::sleep(self.delay);
        Err(DebugProbeError::TargetNotFound)
    }
    fn detach(&mut self) -> Result<(), probe_rs::Error> {
        Ok(())
    }
    fn target_reset(&mut self) -> Result<(), DebugProbeError> {
        Ok(())
    }
    fn target_reset_assert(&mut self) -> Result<(), DebugProbeError> {
        Ok(())
    }
    fn target_reset_deassert(&mut self) -> Result<(), DebugProbeError> {
        Ok(())
    }
    fn select_protocol(&mut self, _: probe_rs::probe::WireProtocol) -> Result<(), DebugProbeError> {
        Ok(())
    }
    fn active_protocol(&self) -> Option<probe_rs::probe::WireProtocol> {
        Some(probe_rs::probe::WireProtocol::Swd)
    }
    fn into_probe(self: Box<Self>) -> Box<dyn DebugProbe> {
        self
    }
}

#[tokio::test]
async fn a_target_that_does_not_answer_is_an_open_error() {
    let t = Transcript::new();
    let probe = probe_rs::probe::Probe::new(DeadProbe {
        delay: Duration::ZERO,
    });
    let e = ProbeRsLink::from_probe("swd", probe, &opts(), t.clone())
        .await
        .unwrap_err();
    let LinkError::Open { detail, .. } = &e else {
        panic!("{e:?}");
    };
    assert!(detail.contains("does not answer"), "{detail}");
    assert!(text(&t).contains("debug swd: attaching to nrf51822_xxAC via Dead probe"));
}

#[tokio::test]
async fn an_attach_with_no_answer_in_time_is_an_open_error_and_does_not_hang() {
    let probe = probe_rs::probe::Probe::new(DeadProbe {
        delay: Duration::from_secs(5),
    });
    let o = ProbeOptions {
        timeout: Duration::from_millis(300),
        ..opts()
    };
    let e = ProbeRsLink::from_probe("swd", probe, &o, Transcript::new())
        .await
        .unwrap_err();
    assert!(matches!(e, LinkError::Open { .. }), "{e:?}");
    assert!(
        e.to_string().contains("no answer from the probe within"),
        "{e}"
    );
}

#[tokio::test]
async fn open_without_a_probe_attached() {
    // No debug probe on this machine: the real lister finds none.
    let e = ProbeRsLink::open("swd", &opts(), Transcript::new())
        .await
        .unwrap_err();
    assert!(matches!(e, LinkError::Open { .. }), "{e:?}");
    assert!(e.to_string().contains("no debug probe found"), "{e}");
}

#[tokio::test]
async fn reset_and_a_reset_halt_the_fake_cannot_do() {
    let t = Transcript::new();
    let mut link = fake_link(&t).await;
    link.reset().await.unwrap();
    assert!(text(&t).contains("debug swd: reset (core reset, running)"));
    // The fake never reports the halt after a reset: probe-rs's own wait times out, which is a
    // typed timeout that closes the link, not a hang.
    let e = link.reset_halt().await.unwrap_err();
    assert!(matches!(e, LinkError::Timeout { .. }), "{e:?}");
    assert!(link.is_closed());
    let ev = text(&t);
    assert!(ev.contains("debug swd: reset and halt: failed: "), "{ev}");
}

#[test]
fn links_and_their_futures_are_send() {
    fn send<T: Send>(_: &T) {}
    let o = opts();
    send(&ProbeRsLink::open("swd", &o, Transcript::new()));
    send(&ProbeRsLink::from_probe(
        "swd",
        FakeProbe::with_mocked_core().into_probe(),
        &o,
        Transcript::new(),
    ));
    fn boxed(l: ProbeRsLink) -> Box<dyn DebugAccess> {
        Box::new(l)
    }
    let _ = boxed;
}
