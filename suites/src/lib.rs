//! hilsec-suites: the conformance suites. Each test is generic: it asks a unit to perform named
//! actions and reads the manufacturer's declarations, never a device's own commands, so any
//! device described by a board file can be assessed.

pub mod debug;
pub mod disclosure;
pub mod password;
pub mod update;

use hilsec_core::test::Suite;

/// Every suite, in the order `hilsec run` runs them.
pub fn all() -> Vec<Suite> {
    vec![
        password::suite(),
        update::suite(),
        disclosure::suite(),
        debug::suite(),
    ]
}

/// Names of all suites (for `--suite` and error messages).
pub fn names() -> Vec<&'static str> {
    all().iter().map(|s| s.name).collect()
}
