//! Helpers shared by hilsec-core's integration tests.

pub mod qemu;
pub mod simdev;
