//! Meta's SIP edge rules for WhatsApp calls (`whatsapp-calling.md` §1.2–§1.5, design §4):
//! how WhatsApp users are addressed (E.164 or BSUID), the Request-URI / From / To / Contact
//! forms Meta accepts, the methods Meta allows, and the `x-wa-meta-*` headers we read and
//! pass on to the PBX.
//!
//! Guarantees: every function is pure and total (bad input gives `None`, never a panic);
//! URIs toward Meta are always `sip:` with `;transport=tls` (never `sips:`); BSUIDs are
//! carried as written, never rejected and never given a `+`; values copied into PBX-side
//! headers are stripped of control characters and capped at [`MAX_PASSED_VALUE`] bytes.
//!
//! PBX-side header names (user-initiated calls, on the INVITE toward the PBX):
//!
//! | PBX header              | from Meta's INVITE                                   |
//! |-------------------------|------------------------------------------------------|
//! | `X-WA-Call-Id`          | `x-wa-meta-wacid`                                    |
//! | `X-WA-User-Id`          | `x-wa-meta-user-id` (the caller's BSUID)             |
//! | `X-WA-Parent-User-Id`   | `x-wa_meta-parent-user-id` / `x-wa-meta-parent-user-id` |
//! | `X-WA-User-Name`        | `x-wa-meta-user-name` / `x-wa-meta-username`         |
//! | `X-WA-Country-Code`     | `x-wa-meta-user-country-code` / `x-wa-meta-country-code` |
//! | `X-WA-CTA-Payload`      | `x-wa-meta-cta-payload`                              |
//! | `X-WA-Deeplink-Payload` | `x-wa-meta-deeplink-payload`                         |
//! | `X-WA-Caller`           | the From user (E.164 with `+`, or BSUID)             |
//! | `X-WA-Business-Number`  | the called business number (`+E.164`)               |
use crate::sip::header::HeaderName;
use crate::sip::message::Headers;
use crate::sip::uri::Uri;

/// Methods Meta accepts from us (its own Allow adds NOTIFY, which we never send).
pub const META_ALLOW: &str = "INVITE, ACK, BYE, CANCEL, OPTIONS";

/// `Reason` on every BYE we send toward Meta (normal call clearing).
pub const BYE_REASON: &str = "Q.850;cause=16";

/// Longest `x-wa-meta-*` value copied to the PBX (Meta's opaque payloads are ≤ 512 chars).
pub const MAX_PASSED_VALUE: usize = 512;

/// A WhatsApp user as Meta addresses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WaUser {
    /// `+` and 8..=15 digits.
    E164(String),
    /// Business-scoped user id such as `US.13491208655302741918` (kept as written).
    Bsuid(String),
}

impl WaUser {
    /// Parses a user part (already without `;user-params`): `+15551234567`, `15551234567`
    /// (a `+` is added), `%2B15551234567`, or a BSUID (`CC.` then letters, digits and dots).
    pub fn parse(user: &str) -> Option<WaUser> {
        let decoded = crate::sip::header::parse::percent_decode(user);
        let s = std::str::from_utf8(&decoded).ok()?.trim();
        let digits = s.strip_prefix('+').unwrap_or(s);
        if (8..=15).contains(&digits.len())
            && digits.bytes().all(|b| b.is_ascii_digit())
            && !digits.starts_with('0')
        {
            return Some(WaUser::E164(format!("+{digits}")));
        }
        if is_bsuid(s) {
            return Some(WaUser::Bsuid(s.to_owned()));
        }
        None
    }

    /// The user part written in URIs toward Meta (`+1555…` or the BSUID as is).
    pub fn as_str(&self) -> &str {
        match self {
            WaUser::E164(s) | WaUser::Bsuid(s) => s,
        }
    }

    /// For logs: E.164 masked to its last 4 digits, BSUIDs to their country prefix.
    pub fn masked(&self) -> String {
        match self {
            WaUser::E164(s) => mask_tail(s),
            WaUser::Bsuid(s) => {
                let cc = s.split('.').next().unwrap_or_default();
                format!("{cc}.***")
            }
        }
    }
}

/// `+155512345678` → `+*******5678`.
pub fn mask_tail(s: &str) -> String {
    let n = s.chars().count();
    s.chars()
        .enumerate()
        .map(|(i, c)| if i > 0 && i + 4 < n { '*' } else { c })
        .collect()
}

