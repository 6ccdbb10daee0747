//! hilsec-core: the harness's engine.
//!
//! - [`board`]: board files (what hardware exists), validated with file:line:col errors;
//! - [`iface`]: interfaces (how to talk to a unit), each recording a transcript;
//! - [`device`]: actions (what a suite may ask a unit), run from board-file recipes;
//! - [`emulator`]: starting emulated units;
//! - [`test`], [`runner`], [`event`]: tests, their scheduling, and the events reporters consume.

pub mod board;
pub mod broker;
pub mod device;
pub mod emulator;
pub mod event;
pub mod iface;
pub mod lease;
pub mod results;
pub mod runner;
pub mod secret;
pub mod template;
pub mod test;
pub mod transcript;

pub use tokio_util::sync::CancellationToken;
