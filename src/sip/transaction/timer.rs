//! RFC 3261 §17 / RFC 6026 transaction timers.
//!
//! Guarantees: every timer value is derived from one `TimerConfig { t1, t2, t4 }` exactly as
//! RFC 3261 Table 4 and RFC 6026 §8.4 give it, including the reliable-transport values (D, I,
//! J, K are zero and the A/E/G retransmission timers are not used over TCP/TLS). A `TimerSet`
//! holds the armed timers of one state machine and fires them in deadline order.
use std::time::{Duration, Instant};

/// The transaction timers of RFC 3261 Table 4 plus RFC 6026's L and M. Timer C (proxy INVITE
/// transaction timer) is listed for completeness; a UA never arms it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Timer {
    /// INVITE request retransmit (client, unreliable): T1, doubling.
    A,
    /// INVITE client transaction timeout: 64·T1.
    B,
    /// Proxy INVITE transaction timeout (> 3 min). Not used by a UA.
    C,
    /// Wait for response retransmissions (INVITE client): ≥ 32 s unreliable, 0 reliable.
    D,
    /// Non-INVITE request retransmit (client, unreliable): T1 doubling, capped at T2.
    E,
    /// Non-INVITE client transaction timeout: 64·T1.
    F,
    /// INVITE final (non-2xx) response retransmit (server, unreliable): T1 doubling, capped at T2.
    G,
    /// Wait for ACK receipt (INVITE server): 64·T1.
    H,
    /// Wait for ACK retransmissions (INVITE server): T4 unreliable, 0 reliable.
    I,
    /// Wait for non-INVITE request retransmissions (server): 64·T1 unreliable, 0 reliable.
    J,
    /// Wait for non-INVITE response retransmissions (client): T4 unreliable, 0 reliable.
    K,
    /// RFC 6026: wait for INVITE retransmissions / ACKs in Accepted (server): 64·T1.
    L,
    /// RFC 6026: wait for 2xx retransmissions in Accepted (client): 64·T1.
    M,
}

/// Base timer values. Defaults are RFC 3261's: T1 = 500 ms, T2 = 4 s, T4 = 5 s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerConfig {
    /// RTT estimate.
    pub t1: Duration,
    /// Maximum retransmit interval for non-INVITE requests and INVITE responses.
    pub t2: Duration,
    /// Maximum duration a message remains in the network.
    pub t4: Duration,
}

impl Default for TimerConfig {
    fn default() -> Self {
        TimerConfig {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
        }
    }
}

impl TimerConfig {
    /// 64·T1: Timers B, F, H, L, M and (unreliable) J.
    pub fn t1x64(&self) -> Duration {
        self.t1 * 64
    }

    /// Initial interval of a retransmission timer (A, E, G), or `None` over a reliable
    /// transport where no retransmission happens.
    pub fn initial_retransmit(&self, reliable: bool) -> Option<Duration> {
        (!reliable).then_some(self.t1)
    }

    /// Value of a non-retransmission timer for the given transport. A/E/G give their initial
    /// interval (`Duration::ZERO` when reliable: they are not armed then).
    pub fn duration(&self, timer: Timer, reliable: bool) -> Duration {
        let unreliable_only = |d: Duration| if reliable { Duration::ZERO } else { d };
        match timer {
            Timer::A | Timer::E | Timer::G => unreliable_only(self.t1),
            Timer::B | Timer::F | Timer::H | Timer::L | Timer::M => self.t1x64(),
            // RFC 3261 §17.2.1 / §16.6: "> 3 min".
            Timer::C => Duration::from_secs(181),
            // "at least 32 seconds for unreliable transports"; 64·T1 if T1 was raised above
            // the default so D keeps covering B's window.
            Timer::D => unreliable_only(Duration::from_secs(32).max(self.t1x64())),
            Timer::I | Timer::K => unreliable_only(self.t4),
            Timer::J => unreliable_only(self.t1x64()),
        }
    }

    /// Next interval of Timer A (INVITE client): doubles without cap.
    pub fn next_a(&self, prev: Duration) -> Duration {
        prev * 2
    }

