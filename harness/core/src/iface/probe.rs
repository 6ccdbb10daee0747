//! A debug port through a USB debug probe (CMSIS-DAP, ST-Link, J-Link, ...) driven by probe-rs,
//! over SWD or JTAG.
//!
//! This module exists because a lab's units are reached through a debug probe wired to their
//! SWD/JTAG pins, not through a GDB server: the harness needs that port to read a firmware's
//! memory, look at registers, reset, flash, and above all to learn whether the port is *locked*
//! (readout protection, APPROTECT), which is what a unit's `debug.port-locked` test checks.
//! [`ProbeRsLink`] implements [`DebugAccess`] so suites never know whether a probe or a GDB stub
//! sits behind the port.
//!
//! **Threads.** probe-rs is blocking (USB transfers, polling loops). Each link owns one
//! dedicated worker thread that opens the probe, attaches and owns the `probe_rs::Session`;
//! the async side sends it jobs over a channel and waits for the reply (a tokio oneshot) with
//! [`ProbeOptions::timeout`], so no runtime thread ever blocks on the probe. A flash gets the
//! larger bound `max(timeout, 10 min)` ([`FLASH_MIN_TIMEOUT`]). When a reply does not come in
//! time the link reports [`LinkError::Timeout`] and is closed; the worker is abandoned (not
//! joined): it ends, and detaches, once the call it is stuck in returns. A panic inside
//! probe-rs or the probe driver is caught on the worker and becomes [`LinkError::Closed`]
//! naming the panic; a worker that is gone gives [`LinkError::Closed`] too. Neither crashes nor
//! hangs the caller.
//!
//! **Safety of the unit.** The session is attached with `Permissions::default()` only: probe-rs
//! may never erase a chip to unlock it, so a locked unit stays locked (and its data intact);
//! the lock shows as [`LinkError::Refused`].
//!
//! **Run state.** On ARM, memory is accessed through the memory access port while the core
//! runs, so reads and writes do not disturb a running firmware; on other architectures the
//! core is halted for the access and resumed. Registers need a halted core: halt, read, resume
//! if it was running. `running = false` in the options halts the core after attaching;
//! `running = true` resumes a core that attaching left halted. [`DebugAccess::close`] resumes a
//! core the harness halted, then ends the session (probe-rs detaches); dropping the link does
//! the same, best effort, without waiting.
//!
//! **Errors** (probe-rs error, anywhere in its chain of sources → [`LinkError`]):
//!
//! | probe-rs says | at attach | afterwards |
//! | --- | --- | --- |
//! | `Error::MissingPermissions` / `ArmError::MissingPermissions` (the chip is locked and only an erase would unlock it: nRF APPROTECT, ...) | `Refused` | `Refused` |
//! | an error text naming a lock (`locked`, `APPROTECT`, `readout protection`), e.g. a vendor debug sequence finding the chip locked | `Refused` | `Refused` |
//! | `ArmError::AccessPort` / `DapError::FaultResponse` / ST-Link status `SwdApFault` or `SwdApStickyError` (the access port faulted: a protected or unreadable region, STM32 RDP 1) | `Open` ([`ATTACH_FAULT`]: protection or a sleeping core, undecided) | `Refused` |
//! | `ArmError::NoTargetResponse` / `DapError::NoAcknowledge` / `DebugProbeError::TargetNotFound` / ST-Link status `JtagNoDeviceConnected` or `JtagGetIdcodeError` (the debug port does not answer at all: no target, wiring, power, RDP 2) | `Open` | `Closed` |
//! | USB failure (`DebugProbeError::Usb`, an `std::io::Error`): the probe was unplugged | `Open` | `Closed` |
//! | a probe-rs timeout (`Error::Timeout`, `ArmError::Timeout`, `DebugProbeError::Timeout`) | `Open` | `Timeout` (link closed) |
//! | no reply from the worker within the bound | `Open` | `Timeout` (link closed) |
//! | a panic in probe-rs or the driver, or the worker gone | `Open` | `Closed` |
//! | unknown chip, no/ambiguous probe, unsupported protocol or speed, core not found | `Open` | — |
//! | anything else (reset not supported, not implemented, ...) | `Open` | `Protocol` |
//!
//! The precedence when a chain matches several rows: USB failure, then missing permissions or a
//! lock, then no target response, then an access port fault, then a timeout.

use std::any::Any;
use std::fmt::Write as _;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use probe_rs::architecture::arm::{ArmError, DapError};
use probe_rs::config::{Registry, RegistryError};
use probe_rs::flashing::{
    BinLoader, BinOptions, DownloadOptions, ElfLoader, ElfOptions, HexLoader, ImageLoader,
    ProgressEvent, ProgressOperation,
};
use probe_rs::probe::list::{Accessibility, Lister};
use probe_rs::probe::{DebugProbeError, DebugProbeInfo, DebugProbeSelector, Probe, WireProtocol};
use probe_rs::{MemoryInterface, Permissions, RegisterId, RegisterValue, Session};

use super::debug::{check_access, halted_for, hex_preview, DebugAccess, Register};
use super::flash::{FlashProgress, FlashReport, FlashRequest, ImageFormat, ProgressSink};
use super::LinkError;
use crate::transcript::Transcript;

/// Least time a flash may take before it counts as not answering: flashing a large image
/// through a slow probe takes minutes. The bound is `max(ProbeOptions::timeout, this)`.
pub const FLASH_MIN_TIMEOUT: Duration = Duration::from_secs(10 * 60);

/// How long [`DebugAccess::close`] waits for the worker to resume the core and detach.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// Where to find udev rules for probes (Linux), for the "no permission" hints.
const UDEV_HINT: &str = "no permission to open the USB device: install the probe-rs udev rules \
     (https://probe.rs/docs/getting-started/probe-setup/), then replug the probe";

/// The wire protocol between probe and target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// Serial Wire Debug (ARM).
    Swd,
    /// JTAG (ARM, RISC-V, Xtensa).
    Jtag,
}

impl Protocol {
    fn wire(self) -> WireProtocol {
        match self {
            Protocol::Swd => WireProtocol::Swd,
            Protocol::Jtag => WireProtocol::Jtag,
        }
    }
}

/// How to reach and treat a unit behind a probe-rs debug probe.
#[derive(Debug, Clone)]
pub struct ProbeOptions {
    /// `"VID:PID"` or `"VID:PID:SERIAL"` (VID and PID in hex, as `hilsec probe list` shows);
    /// `None`: the only probe attached.
    pub selector: Option<String>,
    /// probe-rs target name, e.g. `"STM32F411RETx"`, `"nRF52840_xxAA"`, `"RP2040"`.
    pub chip: String,
    /// `None`: the probe's default (SWD for most).
    pub protocol: Option<Protocol>,
    /// `None`: the probe's default speed.
    pub speed_khz: Option<u32>,
    /// Hold the target in reset (reset pin) while attaching.
    pub connect_under_reset: bool,
    /// Index of the core to debug (0 on single-core chips).
    pub core: usize,
    /// Leave the target running after attaching (board files default to true); false halts
    /// the core after attaching.
    pub running: bool,
    /// Bound on attaching and on every probe operation; a flash is bounded by
    /// `max(timeout, FLASH_MIN_TIMEOUT)`.
    pub timeout: Duration,
}

