//! In-memory state of the Graph twin: business numbers with their `calling` settings (SIP
//! server, generated SIP password), users with call permissions (E.164 and BSUID), sent
//! permission requests and their limits, and call starts. [`SandboxState`] is the shared
//! handle; the SIP edge twin reads [`SipTarget`]s and permissions from it, so `whatsip
//! settings push` really re-points where sandbox calls go.
use crate::whatsapp::errors::MetaCode;
use crate::whatsapp::graph::limits::{
    CALL_STARTS_PER_24H, CallStartCounter, PermissionRequestLimits,
};
use crate::whatsapp::graph::permissions::{
    ACTION_SEND_REQUEST, ACTION_START_CALL, ActionLimit, CallPermissions, Permission,
    PermissionAction,
};
use crate::whatsapp::graph::settings::{AudioSettings, CallingSettings, SipServer, SipSettings};
use sha2::Digest;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// Fixture choices.
#[derive(Debug, Clone)]
pub struct SandboxOptions {
    /// Seed for generated SIP passwords (deterministic when set).
    pub seed: Option<u64>,
    /// The gateway's public host (the fixture number's SIP server hostname); the shipped
    /// profile's `sip.public_host`.
    pub gateway_host: String,
    pub gateway_port: u16,
    /// Accepted bearer token.
    pub token: String,
    /// Connected business-initiated calls per pair per 24 h.
    pub connected_calls_per_day: u32,
}

impl Default for SandboxOptions {
    fn default() -> Self {
        SandboxOptions {
            seed: None,
            gateway_host: "gateway.whatsip.test".into(),
            gateway_port: 5061,
            token: "sandbox".into(),
            connected_calls_per_day: 100,
        }
    }
}

pub const FIXTURE_BUSINESS_E164: &str = "+15550001111";
pub const FIXTURE_PHONE_NUMBER_ID: &str = "106540352242922";
pub const FIXTURE_USER_PERMITTED: &str = "15551234567";
pub const FIXTURE_USER_PERMITTED_BSUID: &str = "US.13491208655302741918";
pub const FIXTURE_USER_NONE: &str = "15557654321";
pub const FIXTURE_USER_NONE_BSUID: &str = "US.13491208655302741919";

/// Where (and with which password) the SIP edge sends a business number's calls.
#[derive(Clone, PartialEq, Eq)]
pub struct SipTarget {
    pub phone_number_id: String,
    /// `+15550001111`
    pub e164: String,
    pub calling_enabled: bool,
    pub sip_enabled: bool,
    /// `None` when no server is configured.
    pub hostname: Option<String>,
    pub port: u16,
    pub request_uri_user_params: BTreeMap<String, String>,
    pub password: Option<String>,
    /// `DTLS` or `SDES`.
    pub srtp_key_exchange_protocol: String,
    pub additional_codecs: Vec<String>,
}

impl std::fmt::Debug for SipTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SipTarget")
            .field("phone_number_id", &self.phone_number_id)
            .field("sip_enabled", &self.sip_enabled)
            .field("hostname", &self.hostname)
            .field("port", &self.port)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone)]
pub struct BusinessNumber {
    pub e164: String,
    pub phone_number_id: String,
    pub calling: CallingSettings,
    password_generation: u64,
}

#[derive(Debug, Clone, Default)]
pub struct UserRecord {
    pub digits: String,
    pub bsuid: Option<String>,
    /// `no_permission` | `temporary` | `permanent`
    pub status: String,
    pub expiration_time: Option<i64>,
    /// Unix times of connected business-initiated calls.
    pub connected_calls: Vec<i64>,
}

/// A permission request the twin received.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SentMessage {
    pub id: String,
    pub phone_number_id: String,
    pub to: String,
    pub body: String,
    pub timestamp: i64,
}

#[derive(Debug)]
pub struct TwinState {
    pub options: SandboxOptions,
    seed: u64,
    pub numbers: BTreeMap<String, BusinessNumber>,
    /// keyed by digits
    pub users: BTreeMap<String, UserRecord>,
    pub request_limits: PermissionRequestLimits,
    pub call_starts: CallStartCounter,
    pub messages: Vec<SentMessage>,
    pub calls: Vec<String>,
    next_id: u64,
}

