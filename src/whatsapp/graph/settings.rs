//! The `calling` settings block of `/{phone_number_id}/settings` as Graph sends and takes it,
//! built from plain inputs (`SettingsInputs`), validated locally with the seeds' rules and
//! wording before a POST, diffed against Meta's current settings, and the SIP password stored
//! in a file of mode 0600. Strings stay strings on the wire types so a body that breaks a
//! rule can still be represented (and refused with the right message).
use super::call_hours::{self, MSG_INVALID_STATUS, Violation};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

/// `GET /{pnid}/settings` response: `calling` plus whatever else Graph returns.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct SettingsDocument {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calling: Option<CallingSettings>,
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct CallingSettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_icon_visibility: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_hours: Option<CallHours>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback_permission_status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sip: Option<SipSettings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub srtp_key_exchange_protocol: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audio: Option<AudioSettings>,
    /// Fields whatsip does not model (kept on round trips).
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct CallHours {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weekly_operating_hours: Option<Vec<WeeklyHours>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holiday_schedule: Option<Vec<Holiday>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct WeeklyHours {
    #[serde(default)]
    pub day_of_week: String,
    #[serde(default)]
    pub open_time: String,
    #[serde(default)]
    pub close_time: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Holiday {
    #[serde(default)]
    pub date: String,
    #[serde(default)]
    pub start_time: String,
    #[serde(default)]
    pub end_time: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct SipSettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub servers: Option<Vec<SipServer>>,
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

#[derive(Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct SipServer {
    #[serde(default)]
    pub hostname: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_uri_user_params: Option<BTreeMap<String, String>>,
    /// Only in GET `?include_sip_credentials=true`. Never printed by `Debug`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sip_user_password: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_id: Option<String>,
}

impl std::fmt::Debug for SipServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SipServer")
            .field("hostname", &self.hostname)
            .field("port", &self.port)
            .field("request_uri_user_params", &self.request_uri_user_params)
            .field(
                "sip_user_password",
                &self.sip_user_password.as_ref().map(|_| "***"),
            )
            .field("app_id", &self.app_id)
            .finish()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct AudioSettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub additional_codecs: Option<Vec<String>>,
}

impl CallingSettings {
    /// The first SIP server (Meta allows one per app).
    pub fn sip_server(&self) -> Option<&SipServer> {
        self.sip.as_ref()?.servers.as_ref()?.first()
    }
    pub fn sip_enabled(&self) -> bool {
        self.sip.as_ref().and_then(|s| s.status.as_deref()) == Some("ENABLED")
    }
    pub fn calling_enabled(&self) -> bool {
        self.status.as_deref() == Some("ENABLED")
    }
    /// Effective key exchange: Meta omits it unless set; the default is DTLS.
    pub fn key_exchange(&self) -> &str {
        self.srtp_key_exchange_protocol.as_deref().unwrap_or("DTLS")
    }
    /// A copy without any SIP password (for display and diffs).
    pub fn without_secrets(&self) -> CallingSettings {
        let mut c = self.clone();
        if let Some(servers) = c.sip.as_mut().and_then(|s| s.servers.as_mut()) {
            for s in servers {
                s.sip_user_password = None;
            }
        }
        c
    }
}

/// Plain inputs a `calling` body is built from (the CLI fills it from a whatsapp profile or
/// from flags).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SettingsInputs {
    pub status: Option<String>,
    pub call_icon_visibility: Option<String>,
    pub callback_permission_status: Option<String>,
    pub call_hours: Option<CallHours>,
    /// `calling.sip.status`; default ENABLED when a hostname is given.
    pub sip_status: Option<String>,
    pub sip_hostname: Option<String>,
    pub sip_port: Option<u16>,
    pub request_uri_user_params: BTreeMap<String, String>,
    /// `SDES` or `DTLS`.
    pub srtp_key_exchange_protocol: Option<String>,
    pub additional_codecs: Option<Vec<String>>,
}

