//! Readiness the runtime reports for `GET /healthz`: named components (`sip_whatsapp`,
//! `sip_trunk`, `graph`, …) that are `ready` or not, and PBX trunks that are `up` or `down`.
//! Shared and cheap to update (one small `RwLock`, touched on changes only).
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Instant;

/// A component's readiness.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Readiness {
    Starting,
    Ready,
    Failed,
}

/// A trunk's reachability (OPTIONS qualify, transport state).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrunkStatus {
    Up,
    Down,
}

#[derive(Debug, Default)]
struct Inner {
    components: BTreeMap<String, Readiness>,
    trunks: BTreeMap<String, TrunkStatus>,
}

/// Shared health state. Clone freely.
#[derive(Debug, Clone)]
pub struct Health {
    inner: Arc<RwLock<Inner>>,
    started: Instant,
}

impl Default for Health {
    fn default() -> Health {
        Health::new()
    }
}

/// `GET /healthz` body.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct HealthReport {
    /// `ok` when every component is ready and every trunk up, else `degraded`.
    pub status: String,
    pub version: String,
    pub uptime_s: u64,
    pub components: BTreeMap<String, Readiness>,
    pub trunks: BTreeMap<String, TrunkStatus>,
}

impl Health {
    /// Uptime counts from now.
    pub fn new() -> Health {
        Health {
            inner: Arc::default(),
            started: Instant::now(),
        }
    }

    pub fn set_component(&self, name: &str, r: Readiness) {
        let mut g = self.inner.write().unwrap_or_else(|p| p.into_inner());
        g.components.insert(name.to_string(), r);
    }

    pub fn set_trunk(&self, name: &str, s: TrunkStatus) {
        let mut g = self.inner.write().unwrap_or_else(|p| p.into_inner());
        g.trunks.insert(name.to_string(), s);
    }

    /// Forgets a trunk (removed from the profiles on reload).
    pub fn remove_trunk(&self, name: &str) {
        let mut g = self.inner.write().unwrap_or_else(|p| p.into_inner());
        g.trunks.remove(name);
    }

    pub fn report(&self) -> HealthReport {
        let g = self.inner.read().unwrap_or_else(|p| p.into_inner());
        let ok = g.components.values().all(|r| *r == Readiness::Ready)
            && g.trunks.values().all(|t| *t == TrunkStatus::Up);
        HealthReport {
            status: if ok { "ok" } else { "degraded" }.to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            uptime_s: self.started.elapsed().as_secs(),
            components: g.components.clone(),
            trunks: g.trunks.clone(),
        }
    }
}