/// Shared handle to the twin's state (cheap to clone).
#[derive(Debug, Clone)]
pub struct SandboxState(Arc<Mutex<TwinState>>);

fn digits(s: &str) -> String {
    s.trim().trim_start_matches('+').to_string()
}

impl SandboxState {
    /// The default fixture (design §3).
    pub fn new(options: SandboxOptions) -> Self {
        let seed = options.seed.unwrap_or_else(|| {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0);
            t ^ u64::from(std::process::id()).rotate_left(32)
        });
        let mut st = TwinState {
            seed,
            numbers: BTreeMap::new(),
            users: BTreeMap::new(),
            request_limits: PermissionRequestLimits::default(),
            call_starts: CallStartCounter::new(CALL_STARTS_PER_24H),
            messages: Vec::new(),
            calls: Vec::new(),
            next_id: 1,
            options,
        };
        let calling = CallingSettings {
            status: Some("ENABLED".into()),
            call_icon_visibility: Some("DEFAULT".into()),
            callback_permission_status: Some("ENABLED".into()),
            sip: Some(SipSettings {
                status: Some("ENABLED".into()),
                servers: Some(vec![SipServer {
                    hostname: st.options.gateway_host.clone(),
                    port: Some(st.options.gateway_port),
                    request_uri_user_params: None,
                    sip_user_password: None,
                    app_id: Some(SANDBOX_APP_ID.into()),
                }]),
                other: BTreeMap::new(),
            }),
            // the shipped sandbox profile uses SDES toward the sandbox edge
            srtp_key_exchange_protocol: Some("SDES".into()),
            audio: Some(AudioSettings {
                additional_codecs: Some(vec!["PCMA".into(), "PCMU".into()]),
            }),
            ..Default::default()
        };
        let mut n = BusinessNumber {
            e164: FIXTURE_BUSINESS_E164.into(),
            phone_number_id: FIXTURE_PHONE_NUMBER_ID.into(),
            calling,
            password_generation: 0,
        };
        st.ensure_password(&mut n);
        st.numbers.insert(n.phone_number_id.clone(), n);
        st.users.insert(
            FIXTURE_USER_PERMITTED.into(),
            UserRecord {
                digits: FIXTURE_USER_PERMITTED.into(),
                bsuid: Some(FIXTURE_USER_PERMITTED_BSUID.into()),
                status: "permanent".into(),
                ..Default::default()
            },
        );
        st.users.insert(
            FIXTURE_USER_NONE.into(),
            UserRecord {
                digits: FIXTURE_USER_NONE.into(),
                bsuid: Some(FIXTURE_USER_NONE_BSUID.into()),
                status: "no_permission".into(),
                ..Default::default()
            },
        );
        SandboxState(Arc::new(Mutex::new(st)))
    }

    /// Locks the state (poisoning is ignored: the twin's state stays usable).
    pub fn lock(&self) -> MutexGuard<'_, TwinState> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The SIP target of a business number, by `+E164`, E.164 digits or phone_number_id.
    pub fn sip_target(&self, business: &str) -> Option<SipTarget> {
        let st = self.lock();
        st.find_number(business).map(TwinState::target_of)
    }

    /// Every business number's SIP target.
    pub fn sip_targets(&self) -> Vec<SipTarget> {
        self.lock()
            .numbers
            .values()
            .map(TwinState::target_of)
            .collect()
    }

    /// The user's call permissions toward a business number, as `call_permissions` returns
    /// them. `user` is E.164 (with or without `+`) or a BSUID.
    pub fn permission(&self, business: &str, user: &str, now_unix: i64) -> Option<CallPermissions> {
        let st = self.lock();
        let n = st.find_number(business)?;
        Some(st.permissions_of(&n.phone_number_id, user, now_unix))
    }

    /// Sets a user's permission (`no_permission` | `temporary` | `permanent`); a temporary
    /// permission without expiry lasts 168 h from `now_unix`. Unknown users are created.
    pub fn set_permission(
        &self,
        user: &str,
        status: &str,
        expiration_time: Option<i64>,
        now_unix: i64,
    ) -> Result<(), String> {
        if !["no_permission", "temporary", "permanent"].contains(&status) {
            return Err(format!("unknown permission status {status:?}"));
        }
        let mut st = self.lock();
        let key = st.user_key(user).unwrap_or_else(|| digits(user));
        if key.is_empty() {
            return Err("empty user".into());
        }
        let rec = st.users.entry(key.clone()).or_insert_with(|| UserRecord {
            digits: key.clone(),
            ..Default::default()
        });
        rec.status = status.to_string();
        rec.expiration_time = match status {
            "temporary" => Some(expiration_time.unwrap_or(now_unix + 168 * 3600)),
            _ => None,
        };
        Ok(())
    }

    /// For the SIP edge: may `business` start a call to `user` now? `Err` carries Meta's code
    /// (138006 no permission, 138012 daily limit, 138005 start limit).
    pub fn authorize_business_call(
        &self,
        business: &str,
        user: &str,
        now_unix: i64,
    ) -> Result<(), MetaCode> {
        let mut st = self.lock();
        let pnid = st
            .find_number(business)
            .map(|n| n.phone_number_id.clone())
            .ok_or(MetaCode::InvalidParameter)?;
        let p = st.permissions_of(&pnid, user, now_unix);
        if let Err(e) = p.check_start_call(now_unix) {
            return Err(e.meta_code().unwrap_or(MetaCode::NoCallPermission));
        }
        st.call_starts
            .try_start(&pnid, now_unix)
            .map(|_| ())
            .map_err(|_| MetaCode::CallRateLimit)
    }

    /// For the SIP edge: a business-initiated call to `user` connected (counts toward the
    /// daily limit and resets the permission-request count).
    pub fn record_connected_call(&self, business: &str, user: &str, now_unix: i64) {
        let mut st = self.lock();
        let Some(pnid) = st.find_number(business).map(|n| n.phone_number_id.clone()) else {
            return;
        };
        if let Some(key) = st.user_key(user) {
            if let Some(u) = st.users.get_mut(&key) {
                u.connected_calls.push(now_unix);
            }
            st.request_limits.reset(&format!("{pnid}/{key}"));
        }
    }
}

