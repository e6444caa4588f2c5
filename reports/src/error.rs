//! Errors from reading a report directory back.

use std::io;
use std::path::PathBuf;

/// Why a report directory could not be read back into a [`crate::RunReport`].
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A file could not be opened or read.
    #[error("{path}: {cause}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said (shown in this error's message, so not also its `source`).
        cause: io::Error,
    },
    /// A JSON file did not have the documented shape.
    #[error("{path}: {cause}")]
    Json {
        /// The file.
        path: PathBuf,
        /// What serde_json said (shown in this error's message, so not also its `source`).
        cause: serde_json::Error,
    },
    /// A CSV file had a malformed header or row.
    #[error("{path}:{line}: {message}")]
    Csv {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What was wrong.
        message: String,
    },
    /// A histogram in `histograms.json` could not be decoded.
    #[error("{path}: histogram {name}: {message}")]
    Histogram {
        /// The file.
        path: PathBuf,
        /// Which histogram.
        name: String,
        /// What was wrong.
        message: String,
    },
    /// The files disagree with each other or with this version of the format.
    #[error("{path}: {message}")]
    Inconsistent {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        message: String,
    },
}

impl From<ReportError> for io::Error {
    /// Keeps the OS error kind for I/O failures (so `NotFound` stays `NotFound`) and uses
    /// `InvalidData` for everything else; the message keeps the file name.
    fn from(e: ReportError) -> io::Error {
        let kind = match &e {
            ReportError::Io { cause, .. } => cause.kind(),
            _ => io::ErrorKind::InvalidData,
        };
        io::Error::new(kind, e)
    }
}
