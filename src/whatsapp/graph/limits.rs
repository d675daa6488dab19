//! Limits whatsip enforces before Meta does: a sliding-window rate limiter (API request
//! rates), the per business+user permission-request limits (1 per 24 h, 2 per 7 days), a
//! persisted per-number counter of call starts (10,000 per 24 h) that refuses early with a
//! clear SIP answer, and `biz_opaque_callback_data` (≤ 512 characters). Sans-IO: time is an
//! argument; only [`PersistentCallStartCounter`] touches a file.
use super::error::GraphError;
use crate::whatsapp::errors::{MetaCode, SipAnswer};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// At most `max` events in any window of `window`.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    max: u32,
    window: Duration,
    events: VecDeque<Instant>,
}

impl RateLimiter {
    pub fn new(max: u32, window: Duration) -> Self {
        RateLimiter {
            max: max.max(1),
            window,
            events: VecDeque::new(),
        }
    }

    /// Takes a slot at `now`, or says how long to wait for one.
    pub fn try_acquire(&mut self, now: Instant) -> Result<(), Duration> {
        while let Some(&first) = self.events.front() {
            if now.saturating_duration_since(first) >= self.window {
                self.events.pop_front();
            } else {
                break;
            }
        }
        if (self.events.len() as u32) < self.max {
            self.events.push_back(now);
            return Ok(());
        }
        let first = self.events.front().copied().unwrap_or(now);
        Err(self
            .window
            .saturating_sub(now.saturating_duration_since(first)))
    }
}

pub const DAY_S: i64 = 24 * 3600;
pub const WEEK_S: i64 = 7 * DAY_S;

/// Permission requests per business+user pair: 1 per 24 h and 2 per 7 days; a connected
/// call resets the count. Times are Unix seconds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PermissionRequestLimits {
    sent: BTreeMap<String, Vec<i64>>,
}

/// A (time_period, max_allowed, current_usage, limit_expiration_time) line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitUsage {
    pub time_period: &'static str,
    pub max_allowed: u32,
    pub current_usage: u32,
    pub expires_at: Option<i64>,
}

impl PermissionRequestLimits {
    fn window(&self, pair: &str, now: i64, span: i64) -> Vec<i64> {
        self.sent
            .get(pair)
            .map(|v| v.iter().copied().filter(|t| now - t < span).collect())
            .unwrap_or_default()
    }

    /// Usage of both limits for a pair at `now`.
    pub fn usage(&self, pair: &str, now: i64) -> [LimitUsage; 2] {
        let day = self.window(pair, now, DAY_S);
        let week = self.window(pair, now, WEEK_S);
        let exp = |v: &[i64], max: usize, span: i64| {
            (v.len() >= max).then(|| v.iter().min().copied().unwrap_or(now) + span)
        };
        [
            LimitUsage {
                time_period: "PT24H",
                max_allowed: 1,
                current_usage: day.len() as u32,
                expires_at: exp(&day, 1, DAY_S),
            },
            LimitUsage {
                time_period: "P7D",
                max_allowed: 2,
                current_usage: week.len() as u32,
                expires_at: exp(&week, 2, WEEK_S),
            },
        ]
    }

    pub fn allowed(&self, pair: &str, now: i64) -> bool {
        self.usage(pair, now)
            .iter()
            .all(|u| u.current_usage < u.max_allowed)
    }

    /// Records a request if allowed; otherwise 138009.
    pub fn record(&mut self, pair: &str, now: i64) -> Result<(), GraphError> {
        if !self.allowed(pair, now) {
            let next = self
                .usage(pair, now)
                .iter()
                .filter_map(|u| u.expires_at)
                .max()
                .unwrap_or(now);
            return Err(GraphError::Refused {
                code: MetaCode::PermissionRequestLimit,
                detail: format!("next request allowed at {next}"),
            });
        }
        let v = self.sent.entry(pair.to_string()).or_default();
        v.retain(|t| now - t < WEEK_S);
        v.push(now);
        Ok(())
    }

    /// A connected call resets the pair's count.
    pub fn reset(&mut self, pair: &str) {
        self.sent.remove(pair);
    }
}

pub const CALL_STARTS_PER_24H: u32 = 10_000;

