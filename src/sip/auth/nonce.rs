//! Server nonces (RFC 7616 §3.3, §5.4-§5.5): `timestamp | algorithm | random | HMAC`, base64url.
//! Guarantees: a nonce we did not mint (or one edited in any bit) fails the HMAC check
//! without touching any table; a nonce is bound to the algorithm of the challenge that carried
//! it; expiry is judged on the caller's clock (`Instant`); the used-nonce table is bounded and
//! evicting a still-valid entry raises a watermark so the evicted nonce cannot be replayed.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

const TS_LEN: usize = 8;
const RAND_LEN: usize = 12;
const ID_LEN: usize = TS_LEN + 1 + RAND_LEN;
const MAC_LEN: usize = 16;

/// The authenticated part of a nonce: timestamp, algorithm code, random.
pub(crate) type NonceId = [u8; ID_LEN];

/// A nonce that passed the HMAC check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NonceInfo {
    pub id: NonceId,
    /// Milliseconds since the minter's epoch.
    pub issued_ms: u64,
    pub alg_code: u8,
}

/// Mints and authenticates nonces with a per-process key.
pub(crate) struct NonceMinter {
    key: [u8; 32],
    epoch: Instant,
    counter: u64,
}

fn mac(key: &[u8; 32], label: &[u8], data: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length, so this cannot fail; fall back to a fixed key anyway.
    let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| <Hmac<Sha256> as KeyInit>::new(&Default::default()));
    m.update(label);
    m.update(data);
    m.finalize().into_bytes().into()
}

impl NonceMinter {
    pub(crate) fn new(key: [u8; 32], epoch: Instant) -> Self {
        NonceMinter {
            key,
            epoch,
            counter: 0,
        }
    }

    pub(crate) fn millis(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX)
    }

    /// A keyed pseudo-random function of `data` (used for dummy secrets).
    pub(crate) fn prf(&self, label: &[u8], data: &[u8]) -> [u8; 32] {
        mac(&self.key, label, data)
    }

    pub(crate) fn mint(&mut self, now: Instant, alg_code: u8) -> String {
        self.counter = self.counter.wrapping_add(1);
        let random = mac(
            &self.key,
            b"whatsip nonce random\0",
            &self.counter.to_be_bytes(),
        );
        let mut buf = [0u8; ID_LEN + MAC_LEN];
        buf[..TS_LEN].copy_from_slice(&self.millis(now).to_be_bytes());
        buf[TS_LEN] = alg_code;
        buf[TS_LEN + 1..ID_LEN].copy_from_slice(&random[..RAND_LEN]);
        let tag = mac(&self.key, b"whatsip nonce\0", &buf[..ID_LEN]);
        buf[ID_LEN..].copy_from_slice(&tag[..MAC_LEN]);
        URL_SAFE_NO_PAD.encode(buf)
    }

    /// Checks the HMAC (constant time) and decodes the fields.
    pub(crate) fn verify(&self, nonce: &str) -> Option<NonceInfo> {
        if nonce.len() > 64 {
            return None;
        }
        let raw = URL_SAFE_NO_PAD.decode(nonce).ok()?;
        if raw.len() != ID_LEN + MAC_LEN {
            return None;
        }
        let (body, tag) = raw.split_at(ID_LEN);
        let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key).ok()?;
        m.update(b"whatsip nonce\0");
        m.update(body);
        m.verify_truncated_left(tag).ok()?;
        let id: NonceId = body.try_into().ok()?;
        let ts: [u8; TS_LEN] = body.get(..TS_LEN)?.try_into().ok()?;
        Some(NonceInfo {
            id,
            issued_ms: u64::from_be_bytes(ts),
            alg_code: *body.get(TS_LEN)?,
        })
    }
}

/// How often a nonce may authenticate a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NonceReuse {
    /// Exactly once: every request needs a fresh challenge (default; strictest).
    #[default]
    SingleUse,
    /// Reusable until expiry with a strictly increasing `nc` (RFC 7616 §3.4).
    IncreasingNc,
}