impl Default for ProbeOptions {
    fn default() -> Self {
        ProbeOptions {
            selector: None,
            chip: String::new(),
            protocol: None,
            speed_khz: None,
            connect_under_reset: false,
            core: 0,
            running: true,
            timeout: Duration::from_secs(10),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Board-file validation.

/// Checks a probe selector's form (`VID:PID` or `VID:PID:SERIAL`, VID and PID in hex), as board
/// files give it. The message says the expected form.
pub fn check_selector(s: &str) -> Result<(), String> {
    let bad = |why: &str| {
        Err(format!(
            "probe selector \"{s}\" {why}: expected \"VID:PID\" or \"VID:PID:SERIAL\" with VID and \
             PID as 4 hex digits (e.g. \"0d28:0204\" or \"0d28:0204:0240000034544e45\"); \
             `hilsec probe list` shows the selectors of the probes attached"
        ))
    };
    let mut parts = s.splitn(3, ':');
    let vid = parts.next().unwrap_or_default();
    let Some(pid) = parts.next() else {
        return bad("has no PID");
    };
    // probe-rs also accepts "PID-INTERFACE".
    let (pid, iface) = match pid.split_once('-') {
        Some((p, i)) => (p, Some(i)),
        None => (pid, None),
    };
    let hex = |t: &str| !t.is_empty() && t.len() <= 4 && t.bytes().all(|b| b.is_ascii_hexdigit());
    if !hex(vid) {
        return bad("has no valid hex VID");
    }
    if !hex(pid) {
        return bad("has no valid hex PID");
    }
    if let Some(i) = iface {
        if !i.is_empty() && i.parse::<u8>().is_err() {
            return bad("has an invalid USB interface number after `-`");
        }
    }
    if let Some(serial) = parts.next() {
        if serial.trim() != serial || serial.chars().any(char::is_control) {
            return bad("has a serial number with spaces or control characters");
        }
    }
    if s.parse::<DebugProbeSelector>().is_err() {
        return bad("cannot be parsed");
    }
    Ok(())
}

/// probe-rs's built-in targets, loaded once.
pub(crate) static REGISTRY: LazyLock<Registry> = LazyLock::new(Registry::from_builtin_families);

/// Checks that `name` is a probe-rs target. An unknown name gives a message with up to five
/// similar known names and what to do.
pub fn check_chip(name: &str) -> Result<(), String> {
    match REGISTRY.get_target_by_name(name) {
        Ok(_) => Ok(()),
        Err(RegistryError::ChipNotUnique(_, matches)) => Err(format!(
            "chip \"{name}\" is ambiguous in probe-rs's targets (matches {matches}): give the \
             full target name"
        )),
        Err(_) => {
            let similar = similar_chips(name, 5);
            if similar.is_empty() {
                Err(format!(
                    "unknown chip \"{name}\": not a probe-rs target and no similar name found; \
                     `probe-rs chip list` lists the targets probe-rs knows"
                ))
            } else {
                Err(format!(
                    "unknown chip \"{name}\": not a probe-rs target; similar: {}; use one of \
                     these names exactly (`probe-rs chip list` lists them all)",
                    similar.join(", ")
                ))
            }
        }
    }
}

/// Known target names like `name` (case-insensitive): those containing it first (shortest
/// first), then those sharing the longest prefix with it (at least 3 characters).
fn similar_chips(name: &str, max: usize) -> Vec<String> {
    let q = name.to_ascii_lowercase();
    let mut containing: Vec<&str> = Vec::new();
    let mut prefixed: Vec<(usize, &str)> = Vec::new();
    for family in REGISTRY.families() {
        for chip in &family.variants {
            for package in chip.package_variants() {
                let lower = package.to_ascii_lowercase();
                if !q.is_empty() && lower.contains(&q) {
                    containing.push(package);
                } else {
                    let common = lower
                        .bytes()
                        .zip(q.bytes())
                        .take_while(|(a, b)| a == b)
                        .count();
                    if common >= 3 {
                        prefixed.push((common, package));
                    }
                }
            }
        }
    }
    containing.sort_by_key(|n| (n.len(), n.to_string()));
    prefixed.sort_by(|a, b| {
        b.0.cmp(&a.0)
            .then(a.1.len().cmp(&b.1.len()))
            .then(a.1.cmp(b.1))
    });
    let mut out: Vec<String> = Vec::new();
    for n in containing
        .into_iter()
        .chain(prefixed.into_iter().map(|(_, n)| n))
    {
        if out.len() == max {
            break;
        }
        if !out.iter().any(|o| o == n) {
            out.push(n.to_string());
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Probe listing and selection.

/// A debug probe attached to this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeEntry {
    /// The probe's name, e.g. "CMSIS-DAP".
    pub name: String,
    pub vendor_id: u16,
    pub product_id: u16,
    pub serial: Option<String>,
    /// What a board file's `probe = "..."` takes to select this probe.
    pub selector: String,
    /// The probe-rs driver (probe type), e.g. "CMSIS-DAP", "ST-Link".
    pub driver: String,
    /// Why it may not be usable, e.g. no permission to open it (with the udev rule hint).
    pub note: Option<String>,
}

/// Every debug probe attached to this machine (none is opened). Empty, not an error, when there
/// is none or USB cannot be enumerated. Blocking (USB enumeration, quick): from async code, call
/// it through `tokio::task::spawn_blocking`.
pub fn list_probes() -> Vec<ProbeEntry> {
    list_probes_with(&Lister::new())
}

/// Every debug probe `lister` finds (an injectable lister, for tests).
pub fn list_probes_with(lister: &Lister) -> Vec<ProbeEntry> {
    lister
        .list_all_with_access()
        .into_iter()
        .map(|item| {
            let note = (item.accessibility == Accessibility::PermissionDenied)
                .then(|| UDEV_HINT.to_string());
            entry(&item.info, note)
        })
        .collect()
}

fn entry(info: &DebugProbeInfo, note: Option<String>) -> ProbeEntry {
    ProbeEntry {
        name: info.identifier.clone(),
        vendor_id: info.vendor_id,
        product_id: info.product_id,
        serial: info.serial_number.clone(),
        selector: DebugProbeSelector::from(info).to_string(),
        driver: info.probe_type(),
        note,
    }
}

/// One line per probe for an error message.
fn describe(entries: &[ProbeEntry]) -> String {
    entries
        .iter()
        .map(|e| match &e.note {
            Some(n) => format!("\"{}\" ({}, {}; {n})", e.selector, e.name, e.driver),
            None => format!("\"{}\" ({}, {})", e.selector, e.name, e.driver),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The probe that was opened, for notes.
#[derive(Debug, Clone)]
struct Opened {
    name: String,
    selector: String,
}

/// Finds the probe the options select and opens it (blocking: USB). Errors are
/// How an attach error begins when the probe works but the target's debug port gives no
/// answer at all: a port disabled for good (STM32 RDP level 2, a blown JTAG fuse) and a wiring
/// fault look the same, which the lock test reports as such.
pub const TARGET_SILENT: &str = "the target's debug port does not answer";

/// How an attach error begins when the target's access port faulted while attaching: readout
/// protection on some chips, a sleeping core on others; the lock test does not count it as a
/// refusal.
pub const ATTACH_FAULT: &str = "the target's access port faulted while attaching";

/// `(endpoint-independent detail)` for [`LinkError::Open`].
fn select_probe(lister: &Lister, selector: Option<&str>) -> Result<(Probe, Opened), String> {
    let items = lister.list_all_with_access();
    let all: Vec<ProbeEntry> = items
        .iter()
        .map(|i| {
            entry(
                &i.info,
                (i.accessibility == Accessibility::PermissionDenied).then(|| UDEV_HINT.into()),
            )
        })
        .collect();
    let chosen = match selector {
        Some(s) => {
            check_selector(s)?;
            let sel: DebugProbeSelector = s
                .parse()
                .map_err(|e| format!("probe selector \"{s}\": {e}"))?;
            let matching: Vec<usize> = items
                .iter()
                .enumerate()
                .filter(|(_, i)| sel.matches_probe(&i.info))
                .map(|(n, _)| n)
                .collect();
            match matching.as_slice() {
                [] if all.is_empty() => {
                    return Err(format!(
                        "no debug probe matches \"{s}\": no probe is attached (check USB, udev \
                         permissions, `hilsec probe list`)"
                    ))
                }
                [] => {
                    return Err(format!(
                        "no debug probe matches \"{s}\"; attached: {}",
                        describe(&all)
                    ))
                }
                [one] => *one,
                several => {
                    let listed: Vec<ProbeEntry> = several.iter().map(|&n| all[n].clone()).collect();
                    return Err(format!(
                        "{} debug probes match \"{s}\": {}; set probe = \"VID:PID:SERIAL\" to \
                         choose one",
                        several.len(),
                        describe(&listed)
                    ));
                }
            }
        }
        None => match all.len() {
            0 => {
                return Err("no debug probe found (is it plugged in? check USB, udev \
                            permissions, `hilsec probe list`)"
                    .into())
            }
            1 => 0,
            n => {
                return Err(format!(
                    "{n} debug probes attached and none selected: {}; set probe = \
                     \"VID:PID:SERIAL\" in the board file to choose one",
                    describe(&all)
                ))
            }
        },
    };
    let info = &items[chosen].info;
    let e = &all[chosen];
    let probe = lister.open(DebugProbeSelector::from(info)).map_err(|err| {
        let mut d = format!(
            "cannot open probe \"{}\" ({}): {}",
            e.selector,
            e.name,
            chain(&err)
        );
        if let Some(n) = &e.note {
            let _ = write!(d, "; {n}");
        } else if matches!(err, DebugProbeError::ProbeCouldNotBeCreated(_)) {
            let _ = write!(d, "; is another program using it? {UDEV_HINT}");
        }
        d
    })?;
    Ok((
        probe,
        Opened {
            name: e.name.clone(),
            selector: e.selector.clone(),
        },
    ))
}

// ---------------------------------------------------------------------------------------------
// Error classification.

/// What a probe-rs error means for the link (see the module documentation's table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    /// USB failure: the probe is gone.
    Gone,
    /// Locked: only an erase would unlock.
    Locked,
    /// The debug port does not answer.
    NoTarget,
    /// The access port faulted (protected or unreadable memory).
    Fault,
    Timeout,
    Other,
}

/// The error and its sources, joined with ": ".
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let t = s.to_string();
        if !out.contains(&t) {
            let _ = write!(out, ": {t}");
        }
        cur = s.source();
    }
    out
}

fn classify(e: &(dyn std::error::Error + 'static)) -> Class {
    let (mut gone, mut locked, mut no_target, mut fault, mut timeout) =
        (false, false, false, false, false);
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(pe) = err.downcast_ref::<probe_rs::Error>() {
            match pe {
                probe_rs::Error::MissingPermissions(_) => locked = true,
                probe_rs::Error::Timeout => timeout = true,
                _ => {}
            }
        }
        if let Some(ae) = err.downcast_ref::<ArmError>() {
            match ae {
                ArmError::MissingPermissions(_) => locked = true,
                ArmError::NoTargetResponse { .. } => no_target = true,
                ArmError::AccessPort { .. } => fault = true,
                ArmError::Timeout => timeout = true,
                _ => {}
            }
        }
        if let Some(de) = err.downcast_ref::<DapError>() {
            match de {
                DapError::FaultResponse => fault = true,
                DapError::NoAcknowledge => no_target = true,
                _ => {}
            }
        }
        if let Some(pe) = err.downcast_ref::<DebugProbeError>() {
            match pe {
                DebugProbeError::Usb(_) => gone = true,
                DebugProbeError::TargetNotFound => no_target = true,
                DebugProbeError::Timeout => timeout = true,
                _ => {}
            }
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::TimedOut {
                timeout = true;
            } else {
                gone = true;
            }
        }
        let text = err.to_string().to_ascii_lowercase();
        if text.contains("locked")
            || text.contains("approtect")
            || text.contains("readout protection")
            || text.contains("read-out protection")
        {
            locked = true;
        }
        // ST-Link reports transfer faults as status codes, not as `DapError`s.
        if text.contains("swdapfault") || text.contains("swdapstickyerror") {
            fault = true;
        }
        if text.contains("jtagnodeviceconnected") || text.contains("jtaggetidcodeerror") {
            no_target = true;
        }
        cur = err.source();
    }
    if gone {
        Class::Gone
    } else if locked {
        Class::Locked
    } else if no_target {
        Class::NoTarget
    } else if fault {
        Class::Fault
    } else if timeout {
        Class::Timeout
    } else {
        Class::Other
    }
}

/// A failure while opening or attaching: `Refused` when the chip is locked, `Open` otherwise
/// (an access-port fault too, with [`ATTACH_FAULT`]).
fn attach_error(endpoint: &str, e: &(dyn std::error::Error + 'static)) -> LinkError {
    let text = chain(e);
    match classify(e) {
        Class::Locked => LinkError::Refused(format!(
            "attaching to {endpoint}: the chip is locked (debug access protection); probe-rs \
             would have to erase it to unlock, which hilsec never allows: {text}"
        )),
        // At attach, a fault may be protection or a core that sleeps without debug: not a
        // refusal to count on (the lock test reports it as undecided).
        Class::Fault => LinkError::Open {
            endpoint: endpoint.to_string(),
            detail: format!("{ATTACH_FAULT} (protection, or a core asleep): {text}"),
        },
        Class::NoTarget => LinkError::Open {
            endpoint: endpoint.to_string(),
            detail: format!(
                "{TARGET_SILENT} (check wiring, power and the chip name; connect_under_reset \
                 may help): {text}"
            ),
        },
        Class::Gone => LinkError::Open {
            endpoint: endpoint.to_string(),
            detail: format!("the probe failed on USB: {text}"),
        },
        Class::Timeout | Class::Other => LinkError::Open {
            endpoint: endpoint.to_string(),
            detail: text,
        },
    }
}

/// A failure of an operation `what` on an attached session.
fn op_error(what: &str, waited: Duration, e: &(dyn std::error::Error + 'static)) -> LinkError {
    let text = chain(e);
    match classify(e) {
        Class::Gone => LinkError::Closed(format!(
            "{what}: the probe stopped answering on USB (unplugged?): {text}"
        )),
        Class::Locked => LinkError::Refused(format!(
            "{what}: the chip is locked (debug access protection): {text}"
        )),
        Class::NoTarget => LinkError::Closed(format!(
            "{what}: the target's debug port stopped answering (powered off or disconnected?): \
             {text}"
        )),
        Class::Fault => LinkError::Refused(format!(
            "{what}: the access port faulted (memory protected or not readable): {text}"
        )),
        Class::Timeout => LinkError::Timeout {
            pattern: format!("probe-rs: {what}"),
            waited,
            tail: text,
        },
        Class::Other => LinkError::Protocol(format!("{what}: {text}")),
    }
}

fn panic_text(p: &(dyn Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".to_string()
    }
}

// ---------------------------------------------------------------------------------------------
// The worker.

/// A job for the worker; returns true when it panicked (the session is then not used again).
type Job = Box<dyn FnOnce(&mut Session) -> bool + Send>;

/// Where the worker gets its probe.
enum Source {
    /// Lists with `Lister::new()` on the worker and selects by the options.
    Lister,
    /// A probe already open.
    Probe(Probe, Opened),
}

/// What attaching found.
#[derive(Debug)]
struct Attached {
    opened: Opened,
    protocol: Option<WireProtocol>,
    speed_khz: u32,
    cortex_m: bool,
    memory_while_running: bool,
    /// The core's state after attaching and applying `running`.
    halted: bool,
    /// How the run state was reached, for the attach note.
    state: String,
}

fn worker_main(
    source: Source,
    opts: ProbeOptions,
    endpoint: String,
    jobs: mpsc::Receiver<Job>,
    ready: tokio::sync::oneshot::Sender<Result<Attached, LinkError>>,
    done: tokio::sync::oneshot::Sender<()>,
) {
    let attached = catch_unwind(AssertUnwindSafe(|| attach(source, &opts, &endpoint)));
    let mut session = match attached {
        Ok(Ok((session, info))) => {
            if ready.send(Ok(info)).is_err() {
                // The caller gave up waiting: detach (resuming a core halted for it).
                finish(session, opts.core, !opts.running);
                let _ = done.send(());
                return;
            }
            session
        }
        Ok(Err(e)) => {
            let _ = ready.send(Err(e));
            let _ = done.send(());
            return;
        }
        Err(p) => {
            let _ = ready.send(Err(LinkError::Open {
                endpoint,
                detail: format!("probe-rs panicked while attaching: {}", panic_text(&*p)),
            }));
            let _ = done.send(());
            return;
        }
    };
    // A job that panicked leaves the session in an unknown state: no further job runs on it.
    while let Ok(job) = jobs.recv() {
        if job(&mut session) {
            break;
        }
    }
    // Ending the session detaches; probe-rs may touch the core here, so panics stay contained.
    let _ = catch_unwind(AssertUnwindSafe(move || drop(session)));
    let _ = done.send(());
}

/// Resumes the core when asked, then ends the session (probe-rs detaches), panics contained.
fn finish(mut session: Session, core: usize, resume: bool) {
    if resume {
        let _ = catch_unwind(AssertUnwindSafe(|| {
            if let Ok(mut c) = session.core(core) {
                let _ = c.run();
            }
        }));
    }
    let _ = catch_unwind(AssertUnwindSafe(move || drop(session)));
}

/// Opens (when listing) and attaches; blocking.
fn attach(
    source: Source,
    opts: &ProbeOptions,
    endpoint: &str,
) -> Result<(Session, Attached), LinkError> {
    let open_err = |detail: String| LinkError::Open {
        endpoint: endpoint.to_string(),
        detail,
    };
    let (mut probe, opened) = match source {
        Source::Probe(p, o) => (p, o),
        Source::Lister => {
            select_probe(&Lister::new(), opts.selector.as_deref()).map_err(open_err)?
        }
    };
    if let Some(p) = opts.protocol {
        probe.select_protocol(p.wire()).map_err(|e| {
            open_err(format!(
                "probe \"{}\" cannot use {}: {}",
                opened.name,
                p.wire(),
                chain(&e)
            ))
        })?;
    }
    if let Some(khz) = opts.speed_khz {
        probe.set_speed(khz).map_err(|e| {
            open_err(format!(
                "probe \"{}\" cannot run at {khz} kHz: {}",
                opened.name,
                chain(&e)
            ))
        })?;
    }
    let protocol = probe.protocol();
    let speed_khz = probe.speed_khz();
    // Never `allow_erase_all`: a locked unit must stay locked.
    let session = if opts.connect_under_reset {
        probe.attach_under_reset_with_registry(
            opts.chip.as_str(),
            Permissions::default(),
            &REGISTRY,
        )
    } else {
        probe.attach_with_registry(opts.chip.as_str(), Permissions::default(), &REGISTRY)
    };
    let mut session = session.map_err(|e| attach_error(endpoint, &e))?;
    let cores = session.list_cores();
    let Some((_, core_type)) = cores.iter().find(|(i, _)| *i == opts.core).copied() else {
        return Err(open_err(format!(
            "{} has no core {} (cores: {})",
            opts.chip,
            opts.core,
            cores
                .iter()
                .map(|(i, t)| format!("{i} ({t:?})"))
                .collect::<Vec<_>>()
                .join(", ")
        )));
    };
    let cortex_m = core_type.is_cortex_m();
    let memory_while_running = session.architecture() == probe_rs::Architecture::Arm;
    let wait = inner_wait(opts.timeout);
    let mut core = session
        .core(opts.core)
        .map_err(|e| attach_error(endpoint, &e))?;
    let halted_now = core.core_halted().map_err(|e| attach_error(endpoint, &e))?;
    let (halted, state) = match (opts.running, halted_now) {
        (true, false) => (false, "core running".to_string()),
        (true, true) => {
            core.run().map_err(|e| attach_error(endpoint, &e))?;
            (
                false,
                "core was halted, resumed (running = true)".to_string(),
            )
        }
        (false, true) => (true, "core halted".to_string()),
        (false, false) => {
            let info = core.halt(wait).map_err(|e| attach_error(endpoint, &e))?;
            (
                true,
                format!(
                    "core halted after attach (running = false), pc {:#010x}",
                    info.pc
                ),
            )
        }
    };
    drop(core);
    Ok((
        session,
        Attached {
            opened,
            protocol,
            speed_khz,
            cortex_m,
            memory_while_running,
            halted,
            state,
        },
    ))
}

/// The bound given to probe-rs's own waits (halt, reset): half the link's, so probe-rs reports
/// its timeout before the link gives up on the worker.
fn inner_wait(timeout: Duration) -> Duration {
    (timeout / 2).max(Duration::from_millis(100))
}

// ---------------------------------------------------------------------------------------------
// The link.

/// A debug port through a probe-rs debug probe. See the module documentation.
pub struct ProbeRsLink {
    name: String,
    chip: String,
    /// "<probe name> (<selector>)", for messages.
    probe: String,
    jobs: Option<mpsc::Sender<Job>>,
    /// Fires when the worker has ended the session.
    done: Option<tokio::sync::oneshot::Receiver<()>>,
    timeout: Duration,
    core: usize,
    cortex_m: bool,
    memory_while_running: bool,
    transcript: Transcript,
    /// The core's run state as the harness set it.
    halted: bool,
    /// Why the link is unusable, once it is.
    closed: Option<String>,
    /// A call is under way; still set at the next call if its future was dropped.
    in_flight: bool,
    quiet: bool,
}

impl std::fmt::Debug for ProbeRsLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProbeRsLink")
            .field("name", &self.name)
            .field("chip", &self.chip)
            .field("probe", &self.probe)
            .field("halted", &self.halted)
            .field("closed", &self.closed)
            .finish_non_exhaustive()
    }
}

fn endpoint(opts: &ProbeOptions, probe: Option<&str>) -> String {
    match (probe, &opts.selector) {
        (Some(p), _) => format!("{} via {p}", opts.chip),
        (None, Some(s)) => format!("{} via probe \"{s}\"", opts.chip),
        (None, None) => format!("{} via the attached debug probe", opts.chip),
    }
}

impl ProbeRsLink {
    /// Finds the probe `opts.selector` selects among those attached (the only one when `None`),
    /// opens it and attaches to `opts.chip`. Listing, opening and attaching run on the link's
    /// worker thread, bounded by `opts.timeout`. Any failure is [`LinkError::Open`], except a
    /// locked chip: [`LinkError::Refused`].
    pub async fn open(
        name: &str,
        opts: &ProbeOptions,
        transcript: Transcript,
    ) -> Result<Self, LinkError> {
        Self::start(name, opts, transcript, Source::Lister, None).await
    }

    /// As [`ProbeRsLink::open`], with the probes `lister` finds (tests inject their own).
    /// `Lister` is not `Send`, so listing and opening the probe run on the calling thread
    /// (quick: USB enumeration); attaching runs on the worker.
    pub async fn open_with(
        name: &str,
        lister: Lister,
        opts: &ProbeOptions,
        transcript: Transcript,
    ) -> Result<Self, LinkError> {
        let ep = endpoint(opts, None);
        if let Err(detail) = check_chip(&opts.chip) {
            return Err(Self::open_failed(name, &transcript, &ep, detail));
        }
        let (probe, opened) = match select_probe(&lister, opts.selector.as_deref()) {
            Ok(v) => v,
            Err(detail) => return Err(Self::open_failed(name, &transcript, &ep, detail)),
        };
        drop(lister);
        Self::start(name, opts, transcript, Source::Probe(probe, opened), None).await
    }

    /// Attaches through `probe`, already open (e.g. a `probe_rs::integration::FakeProbe`);
    /// `opts.selector` is ignored.
    pub async fn from_probe(
        name: &str,
        probe: Probe,
        opts: &ProbeOptions,
        transcript: Transcript,
    ) -> Result<Self, LinkError> {
        let opened = Opened {
            name: probe.get_name(),
            selector: "given probe".into(),
        };
        let label = format!("{} ({})", opened.name, opened.selector);
        Self::start(
            name,
            opts,
            transcript,
            Source::Probe(probe, opened),
            Some(label),
        )
        .await
    }

    fn open_failed(name: &str, transcript: &Transcript, ep: &str, detail: String) -> LinkError {
        let e = LinkError::Open {
            endpoint: ep.to_string(),
            detail,
        };
        transcript.note(format!("debug {name}: attaching to {ep} failed: {e}"));
        e
    }

    async fn start(
        name: &str,
        opts: &ProbeOptions,
        transcript: Transcript,
        source: Source,
        probe_label: Option<String>,
    ) -> Result<Self, LinkError> {
        let ep = endpoint(opts, probe_label.as_deref());
        if let Err(detail) = check_chip(&opts.chip) {
            return Err(Self::open_failed(name, &transcript, &ep, detail));
        }
        let (jobs_tx, jobs_rx) = mpsc::channel::<Job>();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        let worker_opts = opts.clone();
        let worker_ep = ep.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("probe-rs {name}"))
            .spawn(move || worker_main(source, worker_opts, worker_ep, jobs_rx, ready_tx, done_tx));
        if let Err(e) = spawned {
            return Err(Self::open_failed(
                name,
                &transcript,
                &ep,
                format!("cannot start the probe worker thread: {e}"),
            ));
        }
        let attached = match tokio::time::timeout(opts.timeout, ready_rx).await {
            Err(_) => Err(LinkError::Open {
                endpoint: ep.clone(),
                detail: format!(
                    "no answer from the probe within {:?} while attaching",
                    opts.timeout
                ),
            }),
            Ok(Err(_)) => Err(LinkError::Open {
                endpoint: ep.clone(),
                detail: "the probe worker ended while attaching".into(),
            }),
            Ok(Ok(r)) => r,
        };
        let a = match attached {
            Ok(a) => a,
            Err(e) => {
                transcript.note(format!("debug {name}: attaching to {ep} failed: {e}"));
                return Err(e);
            }
        };
        let mut text = format!(
            "attached to {} via {} ({}",
            opts.chip, a.opened.name, a.opened.selector
        );
        if let Some(p) = a.protocol {
            let _ = write!(text, ", {p}");
        }
        let _ = write!(text, ", {} kHz", a.speed_khz);
        if opts.connect_under_reset {
            text.push_str(", under reset");
        }
        let _ = write!(text, "); core {}: {}", opts.core, a.state);
        let link = ProbeRsLink {
            name: name.to_string(),
            chip: opts.chip.clone(),
            probe: format!("{} ({})", a.opened.name, a.opened.selector),
            jobs: Some(jobs_tx),
            done: Some(done_rx),
            timeout: opts.timeout,
            core: opts.core,
            cortex_m: a.cortex_m,
            memory_while_running: a.memory_while_running,
            transcript,
            halted: a.halted,
            closed: None,
            in_flight: false,
            quiet: false,
        };
        link.note(text);
        Ok(link)
    }

    /// Whether the core is halted, as far as the link knows (the harness halted it).
    pub fn is_halted(&self) -> bool {
        self.halted
    }

    /// The probe in use: "<probe name> (<selector>)".
    pub fn probe(&self) -> &str {
        &self.probe
    }

    fn note(&self, text: impl AsRef<str>) {
        if !self.quiet {
            self.note_always(text);
        }
    }

    /// A note made even while quiet: failures.
    fn note_always(&self, text: impl AsRef<str>) {
        self.transcript
            .note(format!("debug {}: {}", self.name, text.as_ref()));
    }

    /// Marks the link unusable and passes the error on; the worker ends (and detaches) once
    /// it has nothing left to do. A core the harness halted is resumed first, best effort.
    fn broken(&mut self, e: LinkError) -> LinkError {
        if self.closed.is_none() {
            self.closed = Some(e.to_string());
            self.note_always(format!("link unusable: {e}"));
            self.release();
        }
        e
    }

    /// Lets the worker end: resumes a core the harness halted (best effort, not awaited),
    /// then drops the job channel.
    fn release(&mut self) {
        if let Some(tx) = self.jobs.take() {
            if self.halted {
                let core = self.core;
                let _ = tx.send(Box::new(move |s: &mut Session| {
                    catch_unwind(AssertUnwindSafe(|| {
                        if let Ok(mut c) = s.core(core) {
                            let _ = c.run();
                        }
                    }))
                    .is_err()
                }));
            }
        }
    }

    /// Starts a public operation: refuses on a closed link, and closes one whose previous call
    /// was interrupted (the core's state is then unknown).
    fn enter(&mut self) -> Result<(), LinkError> {
        if let Some(why) = &self.closed {
            return Err(LinkError::Closed(format!(
                "the probe link to {} is closed ({why})",
                self.chip
            )));
        }
        if self.in_flight {
            self.in_flight = false;
            return Err(self.broken(LinkError::Closed(format!(
                "an earlier operation on {} via {} was interrupted before its answer; the \
                 core's state is unknown",
                self.chip, self.probe
            ))));
        }
        self.in_flight = true;
        Ok(())
    }

    /// Ends a public operation; notes a failure.
    fn leave<T>(&mut self, what: &str, r: Result<T, LinkError>) -> Result<T, LinkError> {
        self.in_flight = false;
        if let Err(e) = &r {
            self.note_always(format!("{what}: failed: {e}"));
        }
        r
    }

    /// Runs `f` on the worker, bounded by `bound`. A timeout, a panic, a dead worker or a
    /// `Closed`/`Timeout` error close the link.
    async fn call<R: Send + 'static>(
        &mut self,
        what: &str,
        bound: Duration,
        f: impl FnOnce(&mut Session) -> Result<R, LinkError> + Send + 'static,
    ) -> Result<R, LinkError> {
        let gone = |link: &Self| {
            LinkError::Closed(format!(
                "the probe-rs worker for {} via {} has ended",
                link.chip, link.probe
            ))
        };
        let Some(tx) = &self.jobs else {
            let e = gone(self);
            return Err(self.broken(e));
        };
        let (rtx, rrx) = tokio::sync::oneshot::channel::<Result<R, LinkError>>();
        let label = what.to_string();
        let job: Job = Box::new(move |s: &mut Session| {
            let started = Instant::now();
            let (r, panicked) = match catch_unwind(AssertUnwindSafe(|| f(s))) {
                // probe-rs's own waits have their own bounds: say how long it really took.
                Ok(Err(LinkError::Timeout { pattern, tail, .. })) => (
                    Err(LinkError::Timeout {
                        pattern,
                        waited: started.elapsed(),
                        tail,
                    }),
                    false,
                ),
                Ok(r) => (r, false),
                Err(p) => (
                    Err(LinkError::Closed(format!(
                        "probe-rs panicked during {label}: {}",
                        panic_text(&*p)
                    ))),
                    true,
                ),
            };
            let _ = rtx.send(r);
            panicked
        });
        if tx.send(job).is_err() {
            let e = gone(self);
            return Err(self.broken(e));
        }
        match tokio::time::timeout(bound, rrx).await {
            Err(_) => {
                let e = LinkError::Timeout {
                    pattern: format!("probe-rs: {what}"),
                    waited: bound,
                    tail: format!("no answer from {} via {}", self.chip, self.probe),
                };
                Err(self.broken(e))
            }
            Ok(Err(_)) => {
                let e = LinkError::Closed(format!(
                    "the probe-rs worker for {} via {} ended during {what}",
                    self.chip, self.probe
                ));
                Err(self.broken(e))
            }
            Ok(Ok(Err(e @ (LinkError::Closed(_) | LinkError::Timeout { .. })))) => {
                Err(self.broken(e))
            }
            Ok(Ok(r)) => r,
        }
    }
}

/// Reads a Cortex-M register set, or probe-rs's core registers elsewhere. The core is halted.
fn read_registers_on(
    core: &mut probe_rs::Core<'_>,
    cortex_m: bool,
) -> Result<Vec<Register>, probe_rs::Error> {
    let mut out = Vec::new();
    if cortex_m {
        for id in 0u16..=16 {
            let name = match id {
                13 => "sp".to_string(),
                14 => "lr".to_string(),
                15 => "pc".to_string(),
                16 => "xpsr".to_string(),
                n => format!("r{n}"),
            };
            let v: RegisterValue = core.read_core_reg(RegisterId(id))?;
            out.push(Register {
                name,
                value: register_u64(v),
            });
        }
    } else {
        let regs: Vec<(String, RegisterId)> = core
            .registers()
            .core_registers()
            .map(|r| (r.name().to_string(), r.id()))
            .collect();
        for (name, id) in regs {
            let v: RegisterValue = core.read_core_reg(id)?;
            out.push(Register {
                name,
                value: register_u64(v),
            });
        }
    }
    Ok(out)
}

fn register_u64(v: RegisterValue) -> u64 {
    match v {
        RegisterValue::U32(x) => u64::from(x),
        RegisterValue::U64(x) => x,
        // Wider registers (FPU) keep their low 64 bits.
        RegisterValue::U128(x) => x as u64,
    }
}

/// Contiguous (address, length) regions of the data chunks.
fn regions(chunks: impl Iterator<Item = (u64, usize)>) -> Vec<(u64, u64)> {
    let mut v: Vec<(u64, u64)> = chunks.map(|(a, l)| (a, l as u64)).collect();
    v.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::new();
    for (a, l) in v {
        match out.last_mut() {
            Some((la, ll)) if la.saturating_add(*ll) == a => *ll += l,
            _ => out.push((a, l)),
        }
    }
    out
}

#[async_trait::async_trait]
impl DebugAccess for ProbeRsLink {
    async fn halt(&mut self) -> Result<(), LinkError> {
        self.enter()?;
        let (core, wait, to) = (self.core, inner_wait(self.timeout), self.timeout);
        let r = self
            .call("halt", to, move |s| {
                let mut c = s.core(core).map_err(|e| op_error("halt", wait, &e))?;
                if c.core_halted().map_err(|e| op_error("halt", wait, &e))? {
                    return Ok(None);
                }
                let info = c.halt(wait).map_err(|e| op_error("halt", wait, &e))?;
                Ok(Some(info.pc))
            })
            .await;
        let r = match r {
            Ok(None) => {
                self.halted = true;
                self.note("halt: already halted");
                Ok(())
            }
            Ok(Some(pc)) => {
                self.halted = true;
                self.note(format!("halted (pc {pc:#010x})"));
                Ok(())
            }
            Err(e) => Err(e),
        };
        self.leave("halt", r)
    }

    async fn resume(&mut self) -> Result<(), LinkError> {
        self.enter()?;
        let (core, wait, to) = (self.core, inner_wait(self.timeout), self.timeout);
        let r = self
            .call("resume", to, move |s| {
                let mut c = s.core(core).map_err(|e| op_error("resume", wait, &e))?;
                if !c.core_halted().map_err(|e| op_error("resume", wait, &e))? {
                    return Ok(false);
                }
                c.run().map_err(|e| op_error("resume", wait, &e))?;
                Ok(true)
            })
            .await;
        let r = match r {
            Ok(resumed) => {
                self.halted = false;
                self.note(if resumed {
                    "resumed"
                } else {
                    "resume: already running"
                });
                Ok(())
            }
            Err(e) => Err(e),
        };
        self.leave("resume", r)
    }

    async fn read_memory(&mut self, address: u64, len: usize) -> Result<Vec<u8>, LinkError> {
        let what = format!("read {len} bytes at {address:#010x}");
        if let Err(e) = check_access("read", address, len) {
            self.note_always(format!("{what}: failed: {e}"));
            return Err(e);
        }
        self.enter()?;
        let halt_for_it = !self.halted && !self.memory_while_running;
        let (core, wait, to) = (self.core, inner_wait(self.timeout), self.timeout);
        let label = what.clone();
        let started = Instant::now();
        let r = self
            .call(&what, to, move |s| {
                let mut c = s.core(core).map_err(|e| op_error(&label, wait, &e))?;
                if halt_for_it {
                    c.halt(wait).map_err(|e| op_error(&label, wait, &e))?;
                }
                let mut buf = vec![0u8; len];
                let r = c
                    .read(address, &mut buf)
                    .map_err(|e| op_error(&label, wait, &e));
                if halt_for_it {
                    c.run().map_err(|e| op_error(&label, wait, &e))?;
                }
                r.map(|()| buf)
            })
            .await;
        let r = r.inspect(|bytes| {
            let halted = halted_for(halt_for_it, started);
            self.note(format!("{what}{halted}: {}", hex_preview(bytes)));
        });
        self.leave(&what, r)
    }

    async fn write_memory(&mut self, address: u64, data: &[u8]) -> Result<(), LinkError> {
        let what = format!("write {} bytes at {address:#010x}", data.len());
        if let Err(e) = check_access("write", address, data.len()) {
            self.note_always(format!("{what}: failed: {e}"));
            return Err(e);
        }
        self.enter()?;
        let halt_for_it = !self.halted && !self.memory_while_running;
        let (core, wait, to) = (self.core, inner_wait(self.timeout), self.timeout);
        let label = what.clone();
        let bytes = data.to_vec();
        let started = Instant::now();
        let r = self
            .call(&what, to, move |s| {
                let mut c = s.core(core).map_err(|e| op_error(&label, wait, &e))?;
                if halt_for_it {
                    c.halt(wait).map_err(|e| op_error(&label, wait, &e))?;
                }
                let r = c
                    .write(address, &bytes)
                    .and_then(|()| c.flush())
                    .map_err(|e| op_error(&label, wait, &e));
                if halt_for_it {
                    c.run().map_err(|e| op_error(&label, wait, &e))?;
                }
                r
            })
            .await;
        let r = r.inspect(|()| {
            let halted = halted_for(halt_for_it, started);
            self.note(format!(
                "wrote {} bytes at {address:#010x}{halted}: {}",
                data.len(),
                hex_preview(data)
            ));
        });
        self.leave(&what, r)
    }

    async fn read_registers(&mut self) -> Result<Vec<Register>, LinkError> {
        self.enter()?;
        let (core, wait, to, cortex_m) = (
            self.core,
            inner_wait(self.timeout),
            self.timeout,
            self.cortex_m,
        );
        let was_running = !self.halted;
        let r = self
            .call("read registers", to, move |s| {
                let what = "read registers";
                let mut c = s.core(core).map_err(|e| op_error(what, wait, &e))?;
                let halted = c.core_halted().map_err(|e| op_error(what, wait, &e))?;
                if !halted {
                    c.halt(wait).map_err(|e| op_error(what, wait, &e))?;
                }
                let r = read_registers_on(&mut c, cortex_m).map_err(|e| op_error(what, wait, &e));
                if !halted {
                    c.run().map_err(|e| op_error(what, wait, &e))?;
                }
                r
            })
            .await;
        let r = r.inspect(|regs| {
            let mut text = String::from("registers:");
            for reg in regs {
                let _ = write!(text, " {}={:#010x}", reg.name, reg.value);
            }
            if was_running {
                text.push_str(" (halted for the read)");
            }
            self.note(text);
        });
        self.leave("read registers", r)
    }

    async fn reset(&mut self) -> Result<(), LinkError> {
        self.enter()?;
        let (core, wait, to, keep_halted) = (
            self.core,
            inner_wait(self.timeout),
            self.timeout,
            self.halted,
        );
        let r = self
            .call("reset", to, move |s| {
                let mut c = s.core(core).map_err(|e| op_error("reset", wait, &e))?;
                if keep_halted {
                    let info = c
                        .reset_and_halt(wait)
                        .map_err(|e| op_error("reset", wait, &e))?;
                    Ok(Some(info.pc))
                } else {
                    c.reset().map_err(|e| op_error("reset", wait, &e))?;
                    Ok(None)
                }
            })
            .await;
        let r = r.map(|pc| match pc {
            Some(pc) => self.note(format!(
                "reset (core reset, kept halted at the reset vector, pc {pc:#010x})"
            )),
            None => self.note("reset (core reset, running)"),
        });
        self.leave("reset", r)
    }

    async fn reset_halt(&mut self) -> Result<(), LinkError> {
        self.enter()?;
        let (core, wait, to) = (self.core, inner_wait(self.timeout), self.timeout);
        let r = self
            .call("reset and halt", to, move |s| {
                let mut c = s
                    .core(core)
                    .map_err(|e| op_error("reset and halt", wait, &e))?;
                let info = c
                    .reset_and_halt(wait)
                    .map_err(|e| op_error("reset and halt", wait, &e))?;
                Ok(info.pc)
            })
            .await;
        let r = r.map(|pc| {
            self.halted = true;
            self.note(format!("reset (halted at the reset vector, pc {pc:#010x})"));
        });
        self.leave("reset and halt", r)
    }

    async fn flash(
        &mut self,
        req: &FlashRequest,
        progress: &ProgressSink,
    ) -> Result<FlashReport, LinkError> {
        let what = format!("flash {}", req.path.display());
        self.enter()?;
        let bound = self.timeout.max(FLASH_MIN_TIMEOUT);
        let core = self.core;
        let (path, format, verify) = (req.path.clone(), req.format, req.verify);
        let sink = progress.clone();
        let label = what.clone();
        let r = self
            .call(&what, bound, move |s| {
                let loader: Box<dyn ImageLoader> = match format {
                    ImageFormat::Elf => Box::new(ElfLoader(ElfOptions::default())),
                    ImageFormat::Hex => Box::new(HexLoader),
                    ImageFormat::Bin { base } => Box::new(BinLoader(BinOptions {
                        base_address: Some(base),
                        skip: 0,
                    })),
                };
                let loader = probe_rs::flashing::build_loader(s, &path, loader, None).map_err(
                    |e| match e {
                        probe_rs::flashing::FileDownloadError::IO(io) => {
                            LinkError::Protocol(format!("{label}: cannot read the image: {io}"))
                        }
                        other => op_error(&label, bound, &other),
                    },
                )?;
                let regions = regions(loader.data().map(|(a, d)| (a, d.len())));
                let total: u64 = regions.iter().map(|(_, l)| l).sum();
                let mut options = DownloadOptions::default();
                options.verify = verify;
                let mut written = 0u64;
                let mut started = false;
                let sink2 = sink.clone();
                options.progress = probe_rs::flashing::FlashProgress::new(move |ev| match ev {
                    ProgressEvent::Started(ProgressOperation::Program) if !started => {
                        started = true;
                        sink2(FlashProgress::Started { total });
                    }
                    ProgressEvent::Progress {
                        operation: ProgressOperation::Program,
                        size,
                        ..
                    } => {
                        written = (written + size).min(total);
                        sink2(FlashProgress::Written {
                            done: written,
                            total,
                        });
                    }
                    ProgressEvent::Started(ProgressOperation::Verify) => {
                        sink2(FlashProgress::Verifying { total });
                    }
                    _ => {}
                });
                loader
                    .commit(s, options)
                    .map_err(|e| op_error(&label, bound, &e))?;
                sink(FlashProgress::Finished);
                // Flash algorithms run on the core: it is usually left halted.
                let halted = s
                    .core(core)
                    .and_then(|mut c| c.core_halted())
                    .map_err(|e| op_error(&label, bound, &e))?;
                Ok((
                    FlashReport {
                        bytes: total,
                        regions,
                        verified: verify,
                    },
                    halted,
                ))
            })
            .await;
        let r = r.map(|(rep, halted)| {
            self.halted = halted;
            rep
        });
        let r = r.inspect(|rep| {
            let list = rep
                .regions
                .iter()
                .map(|(a, l)| format!("{a:#010x}+{l}"))
                .collect::<Vec<_>>()
                .join(", ");
            self.note(format!(
                "flashed {} ({:?}): {} bytes in {} region(s) ({list}){}",
                req.path.display(),
                req.format,
                rep.bytes,
                rep.regions.len(),
                if rep.verified {
                    ", verified"
                } else {
                    ", not verified"
                }
            ));
            if self.halted {
                self.note("core left halted by the flash algorithm");
            }
        });
        self.leave(&what, r)
    }

    async fn close(&mut self) -> Result<(), LinkError> {
        if self.closed.is_some() {
            return Ok(());
        }
        self.enter()?;
        let mut r = Ok(());
        if self.halted {
            let (core, wait, to) = (self.core, inner_wait(self.timeout), self.timeout);
            r = self
                .call("resume before detaching", to, move |s| {
                    let mut c = s.core(core).map_err(|e| op_error("resume", wait, &e))?;
                    c.run().map_err(|e| op_error("resume", wait, &e))
                })
                .await;
            if r.is_ok() {
                self.halted = false;
            }
        }
        self.in_flight = false;
        self.jobs = None;
        // After a failure the worker may be stuck in probe-rs: do not wait for it then.
        let waited = match self.done.take() {
            Some(done) if r.is_ok() => tokio::time::timeout(CLOSE_WAIT, done).await.is_ok(),
            _ => true,
        };
        match (&r, waited) {
            (Ok(()), true) => self.note(format!(
                "detached from {} via {}; the target runs",
                self.chip, self.probe
            )),
            (Ok(()), false) => self.note_always(format!(
                "detach from {} via {}: no confirmation within {CLOSE_WAIT:?}",
                self.chip, self.probe
            )),
            (Err(e), _) => self.note_always(format!("detach failed: {e}")),
        }
        if self.closed.is_none() {
            self.closed = Some("closed by the harness".into());
        }
        r
    }

    fn is_closed(&self) -> bool {
        self.closed.is_some() || self.in_flight
    }

    fn set_transcript(&mut self, t: Transcript) {
        self.transcript = t;
    }

    fn set_quiet(&mut self, quiet: bool) {
        self.quiet = quiet;
    }
}

impl Drop for ProbeRsLink {
    /// Resumes a core the harness halted and detaches, best effort, without waiting.
    fn drop(&mut self) {
        self.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selector_forms() {
        assert!(check_selector("0d28:0204").is_ok());
        assert!(check_selector("0D28:0204:0240000034544e45").is_ok());
        assert!(check_selector("0403:6010-1:ABC").is_ok());
        for bad in [
            "",
            "0d28",
            "0d28:",
            ":0204",
            "xyz:0204",
            "12345:0204",
            "0d28:0204: x",
        ] {
            let e = check_selector(bad).unwrap_err();
            assert!(e.contains("VID:PID:SERIAL"), "{bad}: {e}");
        }
    }

    #[test]
    fn regions_merge() {
        assert_eq!(
            regions([(0x100, 16), (0x0, 0x100), (0x200, 4)].into_iter()),
            vec![(0, 0x110), (0x200, 4)]
        );
    }

    #[test]
    fn classification() {
        let e = probe_rs::Error::MissingPermissions("erase_all".into());
        assert_eq!(classify(&e), Class::Locked);
        let e = probe_rs::Error::Probe(DebugProbeError::Usb(std::io::Error::other("gone")));
        assert_eq!(classify(&e), Class::Gone);
        let e = probe_rs::Error::Arm(ArmError::NoTargetResponse {
            source: Box::new(ArmError::Dap(DapError::NoAcknowledge)),
        });
        assert_eq!(classify(&e), Class::NoTarget);
        let e = probe_rs::Error::Arm(ArmError::Dap(DapError::FaultResponse));
        assert_eq!(classify(&e), Class::Fault);
        assert!(matches!(
            op_error("read", Duration::ZERO, &e),
            LinkError::Refused(_)
        ));
        assert!(matches!(
            attach_error(
                "x",
                &probe_rs::Error::Arm(ArmError::Dap(DapError::NoAcknowledge))
            ),
            LinkError::Open { .. }
        ));
        assert_eq!(classify(&probe_rs::Error::Timeout), Class::Timeout);
        let e = probe_rs::Error::Other("Command failed with status SwdApStickyError.".into());
        assert_eq!(classify(&e), Class::Fault);
        let e = probe_rs::Error::Other("Command failed with status JtagNoDeviceConnected.".into());
        assert_eq!(classify(&e), Class::NoTarget);
        let e = probe_rs::Error::Arm(ArmError::MissingPermissions("erase_all".into()));
        assert!(matches!(attach_error("x", &e), LinkError::Refused(_)));
        let e = probe_rs::Error::Other("Command failed with status SwdApFault.".into());
        assert!(matches!(
            attach_error("x", &e),
            LinkError::Open { ref detail, .. } if detail.starts_with(ATTACH_FAULT)
        ));
        assert_eq!(
            classify(&probe_rs::Error::NotImplemented("reset")),
            Class::Other
        );
    }
}
