//! Percentiles read off a histogram, and the number formats every output shares.

use hdrhistogram::Histogram;

/// The fixed set of statistics every output reports for a histogram.
///
/// Percentiles are HdrHistogram's `value_at_quantile`: the highest value equivalent (at 3
/// significant digits) to the recorded value at that rank. All fields are 0 for an empty
/// histogram.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct HistogramStats {
    /// Recorded values.
    pub count: u64,
    /// Smallest recorded value.
    pub min: u64,
    /// Mean, rounded to 3 decimals so that it prints the same everywhere.
    pub mean: f64,
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// 99.99th percentile.
    pub p9999: u64,
    /// Largest recorded value.
    pub max: u64,
}

impl HistogramStats {
    /// Reads the statistics off `h`.
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return HistogramStats::default();
        }
        HistogramStats {
            count: h.len(),
            min: h.min(),
            mean: round3(h.mean()),
            p50: h.value_at_quantile(0.5),
            p90: h.value_at_quantile(0.9),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            p9999: h.value_at_quantile(0.9999),
            max: h.max(),
        }
    }
}

/// Rounds to 3 decimals; non-finite values become 0.
pub(crate) fn round3(x: f64) -> f64 {
    if x.is_finite() {
        (x * 1000.0).round() / 1000.0
    } else {
        0.0
    }
}

/// A duration given in µs, in the unit that keeps 3 significant digits readable:
/// `850 µs`, `1.23 ms`, `45.6 ms`, `1.40 s`.
pub fn fmt_us(us: u64) -> String {
    if us < 1_000 {
        format!("{us} µs")
    } else if us < 1_000_000 {
        fmt_scaled(us as f64 / 1_000.0, "ms")
    } else {
        fmt_scaled(us as f64 / 1_000_000.0, "s")
    }
}

/// A duration given in ms: `850 ms`, `1.40 s`, `12.3 s`.
pub fn fmt_ms(ms: u64) -> String {
    if ms < 1_000 {
        format!("{ms} ms")
    } else {
        fmt_scaled(ms as f64 / 1_000.0, "s")
    }
}

/// Three significant digits for values from 1 to 999.
fn fmt_scaled(v: f64, unit: &str) -> String {
    if v < 10.0 {
        format!("{v:.2} {unit}")
    } else if v < 100.0 {
        format!("{v:.1} {unit}")
    } else {
        format!("{v:.0} {unit}")
    }
}

/// Seconds with one decimal, `-` when not finite.
pub(crate) fn fmt_seconds(s: f64) -> String {
    if s.is_finite() {
        format!("{s:.1} s")
    } else {
        "-".to_string()
    }
}

/// A milliseconds timestamp as seconds with 3 decimals: `12.345 s`.
pub(crate) fn fmt_at_ms(ms: u64) -> String {
    format!("{}.{:03} s", ms / 1000, ms % 1000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::latency_histogram;

    #[test]
    fn percentiles_of_uniform_1_to_1000() {
        let mut h = latency_histogram();
        for v in 1..=1000 {
            h.record(v).unwrap();
        }
        let s = HistogramStats::of(&h);
        assert_eq!(s.count, 1000);
        assert_eq!(s.min, 1);
        assert_eq!(s.p50, 500);
        assert_eq!(s.p90, 900);
        assert_eq!(s.p99, 990);
        assert_eq!(s.p999, 999);
        assert_eq!(s.max, 1000);
        assert_eq!(s.mean, 500.5);
    }

    #[test]
    fn percentiles_keep_three_significant_digits() {
        let mut h = latency_histogram();
        h.record_n(100, 99).unwrap();
        h.record(1_234_567).unwrap();
        let s = HistogramStats::of(&h);
        assert_eq!(s.p50, 100);
        assert_eq!(s.p99, 100);
        // 1,234,567 is stored in a bucket 1,024 wide: within 0.1 %.
        assert!(s.p999.abs_diff(1_234_567) * 1000 <= 1_234_567, "{}", s.p999);
        assert_eq!(s.max, s.p999);
    }

    #[test]
    fn empty_histogram_is_all_zero() {
        assert_eq!(
            HistogramStats::of(&latency_histogram()),
            HistogramStats::default()
        );
    }

    #[test]
    fn duration_formats() {
        assert_eq!(fmt_us(850), "850 µs");
        assert_eq!(fmt_us(1_234), "1.23 ms");
        assert_eq!(fmt_us(45_600), "45.6 ms");
        assert_eq!(fmt_us(456_000), "456 ms");
        assert_eq!(fmt_us(1_400_000), "1.40 s");
        assert_eq!(fmt_ms(999), "999 ms");
        assert_eq!(fmt_ms(12_345), "12.3 s");
        assert_eq!(fmt_at_ms(12_045), "12.045 s");
        assert_eq!(fmt_seconds(f64::NAN), "-");
    }
}
