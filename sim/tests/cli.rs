//! The `stampede` command line as a shell pipeline sees it.

use std::process::{Command, Stdio};

/// `stampede run … | head -1`: the reader closes the pipe after the first line. The
/// command must not panic on the closed pipe, and must still exit with its verdict.
#[test]
fn a_closed_stdout_pipe_is_no_panic_and_keeps_the_exit_status() {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = tempdir();
    for (extra, status) in [
        (None, 0),
        (Some("expectations.mco_fault_reply_ratio_max=0.4"), 2),
    ] {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_stampede"));
        cmd.current_dir(&repo)
            .args([
                "run",
                "scenarios/mcollective-clock-skew.toml",
                "--quiet",
                "--out",
            ])
            .arg(out.join(status.to_string()))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(set) = extra {
            cmd.args(["--set", set]);
        }
        let mut child = cmd.spawn().expect("stampede starts");
        // The reader goes away before the first line is written.
        drop(child.stdout.take());
        let output = child.wait_with_output().expect("stampede ends");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert_eq!(output.status.code(), Some(status), "{stderr}");
    }
}

/// A fresh directory under the target directory for this test's reports.
fn tempdir() -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("cli-closed-pipe");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    dir
}
