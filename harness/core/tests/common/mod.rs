//! Helpers shared by hilsec-core's integration tests.

pub mod qemu;
