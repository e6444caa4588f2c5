//! Every `tokio::select!` in the workspace's sources is `biased;`: branches are polled in
//! the order written, so a simulation never depends on tokio's random branch choice (and
//! readers can see which branch wins a tie). This test reads the `src/` of every crate of
//! the workspace and fails on a `select!` whose first token is not `biased;`.

use std::fs;
use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`, recursively, in name order.
fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(read) = fs::read_dir(dir) else {
        return out;
    };
    let mut entries: Vec<PathBuf> = read.map(|e| e.expect("directory entry").path()).collect();
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

/// The `select!` invocations of `text` whose body does not start with `biased;`, as
/// 1-based line numbers.
fn unbiased(text: &str) -> Vec<usize> {
    let mut found = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let code = line.split("//").next().unwrap_or("");
        let Some(at) = code.find("select!") else {
            continue;
        };
        // The body starts after the opening brace, on this line or the next ones.
        let from_here = text.lines().skip(i).collect::<Vec<_>>().join("\n");
        let rest = &from_here[at + "select!".len()..];
        let body = rest.trim_start().strip_prefix(['{', '(']).unwrap_or("");
        if !body.trim_start().starts_with("biased;") {
            found.push(i + 1);
        }
    }
    found
}

#[test]
fn every_select_in_the_workspace_is_biased() {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the broker crate sits in the workspace");
    let mut files = Vec::new();
    for krate in ["broker", "sim", "reports", "benches"] {
        files.extend(sources(&workspace.join(krate).join("src")));
    }
    assert!(
        files.iter().any(|p| p.ends_with("server/mod.rs")),
        "the broker's sources were read: {files:?}"
    );
    let mut bad = Vec::new();
    for file in &files {
        let text = fs::read_to_string(file).expect("readable source");
        for line in unbiased(&text) {
            bad.push(format!("{}:{line}", file.display()));
        }
    }
    assert!(
        bad.is_empty(),
        "select! without `biased;` at:\n{}",
        bad.join("\n")
    );
}

#[test]
fn the_check_tells_biased_from_unbiased() {
    let ok = "tokio::select! {\n    biased;\n    () = a => {}\n}\n";
    let not_ok = "x();\ntokio::select! {\n    () = a => {}\n    () = b => {}\n}\n";
    assert_eq!(unbiased(ok), Vec::<usize>::new());
    assert_eq!(unbiased(not_ok), vec![2]);
    assert_eq!(
        unbiased("// tokio::select! in a comment\n"),
        Vec::<usize>::new()
    );
}
