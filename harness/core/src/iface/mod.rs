//! Interfaces: how the harness talks to a unit. Each kind opens a connection from a resolved
//! board interface and records every byte into the test's transcript; none knows about suites
//! or actions.
//!
//! What every kind shares lives here rather than in one of them: [`LinkError`], how any link
//! fails, which `Device` maps to liveness. Every descriptor a link opens is close-on-exec (the
//! standard library, tokio and serialport all open so), so no device process inherits another
//! unit's tty.

use std::time::Duration;

pub mod debug;
pub mod flash;
pub mod gdb;
pub mod http;
pub mod labgrid;
pub mod modbus;
pub mod mqtt;
pub mod mqtt_probe;
pub mod power;
pub mod probe;
pub mod rtt;
pub mod scan;
pub mod serial;
pub mod ssh;
pub mod telnet;

/// Why talking to a unit over one of its links failed. Shared by every interface kind (also
/// re-exported as `iface::serial::LinkError`, its former home).
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("cannot open {endpoint}: {detail}")]
    Open { endpoint: String, detail: String },
    #[error("the link closed: {0}")]
    Closed(String),
    #[error("no match for /{pattern}/ within {waited:?}; last bytes received: \"{tail}\"")]
    Timeout {
        pattern: String,
        waited: Duration,
        tail: String,
    },
    #[error("write failed: {0}")]
    Write(String),
    /// The device answered, but not in the protocol's terms (e.g. a Modbus exception).
    #[error("{0}")]
    Protocol(String),
    /// The target answered and refused the access: a debug port locked by readout protection
    /// (STM32 RDP, nRF APPROTECT, a locked DAP), or a memory region the port may not read.
    /// Not a closed link: the device said no.
    #[error("the target refused: {0}")]
    Refused(String),
}
