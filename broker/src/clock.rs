//! Wall-clock time derived from `tokio::time`, so that it is simulated under turmoil.
//!
//! A [`Clock`] is anchored once at an epoch time given by its creator (production reads
//! the system clock in `main`; the simulator passes its fixed scenario epoch) and then
//! advances with `tokio::time::Instant`. Nothing else in the broker reads a clock.

use std::time::Duration;

use tokio::time::Instant;

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
        self.base_epoch_ms + self.base.elapsed().as_millis() as u64
    }

    /// The tokio instant at which the clock will read `epoch_ms`.
    pub fn instant_at(&self, epoch_ms: u64) -> Instant {
        self.base + Duration::from_millis(epoch_ms.saturating_sub(self.base_epoch_ms))
    }
}
