//! Debug access to a unit's processor: halt, resume, memory, registers, reset.
//!
//! This module exists so that suites and recipes read a unit's memory without knowing what
//! stands between the harness and the core. [`DebugAccess`] is the one trait for that: the GDB
//! remote serial protocol client ([`crate::iface::gdb::GdbLink`], for QEMU, Renode, OpenOCD or
//! any `gdbserver`) is one implementation, a probe-rs backend would be another; callers hold a
//! `Box<dyn DebugAccess>` and never learn which.
//!
//! What every implementation promises:
//! - **The caller's run state is kept.** A memory or register access on a running target may
//!   need the core halted (a GDB stub answers nothing else while it runs): the implementation
//!   then halts, accesses and resumes, so a read disturbs a running firmware only for as long
//!   as the access takes. A target the caller halted stays halted.
//! - **Accesses are bounded**: at most [`MAX_ACCESS`] bytes per call, checked before anything
//!   is sent ([`check_access`]).
//! - **Every access is evidence**: one readable note per access in the transcript, in the
//!   forms `debug <iface>: read N bytes at 0xADDR: <hex>` ([`hex_preview`], at most
//!   [`SHOWN_BYTES`] shown), `debug <iface>: wrote N bytes at 0xADDR: <hex>`,
//!   `debug <iface>: halted (...)`, `debug <iface>: resumed`, `debug <iface>: reset (...)`,
//!   and a note for each failure.
//! - Failures are typed [`LinkError`]s: `Protocol` when the target refused (e.g. an address
//!   it cannot read, or reset not supported), `Timeout` when it did not answer in time,
//!   `Closed` when the connection is gone.

use std::fmt::Write as _;

use crate::iface::LinkError;
use crate::transcript::Transcript;

/// Most bytes one `read_memory` or `write_memory` call may move.
pub const MAX_ACCESS: usize = 64 * 1024;

/// Most bytes of an access shown as hex in its transcript note.
pub const SHOWN_BYTES: usize = 256;

/// One register as the debug port names it (`r0`…`r12`, `sp`, `lr`, `pc`, `xpsr` on a Cortex-M;
/// `reg<N>` when the register layout is not known).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Register {
    pub name: String,
    pub value: u64,
}

/// The value of the register called `name` (exact name), if the list has it.
pub fn register(registers: &[Register], name: &str) -> Option<u64> {
    registers.iter().find(|r| r.name == name).map(|r| r.value)
}

/// Debug access, whatever the probe or stub behind it. See the module documentation for what
/// every implementation promises.
#[async_trait::async_trait]
pub trait DebugAccess: Send {
    /// Stops the core. Halting a halted core is not an error.
    async fn halt(&mut self) -> Result<(), LinkError>;
    /// Lets the core run. Resuming a running core is not an error.
    async fn resume(&mut self) -> Result<(), LinkError>;
    /// Reads `len` bytes (at most [`MAX_ACCESS`]) from `address`; on a running core: halt,
    /// read, resume.
    async fn read_memory(&mut self, address: u64, len: usize) -> Result<Vec<u8>, LinkError>;
    /// Writes `data` (at most [`MAX_ACCESS`] bytes) at `address`; on a running core: halt,
    /// write, resume.
    async fn write_memory(&mut self, address: u64, data: &[u8]) -> Result<(), LinkError>;
    /// The core registers, name and value; on a running core a snapshot taken while halted
    /// for the read.
    async fn read_registers(&mut self) -> Result<Vec<Register>, LinkError>;
    /// Resets the target and restores the run state the caller had set.
    /// `LinkError::Protocol("... does not support reset ...")` when the port cannot.
    async fn reset(&mut self) -> Result<(), LinkError>;
    /// Resets the target and keeps the core halted at its reset vector (before any firmware
    /// instruction runs). By default a reset followed by a halt, which lets a few instructions
    /// run; ports that can catch the reset vector override it.
    async fn reset_halt(&mut self) -> Result<(), LinkError> {
        self.reset().await?;
        self.halt().await
    }
    /// Writes a firmware image into the unit's memory (flash included) and, when asked,
    /// verifies it by reading it back. Probes with a flash algorithm use it; a GDB stub loads
    /// through memory writes ([`crate::iface::flash::load_via_memory`]). The run state
    /// afterwards is the implementation's (callers reset the target next).
    async fn flash(
        &mut self,
        req: &crate::iface::flash::FlashRequest,
        progress: &crate::iface::flash::ProgressSink,
    ) -> Result<crate::iface::flash::FlashReport, LinkError>;
    /// Detaches so the target keeps running without the harness, then closes the link.
    /// Implementations also detach, best effort, when dropped; this waits for the answer.
    async fn close(&mut self) -> Result<(), LinkError> {
        Ok(())
    }
    /// Whether the link is unusable (the peer closed it, or it is out of step after a
    /// timeout or an interrupted exchange); open a new one.
    fn is_closed(&self) -> bool;
    /// The transcript further accesses are noted in (a new one per test).
    fn set_transcript(&mut self, t: Transcript);
    /// While quiet, successful accesses are not noted (nor their packets recorded): a console
    /// that polls memory many times a second (RTT) would bury the evidence. Failures are
    /// still noted. Off by default.
    fn set_quiet(&mut self, quiet: bool);
}

