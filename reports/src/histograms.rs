//! `histograms.json`: every histogram of a report, lossless, so that shards can be merged
//! exactly.
//!
//! Each histogram is HdrHistogram's V2 compressed encoding (the `HISTFAAA…` strings of
//! HdrHistogram interval logs, which HdrHistogram's Java, C and Rust decoders read),
//! in standard base64:
//!
//! ```json
//! {
//!   "encoding": "hdrhistogram-v2-deflate-base64",
//!   "latency_us": "HISTFAAA…",
//!   "send_delay_us": "HISTFAAA…",
//!   "failover_ms": "HISTFAAA…",
//!   "seconds": [ { "t_s": 0, "latency_us": "HISTFAAA…" }, … ]
//! }
//! ```
//!
//! `seconds` has one entry per `timeseries.csv` row, in the same order.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer as _, V2DeflateSerializer};
use serde::{Deserialize, Serialize};

use crate::csv::seconds_in_order;
use crate::model::RunReport;

/// The value of the `encoding` field.
pub const ENCODING: &str = "hdrhistogram-v2-deflate-base64";

/// The shape of `histograms.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct HistogramsFile {
    pub(crate) encoding: String,
    pub(crate) latency_us: String,
    pub(crate) send_delay_us: String,
    pub(crate) failover_ms: String,
    pub(crate) seconds: Vec<SecondHistogram>,
}

/// One second's latency histogram.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SecondHistogram {
    pub(crate) t_s: u64,
    pub(crate) latency_us: String,
}

/// Encodes `h` as base64 of its V2 compressed serialization.
pub fn encode(h: &Histogram<u64>) -> String {
    let mut bytes = Vec::new();
    // Invariant: serializing into a Vec cannot hit an I/O error, and the V2 encoding
    // handles every u64-counter histogram, so this cannot fail.
    V2DeflateSerializer::new()
        .serialize(h, &mut bytes)
        .expect("serializing a histogram into memory cannot fail");
    STANDARD.encode(bytes)
}

/// Decodes what [`encode`] produced (or any V2 histogram, compressed or not, in base64).
pub fn decode(text: &str) -> Result<Histogram<u64>, String> {
    let bytes = STANDARD
        .decode(text.trim())
        .map_err(|e| format!("base64: {e}"))?;
    Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .map_err(|e| format!("hdrhistogram: {e:?}"))
}

/// The `histograms.json` content for `report`.
pub(crate) fn file_for(report: &RunReport) -> HistogramsFile {
    HistogramsFile {
        encoding: ENCODING.to_string(),
        latency_us: encode(&report.latency_us),
        send_delay_us: encode(&report.send_delay_us),
        failover_ms: encode(&report.failover_ms),
        seconds: seconds_in_order(report)
            .into_iter()
            .map(|s| SecondHistogram {
                t_s: s.t_s,
                latency_us: encode(&s.latency),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::latency_histogram;

    #[test]
    fn round_trip_is_exact() {
        let mut h = latency_histogram();
        for v in [0u64, 1, 7, 999, 1_000, 123_456, 3_599_999_999] {
            h.record_n(v, v % 7 + 1).unwrap();
        }
        let text = encode(&h);
        assert!(text.starts_with("HISTFAAA"), "{text}");
        let back = decode(&text).unwrap();
        assert_eq!(back, h);
        assert_eq!(back.len(), h.len());
        assert_eq!(back.max(), h.max());
        assert_eq!(back.high(), h.high());
    }

    #[test]
    fn empty_histogram_round_trips() {
        let h = latency_histogram();
        assert_eq!(decode(&encode(&h)).unwrap(), h);
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(decode("not base64!").is_err());
        assert!(decode("AAAA").is_err());
    }
}
