//! Writes the reports of a synthetic run (the one the integration tests use) so that
//! they can be looked at:
//!
//! ```text
//! cargo run -p stampede-reports --example demo -- out/reports-demo
//! ```
//!
//! writes `run/` (every report file of the whole run), `empty/` (a report with nothing
//! in it) and `compare/` (the whole run against the half of the fleet with even node
//! numbers), and prints the terminal summary.

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::PathBuf;

fn main() -> std::io::Result<()> {
    let dir = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "out/reports-demo".to_string()),
    );
    let whole = common::whole();
    stampede_reports::write_report(&whole, &dir.join("run"))?;
    stampede_reports::write_report(&common::empty(), &dir.join("empty"))?;
    let half = common::build(&|n| n % 2 == 0, true);
    stampede_reports::write_comparison(
        &[
            ("whole fleet".to_string(), whole.clone()),
            ("even nodes".to_string(), half),
        ],
        &dir.join("compare"),
    )?;
    print!("{}", stampede_reports::summary_text(&whole));
    println!("wrote {}", dir.display());
    Ok(())
}