/// For an access note: how long a running core was halted for the access that started at
/// `started` (nothing when the core was halted already).
pub fn halted_for(was_running: bool, started: std::time::Instant) -> String {
    if was_running {
        format!(
            " (halted {:.1} ms for the access)",
            started.elapsed().as_secs_f64() * 1e3
        )
    } else {
        String::new()
    }
}

/// Checks an access of `len` bytes at `address` before anything is sent: at most
/// [`MAX_ACCESS`] bytes, and not past the end of the 64-bit address space.
pub fn check_access(what: &str, address: u64, len: usize) -> Result<(), LinkError> {
    if len > MAX_ACCESS {
        return Err(LinkError::Protocol(format!(
            "{what} of {len} bytes at {address:#010x} refused: at most {MAX_ACCESS} bytes per access"
        )));
    }
    // usize fits u64 on every target the harness builds for.
    let span = u64::try_from(len).unwrap_or(u64::MAX);
    if span > 0 && address.checked_add(span - 1).is_none() {
        return Err(LinkError::Protocol(format!(
            "{what} of {len} bytes at {address:#010x} refused: runs past the end of the address space"
        )));
    }
    Ok(())
}

/// Bytes as hex for a transcript note: groups of 4 bytes separated by spaces, at most
/// [`SHOWN_BYTES`] bytes, then `… (N more bytes)`.
pub fn hex_preview(bytes: &[u8]) -> String {
    let shown = &bytes[..bytes.len().min(SHOWN_BYTES)];
    let mut out = String::with_capacity(shown.len() * 2 + shown.len() / 4 + 24);
    for (i, b) in shown.iter().enumerate() {
        if i > 0 && i % 4 == 0 {
            out.push(' ');
        }
        let _ = write!(out, "{b:02x}");
    }
    if bytes.len() > shown.len() {
        let _ = write!(out, " … ({} more bytes)", bytes.len() - shown.len());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preview_groups_and_caps() {
        assert_eq!(hex_preview(&[]), "");
        assert_eq!(
            hex_preview(&[0x3d, 0xb8, 0xf3, 0x96, 1]),
            "3db8f396 01".to_string()
        );
        let long = vec![0xaa; SHOWN_BYTES + 10];
        let p = hex_preview(&long);
        assert!(p.ends_with(" … (10 more bytes)"), "{p}");
        assert_eq!(p.matches("aa").count(), SHOWN_BYTES);
    }

    #[test]
    fn access_bounds() {
        assert!(check_access("read", 0x2000_0000, MAX_ACCESS).is_ok());
        assert!(check_access("read", u64::MAX, 1).is_ok());
        assert!(check_access("read", u64::MAX, 0).is_ok());
        let e = check_access("read", 0, MAX_ACCESS + 1).unwrap_err();
        assert!(e.to_string().contains("at most 65536 bytes"), "{e}");
        let e = check_access("write", u64::MAX, 2).unwrap_err();
        assert!(e.to_string().contains("past the end"), "{e}");
    }

    #[test]
    fn register_lookup() {
        let regs = vec![Register {
            name: "pc".into(),
            value: 0x0800_0008,
        }];
        assert_eq!(register(&regs, "pc"), Some(0x0800_0008));
        assert_eq!(register(&regs, "sp"), None);
    }
}
