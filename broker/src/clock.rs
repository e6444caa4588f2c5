//! Wall-clock time derived from `tokio::time`, so that it is simulated under turmoil.
//!
//! A [`Clock`] is anchored once at an epoch time given by its creator (production reads
//! the system clock in `main`; the simulator passes its fixed scenario epoch) and then
//! advances with `tokio::time::Instant`. Nothing else in the broker reads a clock.

use std::time::Duration;

use tokio::time::Instant;

/// A century: later than any timer a run can reach.
const FAR_FUTURE: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
/// A year, for a platform whose `Instant` cannot reach a century ahead.
const FAR_FUTURE_FALLBACK: Duration = Duration::from_secs(365 * 24 * 3600);

/// Epoch milliseconds that advance with tokio's (possibly simulated) clock.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    base_epoch_ms: u64,
    base: Instant,
}

impl Clock {
    /// A clock that reads `epoch_ms` now.
    pub fn starting_at(epoch_ms: u64) -> Clock {
        Clock {
            base_epoch_ms: epoch_ms,
            base: Instant::now(),
        }
    }

    /// The current time in epoch milliseconds.
    pub fn now_ms(&self) -> u64 {
        self.base_epoch_ms
            .saturating_add(self.base.elapsed().as_millis() as u64)
    }

    /// The tokio instant at which the clock will read `epoch_ms`. A time too far ahead for
    /// an `Instant` (a timer at the end of `u64` time) becomes a century from the clock's
    /// start, which no run reaches.
    pub fn instant_at(&self, epoch_ms: u64) -> Instant {
        let ahead = Duration::from_millis(epoch_ms.saturating_sub(self.base_epoch_ms));
        self.base
            .checked_add(ahead.min(FAR_FUTURE))
            .unwrap_or(self.base + FAR_FUTURE_FALLBACK)
    }
}
