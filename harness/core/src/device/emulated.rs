//! Steps that reach below the unit's own interfaces: its emulator (warm reset, power cycle),
//! its power (a switch, or the emulator's process) and its debug port (memory, halt, resume,
//! reset, flashing).
//!
//! Kept apart from `steps.rs` because these speak to the machine rather than to the firmware:
//! what they read is what the processor holds, not what the device says about itself (the
//! update suite uses that to check a refused image was not installed). Every access is noted
//! in the transcript by the debug link; emulator control is noted here.

use std::collections::BTreeMap;
use std::time::Duration;

use regex::bytes::Regex;

use super::steps::{At, StepCtx};
use super::{ActionError, ActionOutcome, Device};
use crate::board::{
    parse_address, DebugOp, EmulatorOp, FlashFormat, Interface, PowerDriverSpec, PowerOp,
};
use crate::iface::flash::{FlashProgress, FlashRequest, ImageFormat, ProgressSink};
use crate::iface::LinkError;
use crate::template::Template;

/// How long a warm reset may take to be acknowledged.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(10);

/// What a `read_memory` step asks for.
pub(super) struct MemoryRead<'s> {
    pub address: &'s Template,
    pub length: usize,
    /// As text up to the first NUL or erased byte (else as hex).
    pub text: bool,
    pub pattern: Option<&'s Regex>,
    pub reject: Option<&'s Regex>,
    pub capture: Option<&'s str>,
}

/// Hex text ("de ad be ef", "deadbeef") as bytes.
fn parse_hex(s: &str) -> Option<Vec<u8>> {
    let digits: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    crate::iface::gdb::from_hex(&digits).ok()
}

impl Device {
    pub(super) async fn step_emulator(
        &mut self,
        at: &At<'_>,
        op: EmulatorOp,
    ) -> Result<(), ActionError> {
        let Some(handle) = self.emulator.clone() else {
            return Err(at.emulator("the unit has no running emulator".to_string()));
        };
        let mut em = handle.lock().await;
        match op {
            EmulatorOp::Reset => {
                let how = em.reset_method();
                self.transcript
                    .note(format!("emulator: warm reset ({how})"));
                em.reset(CONTROL_TIMEOUT)
                    .await
                    .map_err(|e| at.emulator(e.to_string()))?;
            }
            EmulatorOp::PowerCycle => {
                self.transcript
                    .note("emulator: power cycle (the process is stopped and started again)");
                em.power_cycle()
                    .await
                    .map_err(|e| at.emulator(e.to_string()))?;
                drop(em);
                // Every link of the old process is gone; the console of the new one was
                // connected when it started and is taken on the next console step.
                self.drop_links(None).await;
                self.transcript.note("emulator: started again");
            }
        }
        Ok(())
    }

    pub(super) async fn step_read_memory(
        &mut self,
        at: &At<'_>,
        ctx: &mut StepCtx<'_>,
        out: &mut ActionOutcome,
        on: &str,
        read: MemoryRead<'_>,
        timeout: Duration,
    ) -> Result<(), ActionError> {
        let addr_text = read
            .address
            .render(&ctx.vars)
            .map_err(|e| at.tmpl(e.to_string()))?
            .text;
        let address = parse_address(&addr_text)
            .ok_or_else(|| at.tmpl(format!("{addr_text:?} is not an address")))?;
        let dbg = self.debug_link(at, on, timeout).await?;
        let mut dbg = dbg.lock().await;
        let bytes = tokio::time::timeout(outer(timeout), dbg.read_memory(address, read.length))
            .await
            .map_err(|_| at.link(timeout_error("read_memory", timeout)))?
            .map_err(|e| at.link(e))?;
        let text = if read.text {
            let end = bytes
                .iter()
                .position(|b| *b == 0 || *b == 0xff)
                .unwrap_or(bytes.len());
            String::from_utf8_lossy(&bytes[..end]).into_owned()
        } else {
            crate::iface::gdb::to_hex(&bytes)
        };
        if let Some(r) = read.reject {
            if r.is_match(text.as_bytes()) {
                out.rejected = Some(text);
                return Ok(());
            }
        }
        let mut caps = BTreeMap::new();
        if let Some(p) = read.pattern {
            match p.captures(text.as_bytes()) {
                Some(c) => {
                    for name in p.capture_names().flatten() {
                        if let Some(m) = c.name(name) {
                            caps.insert(
                                name.to_string(),
                                String::from_utf8_lossy(m.as_bytes()).into_owned(),
                            );
                        }
                    }
                }
                None => {
                    return Err(at.link(LinkError::Protocol(format!(
                        "memory at {address:#x} ({text}) does not match /{}/",
                        p.as_str()
                    ))))
                }
            }
        }
        if let Some(name) = read.capture {
            caps.insert(name.to_string(), text);
        }
        ctx.capture(caps, out);
        Ok(())
    }