/// Call starts per business number over a sliding 24 h, counted in one-minute buckets (so a
/// start frees its slot at most one minute late: conservative, never over Meta's limit).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CallStartCounter {
    pub limit: u32,
    /// number → (minute since epoch → starts)
    numbers: BTreeMap<String, BTreeMap<i64, u32>>,
}

/// A call start refused locally.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{number_redacted}: {used} call starts in the last 24 h (limit {limit}); next slot in {retry_after_s} s"
)]
pub struct CallStartRefused {
    pub number_redacted: String,
    pub used: u32,
    pub limit: u32,
    pub retry_after_s: u64,
}

impl CallStartRefused {
    /// 503 with Retry-After and `Warning: 399 whatsip "Meta 138005: …"`.
    pub fn sip_answer(&self) -> SipAnswer {
        let mut a = MetaCode::CallRateLimit.sip_answer();
        a.retry_after = Some(self.retry_after_s.max(1));
        a
    }
}

impl CallStartCounter {
    pub fn new(limit: u32) -> Self {
        CallStartCounter {
            limit,
            numbers: BTreeMap::new(),
        }
    }

    fn prune(&mut self, now_unix: i64) {
        let cutoff = now_unix.div_euclid(60) - 24 * 60;
        for b in self.numbers.values_mut() {
            b.retain(|m, _| *m > cutoff);
        }
        self.numbers.retain(|_, b| !b.is_empty());
    }

    /// Starts counted for `number` in the 24 h ending at `now_unix`.
    pub fn used(&self, number: &str, now_unix: i64) -> u32 {
        let cutoff = now_unix.div_euclid(60) - 24 * 60;
        self.numbers
            .get(number)
            .map(|b| b.range(cutoff + 1..).map(|(_, n)| *n).sum())
            .unwrap_or(0)
    }

    /// Counts a call start, or refuses it when the number is at its limit.
    pub fn try_start(&mut self, number: &str, now_unix: i64) -> Result<u32, CallStartRefused> {
        self.prune(now_unix);
        let used = self.used(number, now_unix);
        if used >= self.limit {
            // the oldest bucket leaves the window at (its minute + 24 h + 1 min)
            let oldest = self
                .numbers
                .get(number)
                .and_then(|b| b.keys().next().copied())
                .unwrap_or(now_unix.div_euclid(60));
            let free_at = (oldest + 24 * 60 + 1) * 60;
            return Err(CallStartRefused {
                number_redacted: super::permissions::redact(number),
                used,
                limit: self.limit,
                retry_after_s: (free_at - now_unix).max(1) as u64,
            });
        }
        *self
            .numbers
            .entry(number.to_string())
            .or_default()
            .entry(now_unix.div_euclid(60))
            .or_insert(0) += 1;
        Ok(self.limit - used - 1)
    }
}

/// [`CallStartCounter`] saved to a JSON file after every start (atomic replace), so a
/// restart does not forget the last 24 h.
#[derive(Debug)]
pub struct PersistentCallStartCounter {
    path: PathBuf,
    counter: CallStartCounter,
}

impl PersistentCallStartCounter {
    /// Loads `path` (a missing file is an empty counter; a corrupt one is an error).
    pub fn open(path: &Path, limit: u32) -> std::io::Result<Self> {
        let counter = match std::fs::read(path) {
            Ok(bytes) => {
                let mut c: CallStartCounter = serde_json::from_slice(&bytes).map_err(|e| {
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("{}: {e}", path.display()),
                    )
                })?;
                c.limit = limit;
                c
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => CallStartCounter::new(limit),
            Err(e) => return Err(e),
        };
        Ok(PersistentCallStartCounter {
            path: path.to_path_buf(),
            counter,
        })
    }

    pub fn counter(&self) -> &CallStartCounter {
        &self.counter
    }

    /// Counts and persists a start; a refusal changes nothing.
    pub fn try_start(
        &mut self,
        number: &str,
        now_unix: i64,
    ) -> Result<Result<u32, CallStartRefused>, std::io::Error> {
        let r = self.counter.try_start(number, now_unix);
        if r.is_ok() {
            self.save()?;
        }
        Ok(r)
    }