/// A BSUID (or parent BSUID): a 2-letter country code, a dot, then 1..=128 letters, digits
/// or dots (`US.13491208655302741918`, `US.ENT.1234`).
pub fn is_bsuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 4
        && b.len() <= 131
        && b[0].is_ascii_alphabetic()
        && b[1].is_ascii_alphabetic()
        && b[2] == b'.'
        && b[3..]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'.')
        && b[3..].iter().any(|c| c.is_ascii_alphanumeric())
}

/// The user part of a URI user field without `;user-params` (`+1555;tgrp=x` → `+1555`).
pub fn user_base(user: &str) -> &str {
    user.split(';').next().unwrap_or_default()
}

/// `;k=v` user parameters of a URI user field (`+1555;tgrp=wacall;x` → `[("tgrp","wacall"),("x","")]`).
pub fn user_params(user: &str) -> Vec<(&str, &str)> {
    user.split(';')
        .skip(1)
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
        .collect()
}

/// Request-URI of a business-initiated INVITE: `sip:+<user>@<edge>;transport=tls`.
pub fn request_uri(user: &WaUser, edge_host: &str) -> Option<Uri> {
    Uri::parse(&format!("sip:{}@{edge_host};transport=tls", user.as_str())).ok()
}

/// From of a business-initiated INVITE: `<sip:+<business>@<public host>>;tag=<tag>`.
pub fn from_header(business: &str, public_host: &str, tag: &str) -> String {
    format!("<sip:{}@{public_host}>;tag={tag}", plus(business))
}

/// To of a business-initiated INVITE: `<sip:+<user>@<edge>>`.
pub fn to_header(user: &WaUser, edge_host: &str) -> String {
    format!("<sip:{}@{edge_host}>", user.as_str())
}

/// Our Contact toward Meta: `<sip:+<business>@<public host>:<port>;transport=tls>`.
pub fn contact_header(business: &str, public_host: &str, public_port: u16) -> String {
    format!(
        "<sip:{}@{public_host}:{public_port};transport=tls>",
        plus(business)
    )
}

fn plus(n: &str) -> String {
    if n.starts_with('+') {
        n.to_owned()
    } else {
        format!("+{n}")
    }
}

/// What Meta told us in `x-wa-meta-*` headers (any case, either spelling).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WaMetaInfo {
    pub wacid: Option<String>,
    pub user_id: Option<String>,
    pub parent_user_id: Option<String>,
    pub user_name: Option<String>,
    pub country_code: Option<String>,
    pub cta_payload: Option<String>,
    pub deeplink_payload: Option<String>,
    pub phone_number_id: Option<String>,
    /// `x-wa-meta-call-duration` (seconds), on Meta's BYE.
    pub call_duration_s: Option<u64>,
}

impl WaMetaInfo {
    pub fn from_headers(h: &Headers) -> WaMetaInfo {
        let get = |names: &[&str]| {
            names
                .iter()
                .find_map(|n| h.wa_meta_value(n))
                .map(clean_value)
        };
        WaMetaInfo {
            wacid: get(&["wacid"]),
            user_id: get(&["user-id"]),
            parent_user_id: get(&["parent-user-id"]),
            user_name: get(&["user-name", "username"]),
            country_code: get(&["user-country-code", "country-code"]),
            cta_payload: get(&["cta-payload"]),
            deeplink_payload: get(&["deeplink-payload"]),
            phone_number_id: get(&["phone-number-id"]),
            call_duration_s: h
                .wa_meta_value("call-duration")
                .and_then(|v| v.trim().parse().ok()),
        }
    }

    /// The `X-WA-*` headers for the INVITE toward the PBX (table in the module doc).
    pub fn pbx_headers(&self, caller: &str, business: &str) -> Vec<(HeaderName, String)> {
        let mut out = Vec::new();
        let mut add = |name: &str, v: &Option<String>| {
            if let Some(v) = v.as_ref().filter(|v| !v.is_empty()) {
                out.push((HeaderName::parse(name), v.clone()));
            }
        };
        add("X-WA-Call-Id", &self.wacid);
        add("X-WA-User-Id", &self.user_id);
        add("X-WA-Parent-User-Id", &self.parent_user_id);
        add("X-WA-User-Name", &self.user_name);
        add("X-WA-Country-Code", &self.country_code);
        add("X-WA-CTA-Payload", &self.cta_payload);
        add("X-WA-Deeplink-Payload", &self.deeplink_payload);
        add("X-WA-Caller", &Some(clean_value(caller)));
        add("X-WA-Business-Number", &Some(clean_value(business)));
        out
    }
}

