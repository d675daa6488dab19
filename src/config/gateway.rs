//! `kind = "gateway"`: process-wide settings (HTTP API, call records, RFC 3261 timers).
//! Optional; at most one per folder; [`GatewayConfig::default`] when absent.
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use toml::Spanned;

use super::common::{name_ok, parse_or};
use super::span::Diag;
use super::types::parse_socket_addr;

/// Process-wide settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayConfig {
    /// HTTP API (healthz, metrics, calls, records). Default `127.0.0.1:8080`.
    pub http_listen: SocketAddr,
    /// Call records SQLite file. Default `var/whatsip.db`.
    pub records_db: PathBuf,
    pub sip_timers: SipTimers,
    /// The file it came from (`None` = defaults).
    pub file: Option<PathBuf>,
}

/// RFC 3261 timer bases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SipTimers {
    pub t1: Duration,
    pub t2: Duration,
    pub t4: Duration,
}

impl Default for SipTimers {
    fn default() -> Self {
        SipTimers {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
        }
    }
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            http_listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            records_db: PathBuf::from("var/whatsip.db"),
            sip_timers: SipTimers::default(),
            file: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Raw {
    #[allow(dead_code)]
    kind: Spanned<String>,
    pub(crate) name: Spanned<String>,
    http_listen: Option<Spanned<String>>,
    records_db: Option<Spanned<PathBuf>>,
    sip_timers: Option<RawTimers>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTimers {
    t1_ms: Option<Spanned<i64>>,
    t2_ms: Option<Spanned<i64>>,
    t4_ms: Option<Spanned<i64>>,
}

fn ms(d: &mut Diag<'_>, field: &str, v: &Option<Spanned<i64>>, min: i64, default: u64) -> Duration {
    match v {
        None => Duration::from_millis(default),
        Some(x) if (min..=600_000).contains(x.get_ref()) => {
            Duration::from_millis(u64::try_from(*x.get_ref()).unwrap_or(default))
        }
        Some(x) => {
            d.err(
                Some(x.span()),
                field,
                format!("{} is out of range {min}..=600000", x.get_ref()),
            );
            Duration::from_millis(default)
        }
    }
}

impl Raw {
    pub(crate) fn build(self, d: &mut Diag<'_>) -> GatewayConfig {
        name_ok(d, &self.name);
        let def = GatewayConfig::default();
        let http_listen = parse_or(
            d,
            "http_listen",
            &self.http_listen,
            parse_socket_addr,
            def.http_listen,
        );
        let records_db = match &self.records_db {
            Some(p) if p.get_ref().as_os_str().is_empty() => {
                d.err(Some(p.span()), "records_db", "must not be empty");
                def.records_db
            }
            Some(p) => p.get_ref().clone(),
            None => def.records_db,
        };
        let t = self.sip_timers.unwrap_or(RawTimers {
            t1_ms: None,
            t2_ms: None,
            t4_ms: None,
        });
        let t1 = ms(d, "sip_timers.t1_ms", &t.t1_ms, 1, 500);
        let t2 = ms(d, "sip_timers.t2_ms", &t.t2_ms, 1, 4000);
        let t4 = ms(d, "sip_timers.t4_ms", &t.t4_ms, 1, 5000);
        if t2 < t1 {
            d.err(
                t.t2_ms.as_ref().map(Spanned::span),
                "sip_timers.t2_ms",
                format!(
                    "{} ms is below t1_ms ({} ms)",
                    t2.as_millis(),
                    t1.as_millis()
                ),
            );
        }
        GatewayConfig {
            http_listen,
            records_db,
            sip_timers: SipTimers { t1, t2, t4 },
            file: Some(d.file().to_path_buf()),
        }
    }
}
