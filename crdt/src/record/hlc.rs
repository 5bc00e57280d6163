//! Hybrid logical clock: wall-clock milliseconds in the high 48 bits and a counter in the low 16.
//!
//! Records are ordered by HLC (then device id), never by raw wall time, so a device whose clock
//! runs ahead or behind still lands its records in causal order with what it had seen.

use serde::{Deserialize, Serialize};

/// Counter bits in an [`Hlc`].
const COUNTER_BITS: u32 = 16;
const COUNTER_MASK: u64 = (1 << COUNTER_BITS) - 1;
/// How far ahead of our own clock a remote timestamp may be before we stop following it. A device
/// whose clock is a day ahead must not drag every other device's clock a day ahead.
pub const MAX_FORWARD_DRIFT_MS: u64 = 10 * 60 * 1000;

/// One hybrid logical timestamp; totally ordered.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
pub struct Hlc(pub u64);

impl Hlc {
    pub fn new(wall_ms: u64, counter: u16) -> Hlc {
        Hlc((wall_ms << COUNTER_BITS) | u64::from(counter))
    }
    pub fn wall_ms(self) -> u64 {
        self.0 >> COUNTER_BITS
    }
    pub fn counter(self) -> u16 {
        (self.0 & COUNTER_MASK) as u16
    }
}

/// The clock state of one device.
#[derive(Clone, Debug, Default)]
pub struct HlcClock {
    last: Hlc,
}

impl HlcClock {
    /// A timestamp for a local event at `now_ms`, strictly after every timestamp seen so far.
    pub fn tick(&mut self, now_ms: u64) -> Hlc {
        let last_wall = self.last.wall_ms();
        self.last = if now_ms > last_wall {
            Hlc::new(now_ms, 0)
        } else if self.last.counter() == u16::MAX {
            // Counter exhausted within one millisecond: borrow the next millisecond.
            Hlc::new(last_wall + 1, 0)
        } else {
            Hlc(self.last.0 + 1)
        };
        self.last
    }

    /// Take a remote timestamp into account so our next tick orders after it. Timestamps more
    /// than [`MAX_FORWARD_DRIFT_MS`] ahead of `now_ms` are not followed (they still order by
    /// their own value in the ledger).
    pub fn observe(&mut self, remote: Hlc, now_ms: u64) {
        if remote > self.last && remote.wall_ms() <= now_ms.saturating_add(MAX_FORWARD_DRIFT_MS) {
            self.last = remote;
        }
    }

    pub fn last(&self) -> Hlc {
        self.last
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tick_is_strictly_increasing_even_when_wall_clock_goes_back() {
        let mut c = HlcClock::default();
        let a = c.tick(1_000);
        let b = c.tick(900);
        let d = c.tick(1_000);
        assert!(a < b && b < d);
        assert_eq!(a.wall_ms(), 1_000);
    }

    #[test]
    fn observe_orders_after_remote_but_ignores_wild_future() {
        let mut c = HlcClock::default();
        c.observe(Hlc::new(5_000, 3), 4_000);
        assert!(c.tick(4_000) > Hlc::new(5_000, 3));
        let far = Hlc::new(4_000 + MAX_FORWARD_DRIFT_MS + 10_000, 0);
        c.observe(far, 4_000);
        assert!(c.tick(4_000) < far);
    }

    #[test]
    fn counter_overflow_borrows_next_millisecond() {
        let mut c = HlcClock {
            last: Hlc::new(7, u16::MAX),
        };
        let t = c.tick(7);
        assert_eq!((t.wall_ms(), t.counter()), (8, 0));
    }
}