impl SettingsInputs {
    pub fn build(&self) -> CallingSettings {
        let sip = if self.sip_hostname.is_some() || self.sip_status.is_some() {
            Some(SipSettings {
                status: Some(
                    self.sip_status
                        .clone()
                        .unwrap_or_else(|| "ENABLED".to_string()),
                ),
                servers: self.sip_hostname.as_ref().map(|h| {
                    vec![SipServer {
                        hostname: h.clone(),
                        port: Some(self.sip_port.unwrap_or(5061)),
                        request_uri_user_params: (!self.request_uri_user_params.is_empty())
                            .then(|| self.request_uri_user_params.clone()),
                        sip_user_password: None,
                        app_id: None,
                    }]
                }),
                other: BTreeMap::new(),
            })
        } else {
            None
        };
        CallingSettings {
            status: self.status.clone(),
            call_icon_visibility: self.call_icon_visibility.clone(),
            call_hours: self.call_hours.clone(),
            callback_permission_status: self.callback_permission_status.clone(),
            sip,
            srtp_key_exchange_protocol: self.srtp_key_exchange_protocol.clone(),
            audio: self.additional_codecs.as_ref().map(|c| AudioSettings {
                additional_codecs: Some(c.clone()),
            }),
            other: BTreeMap::new(),
        }
    }
}

/// A settings rule broken, with the field it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingsIssue {
    pub field: &'static str,
    pub violation: Violation,
}

impl std::fmt::Display for SettingsIssue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.violation)
    }
}

fn one_of(
    out: &mut Vec<SettingsIssue>,
    field: &'static str,
    value: &Option<String>,
    allowed: &[&str],
) {
    if let Some(v) = value
        && !allowed.contains(&v.as_str())
    {
        out.push(SettingsIssue {
            field,
            violation: Violation {
                message: MSG_INVALID_STATUS,
                detail: format!("{field} {v:?} is not one of {}", allowed.join(", ")),
            },
        });
    }
}

fn issue(out: &mut Vec<SettingsIssue>, field: &'static str, message: &'static str, d: String) {
    out.push(SettingsIssue {
        field,
        violation: Violation { message, detail: d },
    });
}

pub const MSG_INVALID_PARAMETER: &str = "Invalid parameter";

/// Every local rule for a `calling` body. Empty = valid.
pub fn validate(c: &CallingSettings, now: Timestamp) -> Vec<SettingsIssue> {
    let mut out = Vec::new();
    one_of(&mut out, "status", &c.status, &["ENABLED", "DISABLED"]);
    one_of(
        &mut out,
        "call_icon_visibility",
        &c.call_icon_visibility,
        &["DEFAULT", "DISABLE_ALL", "HIDE_IN_CHAT"],
    );
    one_of(
        &mut out,
        "callback_permission_status",
        &c.callback_permission_status,
        &["ENABLED", "DISABLED"],
    );
    one_of(
        &mut out,
        "srtp_key_exchange_protocol",
        &c.srtp_key_exchange_protocol,
        &["DTLS", "SDES"],
    );
    if let Some(ch) = &c.call_hours {
        for violation in call_hours::validate(ch, now) {
            out.push(SettingsIssue {
                field: "call_hours",
                violation,
            });
        }
    }
    if let Some(sip) = &c.sip {
        one_of(
            &mut out,
            "sip.status",
            &sip.status,
            &["ENABLED", "DISABLED"],
        );
        let servers = sip.servers.as_deref().unwrap_or(&[]);
        if servers.len() > 1 {
            issue(
                &mut out,
                "sip.servers",
                MSG_INVALID_PARAMETER,
                format!("{} servers given; Meta allows one per app", servers.len()),
            );
        }
        for s in servers {
            if s.hostname.is_empty() {
                issue(
                    &mut out,
                    "sip.servers.hostname",
                    MSG_INVALID_PARAMETER,
                    "hostname is required".into(),
                );
            } else if !valid_hostname(&s.hostname) {
                issue(
                    &mut out,
                    "sip.servers.hostname",
                    MSG_INVALID_PARAMETER,
                    format!("{:?} is not a host name", s.hostname),
                );
            }
            if s.port == Some(0) {
                issue(
                    &mut out,
                    "sip.servers.port",
                    MSG_INVALID_PARAMETER,
                    "port 0".into(),
                );
            }
            for (k, val) in s.request_uri_user_params.iter().flatten() {
                if k.is_empty() || k.chars().count() > 128 || val.chars().count() > 128 {
                    issue(
                        &mut out,
                        "sip.servers.request_uri_user_params",
                        MSG_INVALID_PARAMETER,
                        format!("{k:?}: keys and values must be 1..=128 characters"),
                    );
                }
            }
        }
    }
    if let Some(codecs) = c.audio.as_ref().and_then(|a| a.additional_codecs.as_ref()) {
        for codec in codecs {
            if codec != "PCMA" && codec != "PCMU" {
                issue(
                    &mut out,
                    "audio.additional_codecs",
                    MSG_INVALID_PARAMETER,
                    format!("{codec:?} is not PCMA or PCMU"),
                );
            }
        }
    }
    out
}

