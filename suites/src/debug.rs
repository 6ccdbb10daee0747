//! Debug interfaces (EN 303 645 5.6-4; TS 103 701 5.6-4-1): a debug interface that is
//! physically accessible is disabled in software on production units.
//!
//! The one test here attaches to the debug port the board declares (a probe-rs probe over
//! SWD/JTAG, or a GDB stub in front of an emulated unit) and tries to read a few bytes where an
//! open port lets anyone read (the board's `lock_test_address`, else the chip's flash, else the
//! vector table at 0). It only reads: it never writes, erases or unlocks a unit (the probe
//! backend attaches without the permission to erase). What decides the verdict is the target's
//! own answer: bytes read are a `fail` (the bytes are the evidence), an access the target
//! refused (readout protection, APPROTECT, a locked DAP) is a `pass`. A probe that cannot reach
//! the target's port at all proves nothing either way: a permanently disabled port (RDP level
//! 2, a blown JTAG fuse) and a loose wire look the same, so that is `inconclusive`, saying how
//! to tell them apart; so is an access port that faults while attaching (protection on some
//! chips, a sleeping core on others). No probe, or no GDB server, is the bench's problem:
//! `error`. A refusal only counts where an unlocked unit answers: a `gdb` port must declare
//! `lock_test_address`, a probe-rs port's must be in the chip's memory map (`check-board`).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use hilsec_core::board::Model;
use hilsec_core::device::Device;
use hilsec_core::iface::debug::hex_preview;
use hilsec_core::iface::LinkError;
use hilsec_core::test::{Outcome, Scope, Suite, Test, TestInfo};

const SUITE: &str = "debug";

/// Bytes the lock test reads.
const PROBE_BYTES: usize = 16;

pub fn suite() -> Suite {
    Suite {
        name: SUITE,
        description:
            "the debug port of a production unit refuses access (readout protection, a locked DAP)",
        tests: vec![Arc::new(PortLocked)],
    }
}

static PORT_LOCKED: TestInfo = TestInfo {
    id: "debug.port-locked",
    suite: SUITE,
    title: "the debug port refuses memory access on production firmware",
    provisions: &["EN 303 645 5.6-4", "TS 103 701 5.6-4-1"],
    scope: Scope::Unit,
    timeout: Duration::from_secs(120),
    actions: &[],
};

/// `debug.port-locked`.
struct PortLocked;

/// Why the lock test does not apply to `model`, if it does not.
fn not_applicable(model: &Model) -> Option<String> {
    if !model.interfaces.values().any(|i| i.is_debug_port()) {
        return Some(
            "the board declares no debug interface (an interface of kind \"probe-rs\" or \"gdb\")"
                .into(),
        );
    }
    if model.declarations.production_firmware != Some(true) {
        return Some(
            "the board does not declare production firmware (`production_firmware = true` under \
             [declarations]); a development build may leave its debug port open"
                .into(),
        );
    }
    None
}

#[async_trait]
impl Test for PortLocked {
    fn info(&self) -> &TestInfo {
        &PORT_LOCKED
    }

    fn not_applicable(&self, model: &Model) -> Option<String> {
        not_applicable(model)
    }

    async fn run_unit(&self, dev: &mut Device) -> Outcome {
        let Some(target) = dev.lock_test_target() else {
            return Outcome::not_applicable("the board declares no debug interface");
        };
        let (iface, address) = (target.interface.clone(), target.address);
        dev.note(format!(
            "trying to read {PROBE_BYTES} bytes at {address:#010x} ({}) through debug port {iface}; nothing is written",
            target.origin
        ));
        let data = serde_json::json!({
            "interface": iface,
            "address": format!("{address:#010x}"),
            "address_origin": target.origin,
        });
        match dev.try_debug_read(&iface, address, PROBE_BYTES).await {
            Ok(bytes) => {
                let mut data = data;
                data["bytes"] = serde_json::Value::String(hilsec_core::iface::gdb::to_hex(&bytes));
                Outcome::fail(format!(
                    "the debug port {iface} of production firmware is open: read {} bytes at {address:#010x}: {}",
                    bytes.len(),
                    hex_preview(&bytes)
                ))
                .with_data(data)
            }
            Err(LinkError::Refused(why)) => Outcome::pass(format!(
                "the debug port {iface} refused access to {address:#010x}: {why}"
            ))
            .with_data(data),
            Err(LinkError::Open { detail, .. })
                if detail.starts_with(hilsec_core::iface::probe::TARGET_SILENT)
                    || detail.starts_with(hilsec_core::iface::probe::ATTACH_FAULT) =>
            {
                Outcome::inconclusive(format!(
                "could not attach to the debug port {iface}: {detail}. A port disabled for good \
                 (e.g. STM32 RDP level 2, a blown JTAG fuse) and a wiring or probe fault look \
                 the same here: check the wiring with a development unit of the same model"
                ))
                .with_data(data)
            }
            Err(LinkError::Open { detail, .. }) => Outcome::error(format!(
                "could not open the debug port {iface}: {detail}"
            ))
            .with_data(data),
            Err(LinkError::Protocol(m)) => Outcome::inconclusive(format!(
                "the debug port {iface} answered, but neither with the bytes nor with a refusal: {m}"
            ))
            .with_data(data),
            Err(e) => Outcome::error(format!(
                "the debug port {iface} could not be tried: {e}"
            ))
            .with_data(data),
        }
    }
}