    pub(super) async fn step_write_memory(
        &mut self,
        at: &At<'_>,
        ctx: &mut StepCtx<'_>,
        on: &str,
        address: &Template,
        data: &Template,
        timeout: Duration,
    ) -> Result<(), ActionError> {
        let addr_text = address
            .render(&ctx.vars)
            .map_err(|e| at.tmpl(e.to_string()))?
            .text;
        let address = parse_address(&addr_text)
            .ok_or_else(|| at.tmpl(format!("{addr_text:?} is not an address")))?;
        let hex = data.render(&ctx.vars).map_err(|e| at.tmpl(e.to_string()))?;
        for s in &hex.secrets {
            self.redactor.add(s);
        }
        let bytes = parse_hex(&hex.text)
            .ok_or_else(|| at.tmpl("`value` of write_memory is not hex bytes".to_string()))?;
        let dbg = self.debug_link(at, on, timeout).await?;
        let mut dbg = dbg.lock().await;
        tokio::time::timeout(outer(timeout), dbg.write_memory(address, &bytes))
            .await
            .map_err(|_| at.link(timeout_error("write_memory", timeout)))?
            .map_err(|e| at.link(e))
    }

    pub(super) async fn step_debug(
        &mut self,
        at: &At<'_>,
        on: &str,
        op: DebugOp,
        timeout: Duration,
    ) -> Result<(), ActionError> {
        let dbg = self.debug_link(at, on, timeout).await?;
        let mut dbg = dbg.lock().await;
        let r = match op {
            DebugOp::Halt => tokio::time::timeout(outer(timeout), dbg.halt()).await,
            DebugOp::Resume => tokio::time::timeout(outer(timeout), dbg.resume()).await,
            DebugOp::Reset => tokio::time::timeout(outer(timeout), dbg.reset()).await,
            DebugOp::ResetHalt => tokio::time::timeout(outer(timeout), dbg.reset_halt()).await,
        };
        r.map_err(|_| at.link(timeout_error("debug", timeout)))?
            .map_err(|e| at.link(e))
    }

    /// Writes a firmware image through debug port `on`, with progress on the terminal (when
    /// standard error is one) and in the transcript, then verifies it when asked.
    pub(super) async fn step_flash(
        &mut self,
        at: &At<'_>,
        ctx: &mut StepCtx<'_>,
        flash: FlashStep<'_>,
    ) -> Result<(), ActionError> {
        let path = flash
            .file
            .render(&ctx.vars)
            .map_err(|e| at.tmpl(e.to_string()))?
            .text;
        let format = match flash.format.unwrap_or_else(|| FlashFormat::from_path(&path)) {
            FlashFormat::Elf => ImageFormat::Elf,
            FlashFormat::Hex => ImageFormat::Hex,
            FlashFormat::Bin => match flash.base {
                Some(base) => ImageFormat::Bin { base },
                None => {
                    return Err(at.tmpl(format!(
                        "{path} is a raw binary (.bin): say where it goes with `base`, or give `format`"
                    )))
                }
            },
        };
        match std::fs::metadata(&path) {
            Ok(m) if m.is_file() && m.len() <= crate::iface::flash::MAX_IMAGE => {}
            Ok(m) if m.is_file() => {
                return Err(at.tmpl(format!(
                    "firmware image {path} is {} bytes, more than the {} a flash step writes",
                    m.len(),
                    crate::iface::flash::MAX_IMAGE
                )))
            }
            _ => {
                return Err(at.tmpl(format!(
                    "firmware image {path} does not exist (build it first, or fix the `flash` path)"
                )))
            }
        }
        let req = FlashRequest {
            path: path.clone().into(),
            format,
            verify: flash.verify,
        };
        self.transcript.note(format!(
            "flash {}: writing {path} ({format:?}{})",
            flash.on,
            if flash.verify { ", verified after" } else { "" }
        ));
        let progress = flash_progress(
            &self.unit.name,
            flash.on,
            self.transcript.clone(),
            self.env.events.clone(),
        );
        let dbg = self.debug_link(at, flash.on, flash.timeout).await?;
        let mut dbg = dbg.lock().await;
        // Writing flash takes longer than any other access: the step's timeout bounds the
        // connection, a whole image gets at least ten minutes (the link's own bound; this one
        // only catches a link that ignores its own).
        let bound = flash.timeout.max(FLASH_TIMEOUT) + MARGIN;
        let report = tokio::time::timeout(bound, dbg.flash(&req, &progress))
            .await
            .map_err(|_| at.link(timeout_error("flash", bound)))?
            .map_err(|e| at.link(e))?;
        // The new firmware starts from reset, running: what a person flashing a board expects
        // (the core was halted for the writes).
        let started = async {
            dbg.reset().await?;
            dbg.resume().await
        };
        let started = tokio::time::timeout(outer(flash.timeout), started).await;
        drop(dbg);
        // A new image may keep its RTT control block elsewhere.
        self.drop_rtt_consoles_of(flash.on);
        started
            .map_err(|_| at.link(timeout_error("reset after flashing", flash.timeout)))?
            .map_err(|e| at.link(e))?;
        let regions: Vec<String> = report
            .regions
            .iter()
            .map(|(a, n)| format!("{n} bytes at {a:#010x}"))
            .collect();
        self.transcript.note(format!(
            "flash {}: wrote {} bytes ({}){}",
            flash.on,
            report.bytes,
            regions.join(", "),
            if report.verified {
                "; read back and verified; reset, running"
            } else {
                "; not verified; reset, running"
            }
        ));
        Ok(())
    }

