//! `*.hgrm`: HdrHistogram's percentile-distribution text.
//!
//! The layout is the one HdrHistogram's `outputPercentileDistribution` prints and its
//! plotting page reads: a header line, a blank line, one line per percentile step
//! (value, percentile as a fraction, cumulative count, `1/(1-percentile)`), the line for
//! 100 % without the last column, and three `#[...]` footer lines with mean, standard
//! deviation, max, total count, bucket and sub-bucket counts.
//!
//! Values are written in the histogram's own unit (µs for `latency_us.hgrm`, ms for
//! `failover_ms.hgrm`), that is with an output scaling ratio of 1, with as many decimals
//! as the histogram has significant digits. Percentile steps use 5 ticks per
//! half-distance to 100 %, as HdrHistogram does by default.

use std::fmt::Write as _;

use hdrhistogram::Histogram;

/// Ticks per half-distance to 100 % for the percentile steps.
pub const TICKS_PER_HALF_DISTANCE: u32 = 5;

/// The percentile distribution of `h` as `.hgrm` text.
pub fn percentile_distribution(h: &Histogram<u64>) -> String {
    let digits = usize::from(h.sigfig());
    let mut out = String::new();
    // Writing to a String cannot fail, so the `fmt::Result`s below are ignored.
    let _ = write!(
        out,
        "{:>12} {:>14} {:>10} {:>14}\n\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    if !h.is_empty() {
        let mut total = 0u64;
        for step in h.iter_quantiles(TICKS_PER_HALF_DISTANCE) {
            total = total.saturating_add(step.count_since_last_iteration());
            let value = step.value_iterated_to() as f64;
            let q = step.quantile_iterated_to();
            if q < 1.0 {
                let _ = writeln!(
                    out,
                    "{value:12.digits$} {q:2.12} {total:10} {:14.2}",
                    1.0 / (1.0 - q)
                );
            } else {
                let _ = writeln!(out, "{value:12.digits$} {q:2.12} {total:10}");
            }
        }
    }
    let (mean, stdev, max) = if h.is_empty() {
        (0.0, 0.0, 0.0)
    } else {
        (h.mean(), h.stdev(), h.max() as f64)
    };
    let _ = writeln!(
        out,
        "#[Mean    = {mean:12.digits$}, StdDeviation   = {stdev:12.digits$}]"
    );
    let _ = writeln!(
        out,
        "#[Max     = {max:12.digits$}, Total count    = {:12}]",
        h.len()
    );
    let _ = writeln!(
        out,
        "#[Buckets = {:12}, SubBuckets     = {:12}]",
        h.buckets(),
        sub_bucket_count(h.sigfig())
    );
    out
}

/// HdrHistogram's sub-bucket count for `sigfig` significant digits: the smallest power of
/// two that can tell apart `2 * 10^sigfig` values.
fn sub_bucket_count(sigfig: u8) -> u64 {
    (2 * 10u64.pow(u32::from(sigfig))).next_power_of_two()
}

/// One percentile line of a `.hgrm` file, as read back by [`parse`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HgrmLine {
    /// The value at this percentile, in the histogram's unit.
    pub value: f64,
    /// The percentile as a fraction from 0 to 1.
    pub quantile: f64,
    /// Recorded values up to and including this one.
    pub total_count: u64,
}

/// Reads the percentile lines of `.hgrm` text (as HdrHistogram's plotter does: header,
/// blank and `#` lines are skipped). Returns `None` when a line has the wrong shape.
pub fn parse(text: &str) -> Option<Vec<HgrmLine>> {
    let mut lines = Vec::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with("Value") {
            continue;
        }
        let cols: Vec<&str> = trimmed.split_whitespace().collect();
        if cols.len() != 3 && cols.len() != 4 {
            return None;
        }
        lines.push(HgrmLine {
            value: cols[0].parse().ok()?,
            quantile: cols[1].parse().ok()?,
            total_count: cols[2].parse().ok()?,
        });
    }
    Some(lines)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{failover_histogram, latency_histogram};

    #[test]
    fn layout_of_a_small_histogram() {
        let mut h = latency_histogram();
        for v in 1..=10 {
            h.record(v * 100).unwrap();
        }
        let text = percentile_distribution(&h);
        let mut lines = text.lines();
        assert_eq!(
            lines.next(),
            Some("       Value     Percentile TotalCount 1/(1-Percentile)")
        );
        assert_eq!(lines.next(), Some(""));
        assert_eq!(
            lines.next(),
            Some("     100.000 0.000000000000          1           1.00")
        );
        assert!(text.contains("     500.000 0.500000000000          5           2.00\n"));
        assert!(text.contains("    1000.000 1.000000000000         10\n"));
        assert!(text.ends_with(
            "#[Max     =     1000.000, Total count    =           10]\n\
             #[Buckets =           22, SubBuckets     =         2048]\n"
        ));
        assert!(text.contains("#[Mean    =      550.000, StdDeviation   =      287.228]\n"));
    }

    #[test]
    fn parse_reads_back_monotone_lines() {
        let mut h = latency_histogram();
        for v in 1..=10_000u64 {
            h.record(v * v).unwrap();
        }
        let lines = parse(&percentile_distribution(&h)).unwrap();
        assert!(lines.len() > 20, "{} lines", lines.len());
        let last = lines.last().unwrap();
        assert_eq!(last.quantile, 1.0);
        assert_eq!(last.total_count, 10_000);
        assert_eq!(last.value as u64, h.max());
        assert!(lines.windows(2).all(|w| w[0].value <= w[1].value
            && w[0].quantile <= w[1].quantile
            && w[0].total_count <= w[1].total_count));
    }

    #[test]
    fn empty_histogram_has_header_and_footer_only() {
        let text = percentile_distribution(&failover_histogram());
        assert_eq!(parse(&text).unwrap(), vec![]);
        assert!(text.contains("Total count    =            0]"));
        assert_eq!(text.lines().count(), 5);
    }

    #[test]
    fn parse_rejects_garbage() {
        assert!(parse("1.0 0.5\n").is_none());
        assert!(parse("x 0.5 3 2.0\n").is_none());
    }
}