    fn save(&self) -> std::io::Result<()> {
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = self
            .path
            .with_extension(format!("tmp{}", std::process::id()));
        let bytes = serde_json::to_vec(&self.counter).map_err(std::io::Error::other)?;
        std::fs::write(&tmp, bytes)?;
        std::fs::rename(&tmp, &self.path)
    }
}

pub const BIZ_OPAQUE_MAX_CHARS: usize = 512;

/// `biz_opaque_callback_data`: at most 512 characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct BizOpaqueData(String);

impl BizOpaqueData {
    pub fn new(s: impl Into<String>) -> Result<Self, GraphError> {
        let s = s.into();
        let n = s.chars().count();
        if n > BIZ_OPAQUE_MAX_CHARS {
            return Err(GraphError::Invalid(format!(
                "biz_opaque_callback_data is {n} characters; Meta allows at most {BIZ_OPAQUE_MAX_CHARS}"
            )));
        }
        Ok(BizOpaqueData(s))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limiter_window() {
        let t0 = Instant::now();
        let mut r = RateLimiter::new(2, Duration::from_secs(1));
        assert!(r.try_acquire(t0).is_ok());
        assert!(r.try_acquire(t0 + Duration::from_millis(100)).is_ok());
        assert_eq!(
            r.try_acquire(t0 + Duration::from_millis(400)),
            Err(Duration::from_millis(600))
        );
        assert!(r.try_acquire(t0 + Duration::from_millis(1000)).is_ok());
    }

    #[test]
    fn permission_requests_1_per_day_2_per_week() {
        let mut l = PermissionRequestLimits::default();
        let p = "106540352242922/15557654321";
        let t = 1_000_000;
        l.record(p, t).unwrap();
        let e = l.record(p, t + DAY_S - 1).unwrap_err();
        assert_eq!(e.meta_code(), Some(MetaCode::PermissionRequestLimit));
        l.record(p, t + DAY_S).unwrap();
        assert!(l.record(p, t + 2 * DAY_S).is_err(), "2 per 7 days");
        assert_eq!(l.usage(p, t + 2 * DAY_S)[1].expires_at, Some(t + WEEK_S));
        l.record(p, t + WEEK_S).unwrap();
        l.reset(p);
        assert!(l.allowed(p, t + WEEK_S));
    }

    #[test]
    fn call_start_counter_refuses_at_limit_and_frees_after_24h() {
        let mut c = CallStartCounter::new(3);
        let t = 600_000;
        assert_eq!(c.try_start("15550001111", t), Ok(2));
        assert_eq!(c.try_start("15550001111", t + 30), Ok(1));
        assert_eq!(c.try_start("15550001111", t + 61), Ok(0));
        assert_eq!(c.try_start("15559999999", t + 61), Ok(2), "per number");
        let e = c.try_start("15550001111", t + 120).unwrap_err();
        assert_eq!(e.used, 3);
        let a = e.sip_answer();
        assert_eq!(a.status, 503);
        assert_eq!(
            a.warning,
            "399 whatsip \"Meta 138005: call start limit reached (10000 per 24 h)\""
        );
        // the first two starts (minute 10000) leave the window at minute 10000 + 1441
        assert_eq!(a.retry_after, Some((e.retry_after_s).max(1)));
        assert_eq!(t as u64 + 120 + e.retry_after_s, (10_000 + 1441) * 60);
        assert!(c.try_start("15550001111", (10_000 + 1441) * 60).is_ok());
    }

    #[test]
    fn counter_persists_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("starts.json");
        let mut c = PersistentCallStartCounter::open(&p, 2).unwrap();
        c.try_start("15550001111", 1_000).unwrap().unwrap();
        c.try_start("15550001111", 1_001).unwrap().unwrap();
        drop(c);
        let mut c = PersistentCallStartCounter::open(&p, 2).unwrap();
        assert!(c.try_start("15550001111", 1_002).unwrap().is_err());
        std::fs::write(&p, b"{not json").unwrap();
        assert!(PersistentCallStartCounter::open(&p, 2).is_err());
    }

    #[test]
    fn opaque_data_512_chars() {
        assert!(BizOpaqueData::new("é".repeat(512)).is_ok());
        assert!(BizOpaqueData::new("a".repeat(513)).is_err());
    }
}