pub const SANDBOX_APP_ID: &str = "1000000000000001";

impl TwinState {
    pub fn now_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    pub fn find_number(&self, business: &str) -> Option<&BusinessNumber> {
        let d = digits(business);
        self.numbers
            .get(&d)
            .or_else(|| self.numbers.values().find(|n| digits(&n.e164) == d))
    }

    /// The users-table key for an E.164 (any form) or BSUID.
    pub fn user_key(&self, user: &str) -> Option<String> {
        let d = digits(user);
        if self.users.contains_key(&d) {
            return Some(d);
        }
        self.users
            .values()
            .find(|u| u.bsuid.as_deref() == Some(user.trim()))
            .map(|u| u.digits.clone())
    }

    fn target_of(n: &BusinessNumber) -> SipTarget {
        let server = n.calling.sip_server();
        SipTarget {
            phone_number_id: n.phone_number_id.clone(),
            e164: n.e164.clone(),
            calling_enabled: n.calling.calling_enabled(),
            sip_enabled: n.calling.sip_enabled(),
            hostname: server.map(|s| s.hostname.clone()),
            port: server.and_then(|s| s.port).unwrap_or(5061),
            request_uri_user_params: server
                .and_then(|s| s.request_uri_user_params.clone())
                .unwrap_or_default(),
            password: server.and_then(|s| s.sip_user_password.clone()),
            srtp_key_exchange_protocol: n.calling.key_exchange().to_string(),
            additional_codecs: n
                .calling
                .audio
                .as_ref()
                .and_then(|a| a.additional_codecs.clone())
                .unwrap_or_default(),
        }
    }