    /// Switches the unit's power through power interface `on`, or, with none, the emulated
    /// unit's own (its process is stopped and started again).
    pub(super) async fn step_power(
        &mut self,
        at: &At<'_>,
        on: Option<&str>,
        op: PowerOp,
        timeout: Duration,
    ) -> Result<(), ActionError> {
        let spec = on.and_then(|o| match self.model.interfaces.get(o) {
            Some(Interface::Power(p)) => Some(p.clone()),
            _ => None,
        });
        let emulated = spec
            .as_ref()
            .is_none_or(|p| matches!(p.driver, PowerDriverSpec::Emulator));
        if emulated {
            let Some(handle) = self.emulator.clone() else {
                return Err(at.emulator("the unit has no running emulator to switch".to_string()));
            };
            let mut em = handle.lock().await;
            match op {
                PowerOp::Off => {
                    self.transcript
                        .note("power (emulator): off (the process is stopped)");
                    em.power_off().await;
                }
                PowerOp::On => {
                    self.transcript.note("power (emulator): on");
                    em.power_on()
                        .await
                        .map_err(|e| at.emulator(e.to_string()))?;
                }
                PowerOp::Cycle => {
                    self.transcript
                        .note("power (emulator): cycle (the process is stopped and started again)");
                    em.power_cycle()
                        .await
                        .map_err(|e| at.emulator(e.to_string()))?;
                }
            }
            drop(em);
            // Every link of the old process is gone.
            self.drop_links(None).await;
            return Ok(());
        }
        let (Some(on), Some(spec)) = (on, spec) else {
            return Err(at.tmpl("no power interface".to_string()));
        };
        let power = self.power_link(at, on, timeout).await?;
        let r = match op {
            PowerOp::On => power.set(true).await,
            PowerOp::Off => power.set(false).await,
            PowerOp::Cycle => power.cycle(spec.off_time).await,
        };
        r.map_err(|e| at.link(e))?;
        // A unit switched off or cycled drops its connections: links to it are opened
        // afresh by the next step that needs them (the power switch's own stays).
        if op != PowerOp::On {
            self.drop_links(Some(on)).await;
        }
        Ok(())
    }
}

/// What a `flash` step asks for.
pub(super) struct FlashStep<'s> {
    pub on: &'s str,
    pub file: &'s Template,
    pub format: Option<FlashFormat>,
    pub base: Option<u64>,
    pub verify: bool,
    pub timeout: Duration,
}

/// The least time a whole image may take to write and verify.
const FLASH_TIMEOUT: Duration = Duration::from_secs(600);

/// Added to a step's timeout where a debug link bounds the same exchange itself: the link's
/// own timeout ends it (and keeps the link usable); this one only catches a link that hangs.
const MARGIN: Duration = Duration::from_secs(5);

fn outer(timeout: Duration) -> Duration {
    timeout + MARGIN
}

