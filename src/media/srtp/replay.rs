//! Sliding replay window (RFC 3711 §3.3.2) over 48-bit SRTP or 31-bit SRTCP indices.
//!
//! Guarantees: `check` is pure (state changes only through `commit`, which the caller runs
//! after authentication succeeded); an index is accepted at most once; indices more than
//! [`WINDOW`] - 1 behind the highest accepted one are rejected as too old.

/// Window size in packets.
pub const WINDOW: u64 = 128;

/// Outcome of a replay check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayCheck {
    /// Never seen and inside (or ahead of) the window.
    Fresh,
    /// Already received.
    Replayed,
    /// Older than the window.
    TooOld,
}

/// Replay window: bit i set = (highest - i) was received.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplayWindow {
    highest: u64,
    bits: u128,
    started: bool,
}

impl ReplayWindow {
    /// Highest accepted index, if any.
    pub fn highest(&self) -> Option<u64> {
        self.started.then_some(self.highest)
    }

    pub fn check(&self, index: u64) -> ReplayCheck {
        if !self.started || index > self.highest {
            return ReplayCheck::Fresh;
        }
        let delta = self.highest - index;
        if delta >= WINDOW {
            ReplayCheck::TooOld
        } else if self.bits & (1u128 << delta) != 0 {
            ReplayCheck::Replayed
        } else {
            ReplayCheck::Fresh
        }
    }

    /// Record `index` as received (call only after `check` returned `Fresh` and the packet
    /// authenticated).
    pub fn commit(&mut self, index: u64) {
        if !self.started {
            self.started = true;
            self.highest = index;
            self.bits = 1;
        } else if index > self.highest {
            let shift = index - self.highest;
            self.bits = if shift >= WINDOW {
                0
            } else {
                self.bits << shift
            } | 1;
            self.highest = index;
        } else {
            let delta = self.highest - index;
            if delta < WINDOW {
                self.bits |= 1u128 << delta;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_accepts_once_and_ages_out() {
        let mut w = ReplayWindow::default();
        assert_eq!(w.check(1000), ReplayCheck::Fresh);
        w.commit(1000);
        assert_eq!(w.check(1000), ReplayCheck::Replayed);
        assert_eq!(w.check(999), ReplayCheck::Fresh);
        w.commit(999);
        assert_eq!(w.check(999), ReplayCheck::Replayed);
        w.commit(1200);
        assert_eq!(w.check(1000), ReplayCheck::TooOld);
        assert_eq!(w.check(1200 - 127), ReplayCheck::Fresh);
        assert_eq!(w.check(1200 - 128), ReplayCheck::TooOld);
        assert_eq!(w.check(1199), ReplayCheck::Fresh);
        assert_eq!(w.highest(), Some(1200));
    }
}
