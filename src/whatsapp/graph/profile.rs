//! Glue between the SIP profiles (`config::load_dir`) and the Graph commands: a business
//! number's Graph target, the calling settings its profile asks for, where its SIP password
//! lives and this gateway's SIP side. The library (`client`, `settings`, …) never reads
//! profiles; only the commands do, through here.
use super::client::{GraphTarget, Token};
use super::commands::{NumberContext, retry_from, token_source};
use super::settings::{CallHours, Holiday, SettingsInputs, WeeklyHours};
use crate::cli::{GraphArgs, LocalSipArgs};
use crate::config;
use std::path::PathBuf;
use std::time::Duration;

fn enum_str<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

fn key_exchange(k: config::KeyExchange) -> &'static str {
    match k {
        config::KeyExchange::Dtls => "DTLS",
        config::KeyExchange::Sdes => "SDES",
    }
}

/// The `calling` settings a number's profile asks for: `[numbers.calling]`, the SIP server
/// (`sip.public_host`/`public_port`, `request_uri_user_params`), key exchange and codecs.
pub fn settings_inputs(p: &config::WhatsAppProfile, n: &config::BusinessNumber) -> SettingsInputs {
    let calling = n.calling.as_ref();
    SettingsInputs {
        status: calling.and_then(|c| c.status).map(|s| enum_str(&s)),
        call_icon_visibility: calling
            .and_then(|c| c.call_icon_visibility)
            .map(|s| enum_str(&s)),
        callback_permission_status: calling
            .and_then(|c| c.callback_permission_status)
            .map(|s| enum_str(&s)),
        call_hours: calling
            .and_then(|c| c.call_hours.as_ref())
            .map(|ch| CallHours {
                status: Some(enum_str(&ch.status)),
                timezone_id: Some(ch.timezone_id.clone()),
                weekly_operating_hours: Some(
                    ch.weekly_operating_hours
                        .iter()
                        .map(|w| WeeklyHours {
                            day_of_week: enum_str(&w.day_of_week),
                            open_time: w.open_time.to_string(),
                            close_time: w.close_time.to_string(),
                        })
                        .collect(),
                ),
                holiday_schedule: Some(
                    ch.holiday_schedule
                        .iter()
                        .map(|h| Holiday {
                            date: h.date.to_string(),
                            start_time: h.start_time.to_string(),
                            end_time: h.end_time.to_string(),
                        })
                        .collect(),
                ),
            }),
        sip_status: Some("ENABLED".into()),
        sip_hostname: Some(p.sip.public_host.clone()),
        sip_port: Some(p.sip.public_port),
        request_uri_user_params: n.request_uri_user_params.clone(),
        srtp_key_exchange_protocol: Some(key_exchange(n.srtp_key_exchange).into()),
        additional_codecs: Some(
            n.additional_codecs
                .iter()
                .map(|c| {
                    match c {
                        config::G711::PCMA => "PCMA",
                        config::G711::PCMU => "PCMU",
                    }
                    .to_string()
                })
                .collect(),
        ),
    }
}

/// Resolves `digits` (or the only number, when `None`) from the profiles in `--profiles`
/// (default `sip-profiles`). Explicit flags override the profile's Graph settings.
pub fn resolve(digits: Option<String>, g: &GraphArgs) -> Result<NumberContext, String> {
    let dir = g
        .profiles
        .clone()
        .unwrap_or_else(|| PathBuf::from(config::DEFAULT_PROFILE_DIR));
    let cfg = config::load_dir(&dir).map_err(|errs| {
        let lines: Vec<String> = errs.iter().map(ToString::to_string).collect();
        format!(
            "{}: profiles do not load (run `whatsip check --profiles {}`):\n{}",
            dir.display(),
            dir.display(),
            lines.join("\n")
        )
    })?;
    let (p, n) = match &digits {
        Some(d) => cfg.number(d).ok_or_else(|| {
            format!(
                "+{d} is not a business number in {} (or give --phone-number-id)",
                dir.display()
            )
        })?,
        None => {
            let all: Vec<_> = cfg.numbers().collect();
            match all.as_slice() {
                [one] => *one,
                [] => return Err(format!("{}: no business numbers", dir.display())),
                _ => {
                    return Err(format!(
                        "{} serves several business numbers: give --number",
                        dir.display()
                    ));
                }
            }
        }
    };
    let token = match token_source(g) {
        Some(s) => s.resolve().map_err(|e| e.to_string())?,
        None => {
            let secret = p.graph.token.resolve().map_err(|e| {
                format!("{}: graph.token ({}): {e}", p.file.display(), p.graph.token)
            })?;
            Token::new(secret.expose())
        }
    };
    let password_file = match &n.sip_password {
        config::SecretSource::File(path) => Some(path.clone()),
        _ => None,
    };
    let cert = match &p.tls {
        config::TlsIdentity::Files { cert_chain, .. } => Some(cert_chain.clone()),
        _ => None,
    };
    Ok(NumberContext {
        digits: Some(n.digest_username().to_string()),
        target: GraphTarget {
            base_url: g
                .graph_url
                .clone()
                .unwrap_or_else(|| p.graph.base_url.clone()),
            api_version: g
                .api_version
                .clone()
                .unwrap_or_else(|| p.graph.api_version.clone()),
            token,
            phone_number_id: n.phone_number_id.clone(),
            timeout: Duration::from_secs(
                g.timeout_s.unwrap_or(u64::from(p.graph.timeout_s)).max(1),
            ),
            retry: retry_from(g, p.graph.retries),
        },
        profile_inputs: Some(settings_inputs(p, n)),
        password_file: password_file.clone(),
        local: LocalSipArgs {
            public_host: Some(p.sip.public_host.clone()),
            public_port: Some(p.sip.public_port),
            listen: Some(p.sip.listen),
            cert,
            media: Some(key_exchange(n.srtp_key_exchange).to_string()),
            password_file,
        },
    })
}