fn valid_hostname(h: &str) -> bool {
    h.len() <= 253
        && h.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// One changed leaf: JSON path, Meta's current value, the new value (`None` = absent).
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub path: String,
    pub current: Option<Value>,
    pub desired: Option<Value>,
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.current, &self.desired) {
            (None, Some(d)) => write!(f, "+ {}: {d}", self.path),
            (Some(c), None) => write!(f, "- {}: {c}", self.path),
            (Some(c), Some(d)) => write!(f, "~ {}: {c} -> {d}", self.path),
            (None, None) => Ok(()),
        }
    }
}

/// What a POST of `desired` changes in `current`. Top-level fields absent from `desired` are
/// left alone by Meta, so they are not reported — except `call_hours.holiday_schedule`,
/// which a POST with `call_hours` but without holidays deletes. Passwords never appear.
pub fn diff(current: &CallingSettings, desired: &CallingSettings) -> Vec<Change> {
    let comparable = |c: &CallingSettings| {
        let mut c = c.without_secrets();
        // app_id is Meta's (read-only, from the token): never part of a change
        if let Some(servers) = c.sip.as_mut().and_then(|s| s.servers.as_mut()) {
            for s in servers {
                s.app_id = None;
            }
        }
        serde_json::to_value(c).unwrap_or(Value::Null)
    };
    let cur = comparable(current);
    let des = comparable(desired);
    let mut out = Vec::new();
    if let (Value::Object(c), Value::Object(d)) = (&cur, &des) {
        for (k, dv) in d {
            let mut cv = c.get(k).cloned();
            if k == "call_hours"
                && let (Some(Value::Object(co)), Value::Object(dobj)) = (&mut cv, dv)
                && !dobj.contains_key("holiday_schedule")
            {
                // holiday_schedule omitted in the POST = deleted at Meta
                if let Some(h) = co.get("holiday_schedule") {
                    out.push(Change {
                        path: "calling.call_hours.holiday_schedule".into(),
                        current: Some(h.clone()),
                        desired: None,
                    });
                }
                co.remove("holiday_schedule");
            }
            walk(&format!("calling.{k}"), cv.as_ref(), Some(dv), &mut out);
        }
    }
    out
}

fn walk(path: &str, c: Option<&Value>, d: Option<&Value>, out: &mut Vec<Change>) {
    match (c, d) {
        (Some(Value::Object(co)), Some(Value::Object(dobj))) => {
            let keys: std::collections::BTreeSet<&String> = co.keys().chain(dobj.keys()).collect();
            for k in keys {
                walk(&format!("{path}.{k}"), co.get(k), dobj.get(k), out);
            }
        }
        (Some(Value::Array(ca)), Some(Value::Array(da))) if ca.len() == da.len() => {
            for (i, (cv, dv)) in ca.iter().zip(da).enumerate() {
                walk(&format!("{path}[{i}]"), Some(cv), Some(dv), out);
            }
        }
        (c, d) if c != d => out.push(Change {
            path: path.to_string(),
            current: c.cloned(),
            desired: d.cloned(),
        }),
        _ => {}
    }
}