/// Bounded record of nonces that already authenticated a request.
pub(crate) struct UsedNonces {
    capacity: usize,
    last_nc: HashMap<NonceId, u32>,
    order: VecDeque<(NonceId, u64)>,
    /// Unused nonces issued at or before this instant are treated as used (after eviction).
    watermark: Option<u64>,
}

impl UsedNonces {
    pub(crate) fn new(capacity: usize) -> Self {
        UsedNonces {
            capacity: capacity.max(1),
            last_nc: HashMap::new(),
            order: VecDeque::new(),
            watermark: None,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.last_nc.len()
    }

    fn purge(&mut self, now_ms: u64, lifetime: Duration) {
        let life = u64::try_from(lifetime.as_millis()).unwrap_or(u64::MAX);
        while let Some(&(id, issued)) = self.order.front() {
            if issued.saturating_add(life) < now_ms {
                self.order.pop_front();
                self.last_nc.remove(&id);
            } else {
                break;
            }
        }
    }

    /// Whether using `info` with `nc` now would be a replay.
    pub(crate) fn is_replay(&self, info: &NonceInfo, nc: u32, mode: NonceReuse) -> bool {
        match self.last_nc.get(&info.id) {
            Some(&last) => mode == NonceReuse::SingleUse || nc <= last,
            None => self.watermark.is_some_and(|w| info.issued_ms <= w),
        }
    }

    /// Records a successful use.
    pub(crate) fn mark(&mut self, now_ms: u64, lifetime: Duration, info: &NonceInfo, nc: u32) {
        self.purge(now_ms, lifetime);
        if let Some(last) = self.last_nc.get_mut(&info.id) {
            *last = nc;
            return;
        }
        while self.last_nc.len() >= self.capacity {
            let Some((old, issued)) = self.order.pop_front() else {
                break;
            };
            self.last_nc.remove(&old);
            self.watermark = Some(self.watermark.map_or(issued, |w| w.max(issued)));
        }
        self.last_nc.insert(info.id, nc);
        self.order.push_back((info.id, info.issued_ms));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mint_verify_and_tamper() {
        let t0 = Instant::now();
        let mut m = NonceMinter::new([7; 32], t0);
        let n = m.mint(t0 + Duration::from_millis(1500), 3);
        let info = m.verify(&n).unwrap();
        assert_eq!(info.issued_ms, 1500);
        assert_eq!(info.alg_code, 3);
        assert_ne!(m.mint(t0, 3), m.mint(t0, 3), "nonces are unique");
        // flip every character in turn: all must fail
        for i in 0..n.len() {
            let mut b = n.clone().into_bytes();
            b[i] = if b[i] == b'A' { b'B' } else { b'A' };
            let s = String::from_utf8(b).unwrap();
            if s != n {
                assert!(m.verify(&s).is_none(), "tampered nonce at {i} accepted");
            }
        }
        assert!(
            NonceMinter::new([8; 32], t0).verify(&n).is_none(),
            "other key"
        );
        assert!(m.verify("").is_none());
        assert!(m.verify("!!!").is_none());
    }

    #[test]
    fn eviction_raises_watermark() {
        let t0 = Instant::now();
        let mut m = NonceMinter::new([1; 32], t0);
        let life = Duration::from_secs(60);
        let mut used = UsedNonces::new(2);
        let infos: Vec<NonceInfo> = (0..3u64)
            .map(|i| {
                let n = m.mint(t0 + Duration::from_millis(i), 1);
                m.verify(&n).unwrap()
            })
            .collect();
        used.mark(3, life, &infos[0], 1);
        used.mark(3, life, &infos[1], 1);
        used.mark(3, life, &infos[2], 1);
        assert_eq!(used.len(), 2);
        // the evicted one is still refused
        assert!(used.is_replay(&infos[0], 1, NonceReuse::SingleUse));
        assert!(used.is_replay(&infos[2], 1, NonceReuse::SingleUse));
        assert!(!used.is_replay(&infos[2], 2, NonceReuse::IncreasingNc));
        assert!(used.is_replay(&infos[2], 1, NonceReuse::IncreasingNc));
    }
}