    /// Gives the number's SIP server a password if it has none (Meta generates one per
    /// number + app; deterministic from the seed and the number's password generation).
    pub fn ensure_password(&self, n: &mut BusinessNumber) {
        let seed = self.seed;
        let pnid = n.phone_number_id.clone();
        let generation = n.password_generation;
        if let Some(servers) = n.calling.sip.as_mut().and_then(|s| s.servers.as_mut()) {
            for s in servers.iter_mut() {
                if s.sip_user_password.is_none() {
                    let mut h = sha2::Sha256::new();
                    h.update(seed.to_be_bytes());
                    h.update(pnid.as_bytes());
                    h.update(generation.to_be_bytes());
                    let hexed = hex::encode(h.finalize());
                    s.sip_user_password = Some(hexed.chars().take(32).collect());
                }
            }
        }
    }

    /// Applies a validated `calling` POST the way Meta does: fields present replace, absent
    /// ones stay; `call_hours` is replaced whole; `sip.servers: []` drops our server and its
    /// password (re-adding generates a new password); a re-pointed server keeps its password.
    pub fn apply_settings(&mut self, pnid: &str, body: CallingSettings) -> bool {
        let Some(mut n) = self.numbers.remove(pnid) else {
            return false;
        };
        let c = &mut n.calling;
        if body.status.is_some() {
            c.status = body.status;
        }
        if body.call_icon_visibility.is_some() {
            c.call_icon_visibility = body.call_icon_visibility;
        }
        if body.callback_permission_status.is_some() {
            c.callback_permission_status = body.callback_permission_status;
        }
        if body.call_hours.is_some() {
            c.call_hours = body.call_hours;
        }
        if body.srtp_key_exchange_protocol.is_some() {
            c.srtp_key_exchange_protocol = body.srtp_key_exchange_protocol;
        }
        if let Some(audio) = body.audio {
            c.audio = Some(audio);
        }
        for (k, v) in body.other {
            c.other.insert(k, v);
        }
        if let Some(sip) = body.sip {
            let cur = c.sip.get_or_insert_with(SipSettings::default);
            if sip.status.is_some() {
                cur.status = sip.status;
            }
            if let Some(servers) = sip.servers {
                let old_password = cur
                    .servers
                    .as_ref()
                    .and_then(|s| s.first())
                    .and_then(|s| s.sip_user_password.clone());
                if servers.is_empty() {
                    cur.servers = Some(Vec::new());
                    n.password_generation += 1;
                } else {
                    let mut s = servers.into_iter().next().unwrap_or_default();
                    s.sip_user_password = old_password;
                    s.app_id = Some(SANDBOX_APP_ID.into());
                    if s.port.is_none() {
                        s.port = Some(5061);
                    }
                    cur.servers = Some(vec![s]);
                }
            }
        }
        self.ensure_password(&mut n);
        self.numbers.insert(pnid.to_string(), n);
        true
    }

