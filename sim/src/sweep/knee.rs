//! The knee: the largest load that still meets the objective.
//!
//! Walking the load key's values in the direction of growing load (ascending for
//! `--knee-at largest`, descending for `--knee-at smallest`), the knee is the last value
//! that meets the objective before the first that does not. Where the grid is coarse, the
//! sweep bisects between the two: each step runs the midpoint and keeps the half where
//! the objective changes, until `--bisect` steps are made or, for an integer key, the two
//! are neighbours.

use std::str::FromStr;

use super::SweepError;

/// Which end of the load key the knee is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum KneeAt {
    /// The largest value meeting the objective (load grows with the key: nodes, rate).
    #[default]
    Largest,
    /// The smallest value meeting the objective (load shrinks as the key grows:
    /// brokers, discovery interval).
    Smallest,
}

impl FromStr for KneeAt {
    type Err = SweepError;

    fn from_str(s: &str) -> Result<KneeAt, SweepError> {
        match s {
            "largest" => Ok(KneeAt::Largest),
            "smallest" => Ok(KneeAt::Smallest),
            _ => Err(SweepError::KneeAt(s.to_owned())),
        }
    }
}

/// Where the knee of one series stands.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Knee {
    /// The last value meeting the objective before the first failure (`None`: already
    /// the first value fails).
    pub knee: Option<f64>,
    /// The first value (in the direction of load) that fails (`None`: none does, the knee
    /// is beyond the range).
    pub first_fail: Option<f64>,
    /// Whether some value past the first failure meets the objective again (not
    /// monotone: read the charts).
    pub non_monotone: bool,
}

/// The knee of samples `(value, meets objective)` in any order (one sample per value).
pub fn find(at: KneeAt, samples: &[(f64, bool)]) -> Knee {
    let mut s: Vec<(f64, bool)> = samples.to_vec();
    s.sort_by(|a, b| a.0.total_cmp(&b.0));
    if at == KneeAt::Smallest {
        s.reverse();
    }
    let first_fail = s.iter().position(|p| !p.1);
    Knee {
        knee: match first_fail {
            Some(0) => None,
            Some(i) => Some(s[i - 1].0),
            None => s.last().map(|p| p.0),
        },
        first_fail: first_fail.map(|i| s[i].0),
        non_monotone: first_fail.is_some_and(|i| s[i..].iter().any(|p| p.1)),
    }
}

/// The value to run next to narrow `k`, if any: the midpoint of the knee and the first
/// failure (for an integer key, `None` once they are neighbours).
pub fn next_probe(k: &Knee, integer: bool) -> Option<f64> {
    let (a, b) = (k.knee?, k.first_fail?);
    if integer {
        let (lo, hi) = (a.min(b), a.max(b));
        if hi - lo <= 1.0 {
            return None;
        }
        Some(((lo + hi) / 2.0).floor())
    } else {
        let mid = super::grid::round_decimals((a + b) / 2.0);
        (mid != a && mid != b).then_some(mid)
    }
}

/// Bisection over a function: the grid values are tested, then up to `steps` midpoints.
/// The sweep does the same in rounds of processes; this is its model, used by tests with
/// synthetic objectives. Returns the knee and every value tested, in order.
pub fn bisect(
    at: KneeAt,
    grid: &[f64],
    integer: bool,
    steps: usize,
    meets: &mut dyn FnMut(f64) -> bool,
) -> (Knee, Vec<f64>) {
    let mut samples: Vec<(f64, bool)> = grid.iter().map(|&x| (x, meets(x))).collect();
    let mut tested: Vec<f64> = grid.to_vec();
    for _ in 0..steps {
        let k = find(at, &samples);
        let Some(x) = next_probe(&k, integer) else {
            break;
        };
        tested.push(x);
        samples.push((x, meets(x)));
    }
    (find(at, &samples), tested)
}
