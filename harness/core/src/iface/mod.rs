//! Interfaces: how the harness talks to a unit. Each kind opens a connection from a resolved
//! board interface and records every byte into the test's transcript; none knows about suites
//! or actions.

pub mod http;
pub mod modbus;
pub mod mqtt;
pub mod serial;