    pub fn permissions_of(&self, pnid: &str, user: &str, now_unix: i64) -> CallPermissions {
        let rec = self
            .user_key(user)
            .and_then(|k| self.users.get(&k).cloned());
        let (status, expiration_time, connected, key) = match &rec {
            Some(u) => {
                let expired =
                    u.status == "temporary" && u.expiration_time.is_some_and(|t| t <= now_unix);
                let status = if expired {
                    "no_permission"
                } else {
                    u.status.as_str()
                };
                (
                    status.to_string(),
                    if expired { None } else { u.expiration_time },
                    u.connected_calls
                        .iter()
                        .filter(|t| now_unix - **t < 24 * 3600)
                        .copied()
                        .collect::<Vec<_>>(),
                    u.digits.clone(),
                )
            }
            None => ("no_permission".to_string(), None, Vec::new(), digits(user)),
        };
        let pair = format!("{pnid}/{key}");
        let usage = self.request_limits.usage(&pair, now_unix);
        let request_limits: Vec<ActionLimit> = usage
            .iter()
            .map(|u| ActionLimit {
                time_period: u.time_period.into(),
                max_allowed: u.max_allowed,
                current_usage: u.current_usage,
                limit_expiration_time: u.expires_at,
            })
            .collect();
        let max_calls = self.options.connected_calls_per_day;
        let used_calls = connected.len() as u32;
        let has = status == "permanent" || status == "temporary";
        CallPermissions {
            messaging_product: Some("whatsapp".into()),
            permission: Permission {
                status,
                expiration_time,
            },
            actions: vec![
                PermissionAction {
                    action_name: ACTION_SEND_REQUEST.into(),
                    can_perform_action: self.request_limits.allowed(&pair, now_unix),
                    limits: request_limits,
                },
                PermissionAction {
                    action_name: ACTION_START_CALL.into(),
                    can_perform_action: has && used_calls < max_calls,
                    limits: vec![ActionLimit {
                        time_period: "PT24H".into(),
                        max_allowed: max_calls,
                        current_usage: used_calls,
                        limit_expiration_time: (used_calls >= max_calls).then(|| {
                            connected.iter().min().copied().unwrap_or(now_unix) + 24 * 3600
                        }),
                    }],
                },
            ],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixture_and_deterministic_password() {
        let opts = SandboxOptions {
            seed: Some(7),
            ..Default::default()
        };
        let a = SandboxState::new(opts.clone());
        let b = SandboxState::new(opts);
        let ta = a.sip_target("+15550001111").unwrap();
        assert_eq!(ta, b.sip_target("106540352242922").unwrap());
        assert_eq!(ta.hostname.as_deref(), Some("gateway.whatsip.test"));
        assert_eq!(ta.port, 5061);
        assert_eq!(ta.additional_codecs, vec!["PCMA", "PCMU"]);
        assert_eq!(ta.password.as_ref().map(String::len), Some(32));
        assert!(!format!("{ta:?}").contains(ta.password.as_deref().unwrap()));
        let p = a.permission("+15550001111", "+15551234567", 0).unwrap();
        assert_eq!(p.permission.status, "permanent");
        let p = a
            .permission("+15550001111", FIXTURE_USER_NONE_BSUID, 0)
            .unwrap();
        assert_eq!(p.permission.status, "no_permission");
        assert_eq!(
            a.authorize_business_call("+15550001111", "+15557654321", 0),
            Err(MetaCode::NoCallPermission)
        );
        assert_eq!(
            a.authorize_business_call("+15550001111", "+15551234567", 0),
            Ok(())
        );
    }

    #[test]
    fn temporary_permission_expires() {
        let s = SandboxState::new(SandboxOptions::default());
        s.set_permission("+15557654321", "temporary", None, 1_000)
            .unwrap();
        let p = s
            .permission("106540352242922", "15557654321", 1_000)
            .unwrap();
        assert_eq!(p.permission.expiration_time, Some(1_000 + 168 * 3600));
        let p = s
            .permission("106540352242922", "15557654321", 1_000 + 168 * 3600)
            .unwrap();
        assert_eq!(p.permission.status, "no_permission");
    }

    #[test]
    fn servers_cleared_then_readded_gets_new_password() {
        let s = SandboxState::new(SandboxOptions {
            seed: Some(1),
            ..Default::default()
        });
        let before = s.sip_target("+15550001111").unwrap().password;
        let mut st = s.lock();
        let clear: CallingSettings = serde_json::from_value(serde_json::json!(
            {"status":"DISABLED","sip":{"status":"DISABLED","servers":[]}}))
        .unwrap();
        st.apply_settings("106540352242922", clear);
        let add: CallingSettings = serde_json::from_value(serde_json::json!(
            {"status":"ENABLED","sip":{"status":"ENABLED","servers":[{"hostname":"gw.example.com"}]}})).unwrap();
        st.apply_settings("106540352242922", add);
        drop(st);
        let t = s.sip_target("+15550001111").unwrap();
        assert_eq!(t.hostname.as_deref(), Some("gw.example.com"));
        assert!(t.password.is_some());
        assert_ne!(t.password, before);
    }
}
