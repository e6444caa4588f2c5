//! The broker's core (`src/core/`) and wire format (`src/proto/`) are sans-IO: time enters
//! as `now_ms` arguments, and they never read a clock, spawn, touch a socket or a file, or
//! draw random numbers. clippy.toml refuses wall clocks, threads and unseeded RNGs in the
//! whole workspace, but it cannot refuse tokio's clock or tokio itself in one module only;
//! this test reads the sources of both directories and fails on any such use.

use std::fs;
use std::path::{Path, PathBuf};

/// Names that have no business in sans-IO code, with the reason shown on failure.
const FORBIDDEN: [(&str, &str); 11] = [
    (
        "tokio",
        "the core runs without a runtime; the shell in src/server/ drives it",
    ),
    ("turmoil", "only sim/ links turmoil"),
    ("Instant", "time enters as `now_ms` arguments"),
    ("SystemTime", "time enters as `now_ms` arguments"),
    ("std::thread", "the core never spawns"),
    ("spawn", "the core never spawns"),
    ("std::net", "only net::Net reaches the network"),
    ("std::fs", "the core reads no files"),
    ("std::env", "configuration comes in as CoreConfig"),
    ("std::process", "the core never exits or starts processes"),
    ("rand::", "randomness does not enter the core"),
];

/// Every `.rs` file under `dir`, recursively, in name order.
fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut entries: Vec<_> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            out.extend(sources(&path));
        } else if path.extension().is_some_and(|x| x == "rs") {
            out.push(path);
        }
    }
    out
}

/// The uses of forbidden names in code (comments are skipped) of `src/core` and
/// `src/proto`, as `file:line: name (reason)`.
fn violations() -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut found = Vec::new();
    for dir in ["core", "proto"] {
        for file in sources(&root.join(dir)) {
            let text = fs::read_to_string(&file).expect("readable source");
            for (i, line) in text.lines().enumerate() {
                let code = line.split("//").next().unwrap_or("");
                for (name, why) in FORBIDDEN {
                    if code.contains(name) {
                        found.push(format!("{}:{}: {name} ({why})", file.display(), i + 1));
                    }
                }
            }
        }
    }
    found
}

#[test]
fn core_and_proto_use_no_clock_runtime_socket_or_randomness() {
    let found = violations();
    assert!(found.is_empty(), "sans-IO code uses:\n{}", found.join("\n"));
}

#[test]
fn the_check_reads_both_directories() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let core = sources(&root.join("core"));
    let proto = sources(&root.join("proto"));
    assert!(core.iter().any(|p| p.ends_with("core/mod.rs")), "{core:?}");
    assert!(
        proto.iter().any(|p| p.ends_with("proto/codec.rs")),
        "{proto:?}"
    );
}
