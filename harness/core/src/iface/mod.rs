//! Interfaces: how the harness talks to a unit. Each kind opens a connection from a resolved
//! board interface and records every byte into the test's transcript; none knows about suites
//! or actions.
//!
//! What every kind shares lives here rather than in one of them: [`LinkError`] (how any link
//! fails, which `Device` maps to liveness), [`set_cloexec`] and the spawn lock, defined in
//! [`crate::emulator`] and re-exported here (descriptors are opened close-on-exec under the
//! same lock emulators are spawned with, so no device process inherits another unit's tty).

use std::time::Duration;

pub mod http;
pub mod modbus;
pub mod mqtt;
pub mod serial;

/// The lock held while spawning emulators and while opening (and marking close-on-exec) the
/// descriptors of ttys. Defined in [`crate::emulator`]; re-exported here so interfaces name it
/// from their own module.
pub(crate) use crate::emulator::SPAWN_LOCK;

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
}

/// Marks a descriptor close-on-exec. (The serial crates hand out raw descriptors only.)
pub(crate) fn set_cloexec(fd: &impl std::os::fd::AsRawFd) -> std::io::Result<()> {
    use rustix::io::{fcntl_getfd, fcntl_setfd, FdFlags};
    // SAFETY: `fd` is borrowed from a live owner for the duration of this call.
    let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd.as_raw_fd()) };
    let flags = fcntl_getfd(fd)?;
    fcntl_setfd(fd, flags | FdFlags::CLOEXEC)?;
    Ok(())
}