/// Writes the SIP password to `path` with mode 0600 (created 0600, never world-readable even
/// for an instant), replacing it atomically. Creates the parent folder (0700) if missing.
pub fn store_password(path: &Path, password: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && !dir.exists()
    {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "password".into());
    let tmp = path.with_file_name(format!(".{file_name}.tmp{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    f.write_all(password.as_bytes())?;
    f.write_all(b"\n")?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        "2026-11-22T03:00:00Z".parse().unwrap()
    }

    #[test]
    fn builds_the_documented_body() {
        let mut params = BTreeMap::new();
        params.insert("tgrp".to_string(), "wacall".to_string());
        let body = SettingsInputs {
            status: Some("ENABLED".into()),
            sip_hostname: Some("sip.example.com".into()),
            sip_port: Some(5061),
            request_uri_user_params: params,
            srtp_key_exchange_protocol: Some("SDES".into()),
            additional_codecs: Some(vec!["PCMA".into(), "PCMU".into()]),
            ..Default::default()
        }
        .build();
        let j = serde_json::to_value(&body).unwrap();
        assert_eq!(
            j,
            serde_json::json!({"status":"ENABLED","sip":{"status":"ENABLED","servers":[{"hostname":"sip.example.com","port":5061,"request_uri_user_params":{"tgrp":"wacall"}}]},"srtp_key_exchange_protocol":"SDES","audio":{"additional_codecs":["PCMA","PCMU"]}})
        );
        assert!(validate(&body, now()).is_empty());
    }

    #[test]
    fn refuses_bad_enums_codecs_and_hosts() {
        let mut body = CallingSettings {
            status: Some("ON".into()),
            srtp_key_exchange_protocol: Some("ZRTP".into()),
            audio: Some(AudioSettings {
                additional_codecs: Some(vec!["G729".into()]),
            }),
            ..Default::default()
        };
        body.sip = Some(SipSettings {
            status: Some("ENABLED".into()),
            servers: Some(vec![SipServer {
                hostname: "bad host".into(),
                ..Default::default()
            }]),
            other: BTreeMap::new(),
        });
        let issues = validate(&body, now());
        let fields: Vec<_> = issues.iter().map(|i| i.field).collect();
        assert_eq!(
            fields,
            vec![
                "status",
                "srtp_key_exchange_protocol",
                "sip.servers.hostname",
                "audio.additional_codecs"
            ]
        );
        assert_eq!(issues[0].violation.message, "Invalid status");
    }

    #[test]
    fn diff_reports_changes_and_holiday_deletion_never_passwords() {
        let cur: CallingSettings = serde_json::from_value(serde_json::json!({
            "status":"ENABLED",
            "call_hours":{"status":"ENABLED","timezone_id":"UTC","weekly_operating_hours":[{"day_of_week":"MONDAY","open_time":"0900","close_time":"1700"}],"holiday_schedule":[{"date":"2026-12-25","start_time":"0000","end_time":"2359"}]},
            "sip":{"status":"ENABLED","servers":[{"hostname":"old.example.com","port":5061,"sip_user_password":"s3cret"}]}
        })).unwrap();
        let mut des = cur.without_secrets();
        des.sip.as_mut().unwrap().servers.as_mut().unwrap()[0].hostname = "new.example.com".into();
        des.call_hours.as_mut().unwrap().holiday_schedule = None;
        let d: Vec<String> = diff(&cur, &des).iter().map(|c| c.to_string()).collect();
        assert!(d.contains(&"- calling.call_hours.holiday_schedule: [{\"date\":\"2026-12-25\",\"end_time\":\"2359\",\"start_time\":\"0000\"}]".to_string()), "{d:?}");
        assert!(
            d.contains(
                &"~ calling.sip.servers[0].hostname: \"old.example.com\" -> \"new.example.com\""
                    .to_string()
            ),
            "{d:?}"
        );
        assert!(!d.iter().any(|l| l.contains("s3cret")));
        assert_eq!(d.len(), 2, "{d:?}");
        assert!(!format!("{cur:?}").contains("s3cret"));
    }

    #[test]
    fn password_file_is_0600() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("secrets/pw.sip");
        store_password(&p, "hunter2").unwrap();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "hunter2\n");
        store_password(&p, "again").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "again\n");
    }
}
