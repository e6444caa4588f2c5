//! Helpers shared by the integration tests that run real processes (each test uses part
//! of them).
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// The repository's root.
pub(crate) fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `stampede-broker` from the same build as the running test (cargo builds every binary
/// of the workspace before `cargo test --workspace` runs the tests).
pub(crate) fn broker_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("the test knows its own path");
    // target/<profile>/deps/<test>-<hash> -> target/<profile>/stampede-broker
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("stampede-broker"))
        .expect("the test binary lives in target/<profile>/deps");
    assert!(
        bin.is_file(),
        "no stampede-broker next to the tests at {}: run the workspace's tests \
         (`cargo test --workspace`, as scripts/test does) or `cargo build -p stampede-broker` first",
        bin.display()
    );
    bin
}