/// Progress of a flash: a `Progress` event per percent for the live display (the terminal
/// reporter shows it on the unit's bar when a person is watching), and a note per quarter in
/// the transcript.
fn flash_progress(
    unit: &str,
    iface: &str,
    t: crate::transcript::Transcript,
    events: Option<tokio::sync::mpsc::UnboundedSender<crate::event::Event>>,
) -> ProgressSink {
    use std::sync::atomic::{AtomicU64, Ordering};
    let noted = AtomicU64::new(0);
    let shown = AtomicU64::new(u64::MAX);
    let iface = iface.to_string();
    let unit = unit.to_string();
    let show = move |activity: String| {
        if let Some(e) = &events {
            let _ = e.send(crate::event::Event::Progress {
                unit: unit.clone(),
                activity,
            });
        }
    };
    std::sync::Arc::new(move |p: FlashProgress| match p {
        FlashProgress::Started { total } => {
            t.note(format!("flash {iface}: {total} bytes to write"));
        }
        FlashProgress::Written { done, total } => {
            let quarter = (done * 4).checked_div(total).unwrap_or(4);
            if quarter > noted.swap(quarter, Ordering::Relaxed) {
                t.note(format!("flash {iface}: {done} of {total} bytes written"));
            }
            let pct = (done * 100).checked_div(total).unwrap_or(100);
            if shown.swap(pct, Ordering::Relaxed) != pct {
                show(format!("flash {iface}: {pct}% ({done}/{total} bytes)"));
            }
        }
        FlashProgress::Verifying { total } => {
            t.note(format!("flash {iface}: verifying {total} bytes"));
            show(format!("flash {iface}: verifying {total} bytes"));
        }
        FlashProgress::Finished => show(format!("flash {iface}: done")),
    })
}

fn timeout_error(what: &str, waited: Duration) -> LinkError {
    LinkError::Timeout {
        pattern: format!("an answer to {what}"),
        waited,
        tail: String::new(),
    }
}

/// Where the debug-port lock test looks: the interface and the address it reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockTestTarget {
    pub interface: String,
    pub address: u64,
    /// Where the address comes from, for evidence ("declared", "the chip's flash", ...).
    pub origin: String,
}

impl Device {
    /// The debug port the lock test tries, and where it reads: the board's
    /// `lock_test_address`, else the start of the chip's flash (probe-rs knows the chip's
    /// memory map), else address 0 (on a Cortex-M the vector table, readable on any unit whose
    /// port is open). `None` when the board declares no debug port.
    pub fn lock_test_target(&self) -> Option<LockTestTarget> {
        let (name, iface) = self
            .model
            .interfaces
            .iter()
            .find(|(_, i)| i.is_debug_port())?;
        let policy = iface.debug_policy()?;
        let (address, origin) = match (policy.lock_test_address, iface) {
            (Some(a), _) => (a, "the board's lock_test_address".to_string()),
            (None, Interface::ProbeRs(p)) => match crate::board::flash_start(&p.chip) {
                Some(a) => (a, format!("the start of {}'s flash", p.chip)),
                None => (0, "address 0 (the vector table)".to_string()),
            },
            (None, _) => (0, "address 0 (the vector table)".to_string()),
        };
        Some(LockTestTarget {
            interface: name.clone(),
            address,
            origin,
        })
    }

    /// Attaches to debug port `on` (or uses the open link) and reads `len` bytes at
    /// `address`, never writing: the lock test's probe. The link's error says how it was
    /// refused ([`LinkError::Refused`]: the target said no) or why it could not try.
    pub async fn try_debug_read(
        &mut self,
        on: &str,
        address: u64,
        len: usize,
    ) -> Result<Vec<u8>, LinkError> {
        let timeout = self.iface_timeout(on);
        let at = super::steps::At::new("(debug port lock test)", "read");
        let dbg = match self.debug_link(&at, on, timeout).await {
            Ok(d) => d,
            Err(ActionError::Link { source, .. }) => return Err(source),
            Err(e) => return Err(LinkError::Protocol(e.to_string())),
        };
        let mut dbg = dbg.lock().await;
        let r = match tokio::time::timeout(outer(timeout), dbg.read_memory(address, len)).await {
            Ok(r) => r,
            Err(_) => Err(timeout_error("read_memory", timeout)),
        };
        drop(dbg);
        if matches!(r, Ok(_) | Err(LinkError::Refused(_))) {
            self.liveness = crate::test::Liveness::Answered;
        }
        r
    }
}
