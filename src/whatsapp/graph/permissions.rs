//! Call permissions: user identifiers (E.164 or BSUID), the `call_permissions` response,
//! the decision "may this business-initiated call start?", and a lookup cache with expiry
//! (sans-IO, time passed in) plus the async [`PermissionLookup`] the B2BUA uses, which
//! honours the call-permission API rate limit before asking Graph.
use super::client::GraphClient;
use super::error::GraphError;
use super::limits::RateLimiter;
use crate::whatsapp::errors::MetaCode;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// A WhatsApp user: E.164 digits (no `+`) or a business-scoped user id (`US.1349…`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum UserId {
    E164(String),
    Bsuid(String),
}

impl UserId {
    /// `+15551234567`, `15551234567`, or a BSUID such as `US.13491208655302741918`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let digits = s.strip_prefix('+').unwrap_or(s);
        if !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit()) {
            if (8..=15).contains(&digits.len()) {
                return Ok(UserId::E164(digits.to_string()));
            }
            return Err(format!(
                "{} is not an E.164 number (8 to 15 digits)",
                redact(s)
            ));
        }
        if let Some((cc, rest)) = s.split_once('.')
            && (2..=3).contains(&cc.len())
            && cc.chars().all(|c| c.is_ascii_uppercase())
            && !rest.is_empty()
            && rest.len() <= 64
            && rest.chars().all(|c| c.is_ascii_alphanumeric())
        {
            return Ok(UserId::Bsuid(s.to_string()));
        }
        Err(format!(
            "{} is neither an E.164 number nor a BSUID (CC.digits)",
            redact(s)
        ))
    }

    /// The query parameter of `call_permissions`.
    pub fn query_param(&self) -> String {
        match self {
            UserId::E164(d) => format!("user_wa_id={d}"),
            UserId::Bsuid(b) => format!("recipient={b}"),
        }
    }

    /// The raw id (digits or BSUID).
    pub fn as_str(&self) -> &str {
        match self {
            UserId::E164(d) | UserId::Bsuid(d) => d,
        }
    }

    /// For logs: all but the last 4 characters masked.
    pub fn redacted(&self) -> String {
        redact(self.as_str())
    }
}

/// Masks all but the last 4 characters (`crate::redact::phone`).
pub fn redact(s: &str) -> String {
    crate::redact::phone(s).to_string()
}

impl std::fmt::Display for UserId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UserId::E164(d) => write!(f, "+{d}"),
            UserId::Bsuid(b) => f.write_str(b),
        }
    }
}

