//! Failed-attempt counter per source address. Guarantees: after `threshold` failures with
//! less than `cooldown` between them the source is refused until `cooldown` after the last
//! failure; a success resets it; the table holds at most `max_sources` entries; time is
//! always the caller's `now`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Lockout policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockoutConfig {
    /// Failures that trigger the lockout; 0 disables it.
    pub threshold: u32,
    /// How long a locked source is refused, and how long a failure is remembered
    /// (capped at one year).
    pub cooldown: Duration,
    /// Upper bound on tracked sources.
    pub max_sources: usize,
}

impl Default for LockoutConfig {
    fn default() -> Self {
        LockoutConfig {
            threshold: 5,
            cooldown: Duration::from_secs(300),
            max_sources: 65_536,
        }
    }
}

const MAX_COOLDOWN: Duration = Duration::from_secs(365 * 24 * 3600);

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    last_failure: Instant,
    locked_until: Option<Instant>,
}

/// The per-source counters.
#[derive(Debug)]
pub struct Lockout {
    config: LockoutConfig,
    entries: HashMap<IpAddr, Entry>,
}

impl Lockout {
    /// An empty table.
    pub fn new(mut config: LockoutConfig) -> Self {
        config.cooldown = config.cooldown.min(MAX_COOLDOWN);
        Lockout {
            config,
            entries: HashMap::new(),
        }
    }

    /// `Err(retry_after)` when `source` is currently refused.
    pub fn check(&mut self, now: Instant, source: IpAddr) -> Result<(), Duration> {
        match self.entries.get(&source).and_then(|e| e.locked_until) {
            Some(until) if now < until => Err(until - now),
            Some(_) => {
                self.entries.remove(&source);
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Counts one failure; returns `Some(retry_after)` when this failure locks the source.
    pub fn record_failure(&mut self, now: Instant, source: IpAddr) -> Option<Duration> {
        if self.config.threshold == 0 {
            return None;
        }
        let cooldown = self.config.cooldown;
        if !self.entries.contains_key(&source) && self.entries.len() >= self.config.max_sources {
            self.entries.retain(|_, e| {
                e.locked_until.is_some_and(|u| now < u)
                    || now.duration_since(e.last_failure) < cooldown
            });
            if self.entries.len() >= self.config.max_sources {
                let oldest = self
                    .entries
                    .iter()
                    .filter(|(_, e)| e.locked_until.is_none())
                    .min_by_key(|(_, e)| e.last_failure)
                    .map(|(k, _)| *k);
                match oldest {
                    Some(k) => {
                        self.entries.remove(&k);
                    }
                    // full of locked sources: do not track more, but do not unlock anyone
                    None => return None,
                }
            }
        }
        let e = self.entries.entry(source).or_insert(Entry {
            failures: 0,
            last_failure: now,
            locked_until: None,
        });
        if now.saturating_duration_since(e.last_failure) >= cooldown {
            e.failures = 0;
        }
        e.failures = e.failures.saturating_add(1);
        e.last_failure = now;
        if e.failures >= self.config.threshold {
            e.locked_until = Some(now.checked_add(cooldown).unwrap_or(now));
            tracing::warn!(%source, failures = e.failures, "digest auth: source locked out");
            Some(cooldown)
        } else {
            None
        }
    }

    /// Forgets the failures of `source` after a successful authentication.
    pub fn record_success(&mut self, source: IpAddr) {
        self.entries.remove(&source);
    }

    /// Number of tracked sources.
    pub fn tracked(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_after_threshold_and_recovers() {
        let t0 = Instant::now();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        let mut l = Lockout::new(LockoutConfig {
            threshold: 3,
            cooldown: Duration::from_secs(60),
            max_sources: 10,
        });
        assert_eq!(l.record_failure(t0, ip), None);
        assert_eq!(l.record_failure(t0 + Duration::from_secs(1), ip), None);
        assert_eq!(
            l.record_failure(t0 + Duration::from_secs(2), ip),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            l.check(t0 + Duration::from_secs(32), ip),
            Err(Duration::from_secs(30))
        );
        assert_eq!(l.check(t0 + Duration::from_secs(32), other), Ok(()));
        assert_eq!(l.check(t0 + Duration::from_secs(62), ip), Ok(()));
        // counter restarted
        assert_eq!(l.record_failure(t0 + Duration::from_secs(63), ip), None);
    }

    #[test]
    fn old_failures_decay_and_table_is_bounded() {
        let t0 = Instant::now();
        let mut l = Lockout::new(LockoutConfig {
            threshold: 2,
            cooldown: Duration::from_secs(10),
            max_sources: 4,
        });
        let ip: IpAddr = "198.51.100.7".parse().unwrap();
        l.record_failure(t0, ip);
        assert_eq!(l.record_failure(t0 + Duration::from_secs(11), ip), None);
        for i in 0..100u8 {
            l.record_failure(t0 + Duration::from_secs(20), IpAddr::from([10, 0, 0, i]));
        }
        assert!(l.tracked() <= 4);
    }
}