    /// Next interval of Timers E and G: doubles, capped at T2.
    pub fn next_capped(&self, prev: Duration) -> Duration {
        (prev * 2).min(self.t2)
    }
}

/// The armed timers of one state machine: at most one deadline per `Timer`.
#[derive(Debug, Clone, Default)]
pub struct TimerSet {
    armed: Vec<(Timer, Instant)>,
}

impl TimerSet {
    pub fn new() -> TimerSet {
        TimerSet { armed: Vec::new() }
    }

    /// Arms (or re-arms) `timer` to fire at `at`.
    pub fn set(&mut self, timer: Timer, at: Instant) {
        self.cancel(timer);
        self.armed.push((timer, at));
    }

    pub fn cancel(&mut self, timer: Timer) {
        self.armed.retain(|(t, _)| *t != timer);
    }

    pub fn clear(&mut self) {
        self.armed.clear();
    }

    pub fn deadline(&self, timer: Timer) -> Option<Instant> {
        self.armed
            .iter()
            .find(|(t, _)| *t == timer)
            .map(|(_, at)| *at)
    }

    /// Earliest deadline.
    pub fn next(&self) -> Option<Instant> {
        self.armed.iter().map(|(_, at)| *at).min()
    }

    /// Removes and returns the earliest timer due at `now`, if any.
    pub fn pop_expired(&mut self, now: Instant) -> Option<(Timer, Instant)> {
        let (idx, _) = self
            .armed
            .iter()
            .enumerate()
            .filter(|(_, (_, at))| *at <= now)
            .min_by_key(|(_, (_, at))| *at)?;
        Some(self.armed.remove(idx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_values_match_rfc3261_table4() {
        let c = TimerConfig::default();
        assert_eq!(c.duration(Timer::B, false), Duration::from_secs(32));
        assert_eq!(c.duration(Timer::F, true), Duration::from_secs(32));
        assert_eq!(c.duration(Timer::H, false), Duration::from_secs(32));
        assert_eq!(c.duration(Timer::D, false), Duration::from_secs(32));
        assert_eq!(c.duration(Timer::D, true), Duration::ZERO);
        assert_eq!(c.duration(Timer::I, false), Duration::from_secs(5));
        assert_eq!(c.duration(Timer::I, true), Duration::ZERO);
        assert_eq!(c.duration(Timer::J, false), Duration::from_secs(32));
        assert_eq!(c.duration(Timer::J, true), Duration::ZERO);
        assert_eq!(c.duration(Timer::K, false), Duration::from_secs(5));
        assert_eq!(c.duration(Timer::K, true), Duration::ZERO);
        assert_eq!(c.duration(Timer::L, true), Duration::from_secs(32));
        assert_eq!(c.duration(Timer::M, false), Duration::from_secs(32));
        assert_eq!(c.initial_retransmit(true), None);
        assert_eq!(
            c.initial_retransmit(false),
            Some(Duration::from_millis(500))
        );
        assert_eq!(
            c.next_capped(Duration::from_secs(2)),
            Duration::from_secs(4)
        );
        assert_eq!(
            c.next_capped(Duration::from_secs(4)),
            Duration::from_secs(4)
        );
        assert_eq!(c.next_a(Duration::from_secs(16)), Duration::from_secs(32));
    }

    #[test]
    fn timer_set_fires_in_deadline_order() {
        let t0 = Instant::now();
        let mut s = TimerSet::new();
        s.set(Timer::B, t0 + Duration::from_secs(32));
        s.set(Timer::A, t0 + Duration::from_millis(500));
        assert_eq!(s.next(), Some(t0 + Duration::from_millis(500)));
        assert_eq!(s.pop_expired(t0), None);
        let late = t0 + Duration::from_secs(40);
        assert_eq!(s.pop_expired(late).map(|x| x.0), Some(Timer::A));
        assert_eq!(s.pop_expired(late).map(|x| x.0), Some(Timer::B));
        assert_eq!(s.pop_expired(late), None);
    }
}