/// `GET /{pnid}/call_permissions` response.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CallPermissions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messaging_product: Option<String>,
    pub permission: Permission,
    #[serde(default)]
    pub actions: Vec<PermissionAction>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Permission {
    /// `no_permission` | `temporary` | `permanent`.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration_time: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PermissionAction {
    /// `send_call_permission_request` | `start_call`.
    pub action_name: String,
    pub can_perform_action: bool,
    #[serde(default)]
    pub limits: Vec<ActionLimit>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ActionLimit {
    /// ISO 8601 duration: `PT24H`, `P7D`.
    pub time_period: String,
    pub max_allowed: u32,
    pub current_usage: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit_expiration_time: Option<i64>,
}

pub const ACTION_START_CALL: &str = "start_call";
pub const ACTION_SEND_REQUEST: &str = "send_call_permission_request";

impl CallPermissions {
    pub fn action(&self, name: &str) -> Option<&PermissionAction> {
        self.actions.iter().find(|a| a.action_name == name)
    }

    /// Whether the permission is in force at `now_unix`.
    pub fn has_permission(&self, now_unix: i64) -> bool {
        match self.permission.status.as_str() {
            "permanent" => true,
            "temporary" => self.permission.expiration_time.is_none_or(|t| t > now_unix),
            _ => false,
        }
    }

    /// May a business-initiated call start now? Refusals carry Meta's code (138006 no
    /// permission, 138012 the per-user call limit) so the B2BUA answers like Meta would.
    pub fn check_start_call(&self, now_unix: i64) -> Result<(), GraphError> {
        if !self.has_permission(now_unix) {
            let detail = match (
                self.permission.status.as_str(),
                self.permission.expiration_time,
            ) {
                ("temporary", Some(t)) => format!("temporary permission expired at {t}"),
                (s, _) => format!("permission status {s}"),
            };
            return Err(GraphError::Refused {
                code: MetaCode::NoCallPermission,
                detail,
            });
        }
        if let Some(a) = self.action(ACTION_START_CALL)
            && !a.can_perform_action
        {
            return Err(GraphError::Refused {
                code: MetaCode::DailyConnectedCallLimit,
                detail: limit_detail(a),
            });
        }
        Ok(())
    }

    /// May a permission request be sent now?
    pub fn check_send_request(&self, now_unix: i64) -> Result<(), GraphError> {
        if self.permission.status == "permanent" {
            return Err(GraphError::Refused {
                code: MetaCode::PermanentPermissionExists,
                detail: "the user already granted permanent permission".into(),
            });
        }
        let _ = now_unix;
        if let Some(a) = self.action(ACTION_SEND_REQUEST)
            && !a.can_perform_action
        {
            return Err(GraphError::Refused {
                code: MetaCode::PermissionRequestLimit,
                detail: limit_detail(a),
            });
        }
        Ok(())
    }
}

fn limit_detail(a: &PermissionAction) -> String {
    let parts: Vec<String> = a
        .limits
        .iter()
        .map(|l| {
            let until = l
                .limit_expiration_time
                .map(|t| format!(", until {t}"))
                .unwrap_or_default();
            format!(
                "{}: {}/{} used{until}",
                l.time_period, l.current_usage, l.max_allowed
            )
        })
        .collect();
    format!("{} not allowed now ({})", a.action_name, parts.join("; "))
}

/// Cache of permission lookups. An entry is fresh for `ttl` after it was fetched and never
/// past a temporary permission's expiry. Sans-IO: both clocks are passed in.
#[derive(Debug)]
pub struct PermissionCache {
    ttl: Duration,
    max_entries: usize,
    entries: HashMap<UserId, (Instant, CallPermissions)>,
}

impl PermissionCache {
    pub fn new(ttl: Duration, max_entries: usize) -> Self {
        PermissionCache {
            ttl,
            max_entries: max_entries.max(1),
            entries: HashMap::new(),
        }
    }

    pub fn get(&self, user: &UserId, now: Instant, now_unix: i64) -> Option<&CallPermissions> {
        let (at, p) = self.entries.get(user)?;
        if now.saturating_duration_since(*at) >= self.ttl {
            return None;
        }
        if p.permission.status == "temporary"
            && p.permission.expiration_time.is_some_and(|t| t <= now_unix)
        {
            return None;
        }
        Some(p)
    }

    pub fn insert(&mut self, user: UserId, perms: CallPermissions, now: Instant) {
        if self.entries.len() >= self.max_entries
            && !self.entries.contains_key(&user)
            && let Some(oldest) = self
                .entries
                .iter()
                .min_by_key(|(_, (at, _))| *at)
                .map(|(k, _)| k.clone())
        {
            self.entries.remove(&oldest);
        }
        self.entries.insert(user, (now, perms));
    }

    /// Forget a user (after a 403 from Meta, or a permission reply webhook).
    pub fn invalidate(&mut self, user: &UserId) {
        self.entries.remove(user);
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Permission lookups for the B2BUA: cache first, then Graph, within the call-permission
/// API rate limit (default 5 requests per second, the stricter documented figure).
#[derive(Debug)]
pub struct PermissionLookup {
    client: GraphClient,
    cache: tokio::sync::Mutex<PermissionCache>,
    limiter: tokio::sync::Mutex<RateLimiter>,
}

impl PermissionLookup {
    pub fn new(client: GraphClient, ttl: Duration, requests_per_second: u32) -> Self {
        PermissionLookup {
            client,
            cache: tokio::sync::Mutex::new(PermissionCache::new(ttl, 10_000)),
            limiter: tokio::sync::Mutex::new(RateLimiter::new(
                requests_per_second.max(1),
                Duration::from_secs(1),
            )),
        }
    }

    /// The user's permissions, from the cache when fresh.
    pub async fn lookup(&self, user: &UserId) -> Result<CallPermissions, GraphError> {
        {
            let cache = self.cache.lock().await;
            if let Some(p) = cache.get(user, Instant::now(), unix_now()) {
                return Ok(p.clone());
            }
        }
        loop {
            let wait = self.limiter.lock().await.try_acquire(Instant::now());
            match wait {
                Ok(()) => break,
                Err(w) => tokio::time::sleep(w).await,
            }
        }
        let perms = self.client.call_permissions(user).await?;
        self.cache
            .lock()
            .await
            .insert(user.clone(), perms.clone(), Instant::now());
        Ok(perms)
    }

    /// Ok when a business-initiated call to `user` may start; otherwise an error whose
    /// `sip_answer()` is what to tell the PBX (403 + `Meta 138006` …).
    pub async fn authorize_call(&self, user: &UserId) -> Result<(), GraphError> {
        self.lookup(user).await?.check_start_call(unix_now())
    }

    pub async fn invalidate(&self, user: &UserId) {
        self.cache.lock().await.invalidate(user);
    }
}

/// Seconds since the Unix epoch (shell helper).
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn perms(status: &str, exp: Option<i64>, can_call: bool) -> CallPermissions {
        CallPermissions {
            messaging_product: Some("whatsapp".into()),
            permission: Permission {
                status: status.into(),
                expiration_time: exp,
            },
            actions: vec![PermissionAction {
                action_name: ACTION_START_CALL.into(),
                can_perform_action: can_call,
                limits: vec![ActionLimit {
                    time_period: "PT24H".into(),
                    max_allowed: 100,
                    current_usage: if can_call { 1 } else { 100 },
                    limit_expiration_time: (!can_call).then_some(2_000),
                }],
            }],
        }
    }

    #[test]
    fn parses_e164_and_bsuid() {
        assert_eq!(
            UserId::parse("+15551234567").unwrap(),
            UserId::E164("15551234567".into())
        );
        assert_eq!(
            UserId::parse("15551234567").unwrap().query_param(),
            "user_wa_id=15551234567"
        );
        let b = UserId::parse("US.13491208655302741918").unwrap();
        assert_eq!(b.query_param(), "recipient=US.13491208655302741918");
        assert!(UserId::parse("+123").is_err());
        assert!(UserId::parse("hello").is_err());
        assert!(UserId::parse("us.123").is_err());
        assert_eq!(UserId::E164("15551234567".into()).redacted(), "*******4567");
    }

    #[test]
    fn start_call_decisions() {
        assert!(
            perms("permanent", None, true)
                .check_start_call(1_000)
                .is_ok()
        );
        assert!(
            perms("temporary", Some(1_001), true)
                .check_start_call(1_000)
                .is_ok()
        );
        let e = perms("temporary", Some(1_000), true)
            .check_start_call(1_000)
            .unwrap_err();
        assert_eq!(e.meta_code(), Some(MetaCode::NoCallPermission));
        assert_eq!(e.sip_answer().status, 403);
        let e = perms("no_permission", None, true)
            .check_start_call(1_000)
            .unwrap_err();
        assert_eq!(
            e.sip_answer().warning,
            "399 whatsip \"Meta 138006: no approved call permission\""
        );
        let e = perms("permanent", None, false)
            .check_start_call(1_000)
            .unwrap_err();
        assert_eq!(e.meta_code(), Some(MetaCode::DailyConnectedCallLimit));
        assert!(e.to_string().contains("PT24H: 100/100 used, until 2000"));
    }

    #[test]
    fn cache_expires_by_ttl_and_by_permission_expiry() {
        let t0 = Instant::now();
        let mut c = PermissionCache::new(Duration::from_secs(60), 2);
        let u = UserId::E164("15551234567".into());
        c.insert(u.clone(), perms("temporary", Some(1_100), true), t0);
        assert!(c.get(&u, t0 + Duration::from_secs(59), 1_000).is_some());
        assert!(c.get(&u, t0 + Duration::from_secs(60), 1_000).is_none());
        assert!(c.get(&u, t0, 1_100).is_none());
        c.insert(
            UserId::E164("15550000002".into()),
            perms("permanent", None, true),
            t0 + Duration::from_secs(1),
        );
        c.insert(
            UserId::E164("15550000003".into()),
            perms("permanent", None, true),
            t0 + Duration::from_secs(2),
        );
        assert_eq!(c.len(), 2);
        assert!(c.get(&u, t0, 1_000).is_none(), "oldest evicted");
        c.invalidate(&UserId::E164("15550000003".into()));
        assert_eq!(c.len(), 1);
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn user_id_parse_never_panics(s in "\\PC{0,40}") {
            if let Ok(u) = UserId::parse(&s) {
                // a parsed id re-parses to itself
                prop_assert_eq!(UserId::parse(&u.to_string()).ok(), Some(u));
            }
        }

        #[test]
        fn permissions_json_never_panics(s in "\\PC{0,200}") {
            let _ = serde_json::from_str::<CallPermissions>(&s);
        }
    }
}
