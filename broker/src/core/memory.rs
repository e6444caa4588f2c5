//! Memory accounting in bytes, for the broker-wide limit (`limits.memory_bytes_max`).
//!
//! Every message a client sends is charged to one [`MemoryGauge`] when the core builds
//! it, and the charge is returned when the last handle to the message goes away: out of
//! a queue, acknowledged, dropped from a transaction, or written by the shell. So the
//! gauge counts what queues, unacknowledged deliveries, open transactions and outbound
//! buffers hold, without the core having to track each of those places. The shell also
//! charges the bytes of frames still being read (partial frames). The gauge is only a
//! counter: it reads no clock and does no I/O, so the core stays sans-IO and the count is
//! the same in every run of a simulation.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Bytes currently held, shared by the core and the shell.
#[derive(Debug, Default)]
pub struct MemoryGauge {
    used_bytes: AtomicU64,
}

impl MemoryGauge {
    /// Bytes held now.
    pub fn used_bytes(&self) -> u64 {
        self.used_bytes.load(Ordering::Relaxed)
    }

    /// Adds `bytes`; they stay charged until the returned charge is dropped.
    pub fn charge(self: &Arc<Self>, bytes: u64) -> MemoryCharge {
        self.add(bytes);
        MemoryCharge {
            gauge: self.clone(),
            bytes,
        }
    }

    /// Adds `bytes` that the caller returns with [`MemoryGauge::sub`] itself.
    pub fn add(&self, bytes: u64) {
        self.used_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Returns `bytes` added with [`MemoryGauge::add`].
    pub fn sub(&self, bytes: u64) {
        // Saturating, so that a bookkeeping slip can never wrap to a huge figure.
        let _ = self
            .used_bytes
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some(v.saturating_sub(bytes))
            });
    }
}

/// Bytes charged to a [`MemoryGauge`], returned when this is dropped.
#[derive(Debug)]
pub struct MemoryCharge {
    gauge: Arc<MemoryGauge>,
    bytes: u64,
}

impl MemoryCharge {
    /// The bytes this charge holds.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl Drop for MemoryCharge {
    fn drop(&mut self) {
        self.gauge.sub(self.bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_come_back_when_dropped() {
        let gauge = Arc::new(MemoryGauge::default());
        let a = gauge.charge(100);
        let b = gauge.charge(20);
        assert_eq!(gauge.used_bytes(), 120);
        drop(a);
        assert_eq!(gauge.used_bytes(), 20);
        drop(b);
        assert_eq!(gauge.used_bytes(), 0);
        gauge.sub(5);
        assert_eq!(gauge.used_bytes(), 0, "never wraps below zero");
    }
}
