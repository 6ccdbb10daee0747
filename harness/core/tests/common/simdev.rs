//! The simulated device binary, for tests that start units of their own.

#![allow(dead_code)]

use std::path::PathBuf;

/// `hilsec-simdev`: `$HILSEC_SIMDEV`, else next to this test's directory (target/<profile>/).
pub fn simdev_exe() -> PathBuf {
    if let Some(p) = std::env::var_os("HILSEC_SIMDEV") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("test executable");
    let candidates: Vec<PathBuf> = exe
        .ancestors()
        .skip(1)
        .take(2)
        .map(|d| d.join("hilsec-simdev"))
        .collect();
    candidates
        .iter()
        .find(|c| c.is_file())
        .cloned()
        .unwrap_or_else(|| {
            panic!(
                "hilsec-simdev is missing (looked at {candidates:?}): run `cargo build --workspace` \
                 (ci/test does) before these tests, or set HILSEC_SIMDEV"
            )
        })
}
