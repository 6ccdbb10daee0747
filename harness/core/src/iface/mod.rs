//! Interfaces: how the harness talks to a unit (serial today; MQTT, Modbus, HTTP, debug next).
//! Each kind opens a connection from a resolved board interface and records every byte into the
//! test's transcript; none knows about suites or actions.

pub mod serial;
