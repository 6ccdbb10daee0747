//! Steps that reach below the unit's own interfaces: its emulator (warm reset, power cycle) and
//! its debug port (memory, registers, halt/resume/reset).
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
use crate::board::{parse_address, DebugOp, EmulatorOp};
use crate::iface::LinkError;
use crate::template::Template;

/// How long a warm reset may take to be acknowledged.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(10);

/// What a `read_memory` step asks for.
pub(super) struct MemoryRead<'s> {
    pub address: &'s Template,
    pub length: usize,
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
                self.links.clear();
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
        let bytes = tokio::time::timeout(timeout, dbg.read_memory(address, read.length))
            .await
            .map_err(|_| at.link(timeout_error("read_memory", timeout)))?
            .map_err(|e| at.link(e))?;
        let text = crate::iface::gdb::to_hex(&bytes);
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
        tokio::time::timeout(timeout, dbg.write_memory(address, &bytes))
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
        let r = match op {
            DebugOp::Halt => tokio::time::timeout(timeout, dbg.halt()).await,
            DebugOp::Resume => tokio::time::timeout(timeout, dbg.resume()).await,
            DebugOp::Reset => tokio::time::timeout(timeout, dbg.reset()).await,
        };
        r.map_err(|_| at.link(timeout_error("debug", timeout)))?
            .map_err(|e| at.link(e))
    }
}

fn timeout_error(what: &str, waited: Duration) -> LinkError {
    LinkError::Timeout {
        pattern: format!("an answer to {what}"),
        waited,
        tail: String::new(),
    }
}