/// Drops control characters and caps the length (on a char boundary).
pub fn clean_value(v: &str) -> String {
    let mut s: String = v.chars().filter(|c| !c.is_control()).collect();
    if s.len() > MAX_PASSED_VALUE {
        let mut cut = MAX_PASSED_VALUE;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s.trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e164_forms_normalize_to_plus() {
        assert_eq!(
            WaUser::parse("+15551234567"),
            Some(WaUser::E164("+15551234567".into()))
        );
        assert_eq!(
            WaUser::parse("15551234567"),
            Some(WaUser::E164("+15551234567".into()))
        );
        assert_eq!(
            WaUser::parse("%2B15551234567"),
            Some(WaUser::E164("+15551234567".into()))
        );
        assert_eq!(WaUser::parse("+0555123"), None);
        assert_eq!(WaUser::parse("1234"), None);
        assert_eq!(WaUser::parse(""), None);
        assert_eq!(WaUser::parse("alice"), None);
    }

    #[test]
    fn bsuid_kept_as_is_without_plus() {
        let u = WaUser::parse("US.13491208655302741918").unwrap();
        assert_eq!(u, WaUser::Bsuid("US.13491208655302741918".into()));
        assert_eq!(
            request_uri(&u, "wa.meta.vc").unwrap().to_string(),
            "sip:US.13491208655302741918@wa.meta.vc;transport=tls"
        );
        assert_eq!(
            to_header(&u, "wa.meta.vc"),
            "<sip:US.13491208655302741918@wa.meta.vc>"
        );
        assert!(is_bsuid("US.ENT.1234"));
        assert!(!is_bsuid("US."));
        assert!(!is_bsuid("U.123"));
        assert_eq!(u.masked(), "US.***");
    }

    #[test]
    fn uris_toward_meta() {
        let u = WaUser::parse("+15551234567").unwrap();
        assert_eq!(
            request_uri(&u, "wa.meta.vc").unwrap().to_string(),
            "sip:+15551234567@wa.meta.vc;transport=tls"
        );
        assert_eq!(
            from_header("+15550001111", "sip.example.com", "t1"),
            "<sip:+15550001111@sip.example.com>;tag=t1"
        );
        assert_eq!(
            from_header("15550001111", "sip.example.com", "t1"),
            "<sip:+15550001111@sip.example.com>;tag=t1"
        );
        assert_eq!(
            contact_header("+15550001111", "sip.example.com", 5061),
            "<sip:+15550001111@sip.example.com:5061;transport=tls>"
        );
        assert!(!META_ALLOW.contains("UPDATE") && !META_ALLOW.contains("INFO"));
    }

    #[test]
    fn user_params_split() {
        assert_eq!(user_base("+1555;tgrp=wacall;x"), "+1555");
        assert_eq!(
            user_params("+1555;tgrp=wacall;x"),
            vec![("tgrp", "wacall"), ("x", "")]
        );
        assert!(user_params("+1555").is_empty());
    }

    #[test]
    fn wa_meta_headers_any_spelling() {
        let mut h = Headers::new();
        h.push(HeaderName::parse("X-WA-META-WACID"), "wacid.HBgL");
        h.push(HeaderName::parse("x-wa-meta-user-id"), "US.1349");
        h.push(HeaderName::parse("x-wa_meta-parent-user-id"), "US.ENT.9");
        h.push(HeaderName::parse("x-wa-meta-username"), "ana\r\x07");
        h.push(HeaderName::parse("x-wa-meta-country-code"), "IL");
        h.push(HeaderName::parse("x-wa-meta-cta-payload"), "x".repeat(600));
        h.push(HeaderName::parse("x-wa-meta-call-duration"), " 42 ");
        let i = WaMetaInfo::from_headers(&h);
        assert_eq!(i.wacid.as_deref(), Some("wacid.HBgL"));
        assert_eq!(i.user_id.as_deref(), Some("US.1349"));
        assert_eq!(i.parent_user_id.as_deref(), Some("US.ENT.9"));
        assert_eq!(i.user_name.as_deref(), Some("ana"));
        assert_eq!(i.country_code.as_deref(), Some("IL"));
        assert_eq!(i.cta_payload.as_ref().map(String::len), Some(512));
        assert_eq!(i.call_duration_s, Some(42));
        let out = i.pbx_headers("US.1349", "+15550001111");
        let names: Vec<&str> = out.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "X-WA-Call-Id",
                "X-WA-User-Id",
                "X-WA-Parent-User-Id",
                "X-WA-User-Name",
                "X-WA-Country-Code",
                "X-WA-CTA-Payload",
                "X-WA-Caller",
                "X-WA-Business-Number"
            ]
        );
    }
}
