//! The tokio shell around the core.
