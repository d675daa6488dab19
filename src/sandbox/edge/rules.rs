//! Meta's edge rules for requests a gateway sends to `wa.meta.vc`, as one sans-IO decision
//! per request ([`EdgeRules::decide`] for requests outside a dialog, [`in_dialog`] for the
//! rest).
//!
//! Guarantees (each has a unit test below and an integration test in `tests/sandbox_edge.rs`):
//! - `sips:` Request-URI, an IP host, a host other than `wa.meta.vc`, or no user → 404.
//! - From user not a configured business number in `+E164` form → 400.
//! - From host neither the number's configured SIP server host nor a parent domain of it →
//!   403 whose reason phrase and `Warning: 399` read `SIP server X from INVITE does not match
//!   any SIP server configured for phone number id {ID}`.
//! - No credentials → 407 (realm `wa.meta.vc`, qop=auth, the configured algorithm).
//!   Credentials whose username is not the number without `+`, whose `uri` is not the
//!   Request-URI, or whose response is wrong → 403.
//! - The user has no usable call permission (or a limit is hit) → 403 with Meta's code in a
//!   Warning.
//! - REGISTER → 403; UPDATE, REFER, INFO, PRACK, MESSAGE, SUBSCRIBE, PUBLISH → 405 with
//!   Meta's `Allow`; OPTIONS → 200 with `Allow`; re-INVITE inside a dialog → 500.
//! - Every response built from a verdict carries Meta's `Allow`.
use crate::sandbox::SandboxState;
use crate::sip::auth::{
    Algorithm, ChallengeReply, Credentials, DigestHash, DigestServer, LockoutConfig, ServerConfig,
    UserSecret, Verdict as AuthVerdict,
};
use crate::sip::header::HeaderName;
use crate::sip::message::Request;
use crate::sip::method::Method;
use crate::sip::uri::{Host, Scheme};
use std::net::IpAddr;
use std::time::Instant;

/// Meta's digest realm.
pub const META_REALM: &str = "wa.meta.vc";
/// Meta's edge host name (Request-URI host of business-initiated calls).
pub const EDGE_HOST: &str = "wa.meta.vc";
/// Meta's `Allow` header.
pub const ALLOW: &str = "INVITE, ACK, BYE, CANCEL, NOTIFY, OPTIONS";
/// Meta's two Record-Route entries, in the order Meta's responses list them.
pub const META_RECORD_ROUTE: [&str; 2] = [
    "<sip:onevc-sip-proxy.fbinfra.net:8191;transport=tls;lr>",
    "<sip:wa.meta.vc;transport=tls;lr>",
];

/// How the edge writes its Record-Route headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteStyle {
    /// Meta's exact values. A gateway must send requests for both host names to the sandbox
    /// (its `meta.connect`), i.e. treat them as Meta's edge — as it does live.
    Meta,
    /// Loopback-resolvable equivalents: `<sip:{addr};transport=tls;lr;x-meta-hop=onevc>` and
    /// `<sip:{addr};transport=tls;lr;x-meta-hop=wa>`, so any UA routes ACK/BYE to the sandbox.
    Loopback(std::net::SocketAddr),
}

impl RouteStyle {
    /// The two Record-Route values, in the order responses list them.
    pub fn record_route(&self) -> [String; 2] {
        match self {
            RouteStyle::Meta => META_RECORD_ROUTE.map(str::to_string),
            RouteStyle::Loopback(a) => [
                format!("<sip:{a};transport=tls;lr;x-meta-hop=onevc>"),
                format!("<sip:{a};transport=tls;lr;x-meta-hop=wa>"),
            ],
        }
    }
}

/// Edge policy.
#[derive(Debug, Clone)]
pub struct EdgeConfig {
    /// Digest algorithm of the 407 (SHA-256 by default; MD5 like Meta's published sample).
    pub algorithm: Algorithm,
    pub route_style: RouteStyle,
}

impl Default for EdgeConfig {
    fn default() -> Self {
        EdgeConfig {
            algorithm: Algorithm::Sha256,
            route_style: RouteStyle::Meta,
        }
    }
}

/// A final non-2xx answer: status, reason phrase and extra headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub reason: String,
    pub headers: Vec<(HeaderName, String)>,
}

impl Refusal {
    fn new(status: u16, reason: &str) -> Refusal {
        Refusal {
            status,
            reason: reason.to_string(),
            headers: vec![(HeaderName::Allow, ALLOW.to_string())],
        }
    }

    fn warning(mut self, text: &str) -> Refusal {
        self.headers.push((
            HeaderName::Warning,
            format!("399 {EDGE_HOST} \"{}\"", text.replace('"', "'")),
        ));
        self
    }

    /// The `Warning` text, if any.
    pub fn warning_text(&self) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| *n == HeaderName::Warning)
            .map(|(_, v)| v.as_str())
    }
}

/// A business-initiated call the edge accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusinessCall {
    /// `+15550001111`
    pub business: String,
    pub phone_number_id: String,
    /// The Request-URI user as sent: `+E164` or a BSUID.
    pub user: String,
}

/// The edge's decision on a request outside a dialog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Refuse(Refusal),
    /// 407 with these `Proxy-Authenticate` values.
    Challenge(ChallengeReply),
    /// OPTIONS: 200 with `Allow`.
    Options,
    Accept(BusinessCall),
}

/// Meta's edge rules with their digest server (nonces are single-use).
pub struct EdgeRules {
    config: EdgeConfig,
    digest: DigestServer,
}

impl std::fmt::Debug for EdgeRules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EdgeRules")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl EdgeRules {
    /// `secret` keys the nonces (derive it from the seed in deterministic mode).
    pub fn new(
        config: EdgeConfig,
        secret: [u8; 32],
        now: Instant,
    ) -> Result<EdgeRules, crate::sip::auth::AuthError> {
        let mut sc = ServerConfig::new(META_REALM);
        sc.proxy = true;
        sc.algorithms = vec![config.algorithm.clone()];
        // Meta refuses bad digests with 403 every time; it does not lock callers out.
        sc.lockout = LockoutConfig {
            threshold: 0,
            ..LockoutConfig::default()
        };
        let digest = DigestServer::new(sc, secret, now)?;
        Ok(EdgeRules { config, digest })
    }

    pub fn config(&self) -> &EdgeConfig {
        &self.config
    }

    /// Decides a request outside any dialog (ACK and CANCEL never come here).
    pub fn decide(
        &mut self,
        now: Instant,
        source: IpAddr,
        req: &Request,
        state: &SandboxState,
        now_unix: i64,
    ) -> Verdict {
        match req.method {
            Method::Invite => self.invite(now, source, req, state, now_unix),
            Method::Options => Verdict::Options,
            Method::Register => Verdict::Refuse(Refusal::new(403, "Forbidden")),
            Method::Bye | Method::Notify => {
                Verdict::Refuse(Refusal::new(481, "Call/Transaction Does Not Exist"))
            }
            _ => Verdict::Refuse(Refusal::new(405, "Method Not Allowed")),
        }
    }

    fn invite(
        &mut self,
        now: Instant,
        source: IpAddr,
        req: &Request,
        state: &SandboxState,
        now_unix: i64,
    ) -> Verdict {
        // 1. Request-URI: sip:, host wa.meta.vc (never an IP), a user part.
        let Some(ruri) = req.uri.as_sip() else {
            return Verdict::Refuse(Refusal::new(404, "Not Found"));
        };
        let host_ok = matches!(&ruri.host, Host::Domain(h) if h.eq_ignore_ascii_case(EDGE_HOST));
        if ruri.scheme == Scheme::Sips || !host_ok {
            return Verdict::Refuse(Refusal::new(404, "Not Found"));
        }
        let Some(user) = ruri.user_unescaped().filter(|u| !u.is_empty()) else {
            return Verdict::Refuse(Refusal::new(404, "Not Found"));
        };
        // 2. From: a configured business number, fully normalized.
        let from = match req.headers.from() {
            Ok(f) => f,
            Err(_) => return Verdict::Refuse(Refusal::new(400, "Bad Request")),
        };
        let Some(from_uri) = from.uri.as_sip() else {
            return Verdict::Refuse(Refusal::new(400, "Bad Request"));
        };
        let from_user = from_uri.user_unescaped().unwrap_or_default();
        let normalized = from_user
            .strip_prefix('+')
            .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()));
        let target = if normalized {
            state.sip_target(&from_user)
        } else {
            None
        };
        let Some(target) = target else {
            return Verdict::Refuse(
                Refusal::new(400, "Bad Request")
                    .warning("Invalid business phone number in From header"),
            );
        };
        // 3. From host: the configured SIP server host or a parent domain of it.
        let from_host = from_uri.host.to_string();
        let host_matches = target
            .hostname
            .as_deref()
            .filter(|_| target.sip_enabled)
            .is_some_and(|configured| is_same_or_parent(&from_host, configured));
        if !host_matches {
            let text = format!(
                "SIP server {from_host} from INVITE does not match any SIP server configured for phone number id {}",
                target.phone_number_id
            );
            let mut r = Refusal::new(403, &text);
            r = r.warning(&text);
            return Verdict::Refuse(r);
        }
        // 4. Digest (407), username = number without '+', uri = Request-URI.
        let creds: Vec<&str> = req.headers.proxy_authorization();
        let ours: Vec<Credentials> = creds
            .iter()
            .filter_map(|v| Credentials::parse(v).ok())
            .filter(|c| c.realm == META_REALM)
            .collect();
        if ours.is_empty() {
            return Verdict::Challenge(self.digest.challenge(now));
        }
        let expected_user = target.e164.trim_start_matches('+').to_string();
        let ruri_text = req.uri.to_string();
        if ours
            .iter()
            .any(|c| c.username != expected_user || c.uri != ruri_text)
        {
            return Verdict::Refuse(Refusal::new(403, "Forbidden").warning("Invalid credentials"));
        }
        let password = target.password.clone();
        let store = move |username: &str, _realm: &str, _h: DigestHash| {
            (username == expected_user)
                .then(|| password.clone().map(UserSecret::Password))
                .flatten()
        };
        match self.digest.authenticate(
            now,
            source,
            "INVITE",
            Some(&ruri_text),
            creds.iter().copied(),
            &store,
        ) {
            AuthVerdict::Accepted { .. } => {}
            // a stale nonce with a correct digest is challenged again; a wrong digest is
            // refused, as Meta does (403), not re-challenged
            AuthVerdict::Challenge(c) if c.values.iter().any(|v| v.contains("stale=true")) => {
                return Verdict::Challenge(c);
            }
            AuthVerdict::Challenge(_) | AuthVerdict::Refused(_) => {
                return Verdict::Refuse(
                    Refusal::new(403, "Forbidden").warning("Invalid credentials"),
                );
            }
        }
        // 5. Permission and limits.
        if let Err(code) = state.authorize_business_call(&target.e164, &user, now_unix) {
            return Verdict::Refuse(Refusal::new(403, "Forbidden").warning(&format!(
                "{} ({})",
                code.short(),
                code.code()
            )));
        }
        Verdict::Accept(BusinessCall {
            business: target.e164,
            phone_number_id: target.phone_number_id,
            user,
        })
    }
}

/// What the edge answers to a request inside an established dialog, when it refuses it.
/// `None`: handle it (BYE, ACK, NOTIFY, OPTIONS, CANCEL).
pub fn in_dialog(method: &Method) -> Option<Refusal> {
    match method {
        Method::Invite => Some(Refusal::new(500, "Server Internal Error")),
        Method::Bye | Method::Ack | Method::Cancel | Method::Notify | Method::Options => None,
        _ => Some(Refusal::new(405, "Method Not Allowed")),
    }
}

/// `from` equals `configured` or is a parent domain of it (`foo.com` for `bar.foo.com`),
/// case-insensitively; a parent must keep at least two labels (`com` alone is no parent).
pub fn is_same_or_parent(from: &str, configured: &str) -> bool {
    let f = from.trim_end_matches('.').to_ascii_lowercase();
    let c = configured.trim_end_matches('.').to_ascii_lowercase();
    if f.is_empty() {
        return false;
    }
    if f == c {
        return true;
    }
    f.contains('.') && c.ends_with(&format!(".{f}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::SandboxOptions;
    use crate::sip::auth::DigestClient;
    use crate::sip::message::Framing;
    use crate::sip::message::Message;

    const NOW_UNIX: i64 = 1_790_000_000;

    fn state() -> SandboxState {
        SandboxState::new(SandboxOptions {
            seed: Some(7),
            ..SandboxOptions::default()
        })
    }

    fn invite(ruri: &str, from: &str, extra: &str) -> Request {
        let text = format!(
            "INVITE {ruri} SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.1:5061;branch=z9hG4bKa1\r\nMax-Forwards: 70\r\nFrom: <{from}>;tag=f1\r\nTo: <{ruri}>\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\nContact: <sip:+15550001111@gateway.whatsip.test:5061;transport=tls>\r\n{extra}Content-Length: 0\r\n\r\n"
        );
        match Message::parse(text.as_bytes(), Framing::Stream).unwrap() {
            Message::Request(r) => r,
            Message::Response(_) => unreachable!(),
        }
    }

    fn rules(alg: Algorithm) -> EdgeRules {
        EdgeRules::new(
            EdgeConfig {
                algorithm: alg,
                route_style: RouteStyle::Meta,
            },
            [3; 32],
            Instant::now(),
        )
        .unwrap()
    }

    const OK_RURI: &str = "sip:+15551234567@wa.meta.vc;transport=tls";
    const OK_FROM: &str = "sip:+15550001111@gateway.whatsip.test";

    fn status(v: &Verdict) -> u16 {
        match v {
            Verdict::Refuse(r) => r.status,
            Verdict::Challenge(c) => c.status,
            Verdict::Options => 200,
            Verdict::Accept(_) => 0,
        }
    }

    fn decide(r: &mut EdgeRules, st: &SandboxState, req: &Request) -> Verdict {
        r.decide(
            Instant::now(),
            "127.0.0.1".parse().unwrap(),
            req,
            st,
            NOW_UNIX,
        )
    }

    /// Answers the 407 to `req` and returns the re-sent request.
    fn authed(
        r: &mut EdgeRules,
        st: &SandboxState,
        ruri: &str,
        from: &str,
        user: &str,
        uri: &str,
        pw: Option<&str>,
    ) -> Verdict {
        let first = invite(ruri, from, "");
        let Verdict::Challenge(c) = decide(r, st, &first) else {
            panic!("no challenge: {:?}", decide(r, st, &first));
        };
        assert_eq!(c.status, 407);
        let password = pw
            .map(str::to_string)
            .unwrap_or_else(|| st.sip_target("+15550001111").unwrap().password.unwrap());
        let mut client = DigestClient::new(user, password);
        let value = client
            .respond(
                c.values.iter().map(String::as_str),
                "INVITE",
                uri,
                None,
                &mut || "cn".to_string(),
            )
            .unwrap();
        let second = invite(ruri, from, &format!("Proxy-Authorization: {value}\r\n"));
        decide(r, st, &second)
    }

    #[test]
    fn sips_ip_and_foreign_hosts_get_404() {
        let st = state();
        let mut r = rules(Algorithm::Sha256);
        for ruri in [
            "sips:+15551234567@wa.meta.vc",
            "sip:+15551234567@157.240.19.130;transport=tls",
            "sip:+15551234567@[2803:6080::1];transport=tls",
            "sip:+15551234567@example.com;transport=tls",
            "sip:wa.meta.vc;transport=tls",
        ] {
            assert_eq!(
                status(&decide(&mut r, &st, &invite(ruri, OK_FROM, ""))),
                404,
                "{ruri}"
            );
        }
    }

    #[test]
    fn from_user_not_a_business_number_gets_400() {
        let st = state();
        let mut r = rules(Algorithm::Sha256);
        for from in [
            "sip:+15559999999@gateway.whatsip.test",
            "sip:15550001111@gateway.whatsip.test",
            "sip:alice@gateway.whatsip.test",
        ] {
            assert_eq!(
                status(&decide(&mut r, &st, &invite(OK_RURI, from, ""))),
                400,
                "{from}"
            );
        }
    }

    #[test]
    fn from_host_must_be_the_configured_server_or_a_parent() {
        let st = state();
        let mut r = rules(Algorithm::Sha256);
        let v = decide(
            &mut r,
            &st,
            &invite(OK_RURI, "sip:+15550001111@evil.example", ""),
        );
        let Verdict::Refuse(refusal) = v else {
            panic!()
        };
        assert_eq!(refusal.status, 403);
        let text = "SIP server evil.example from INVITE does not match any SIP server configured for phone number id 106540352242922";
        assert_eq!(refusal.reason, text);
        assert_eq!(
            refusal.warning_text().unwrap(),
            format!("399 wa.meta.vc \"{text}\"")
        );
        // parent domain of gateway.whatsip.test is allowed; a bare TLD is not
        assert_eq!(
            status(&decide(
                &mut r,
                &st,
                &invite(OK_RURI, "sip:+15550001111@whatsip.test", "")
            )),
            407
        );
        assert_eq!(
            status(&decide(
                &mut r,
                &st,
                &invite(OK_RURI, "sip:+15550001111@test", "")
            )),
            403
        );
        assert_eq!(
            status(&decide(
                &mut r,
                &st,
                &invite(OK_RURI, "sip:+15550001111@127.0.0.1", "")
            )),
            403
        );
        assert!(is_same_or_parent("foo.com", "bar.foo.com"));
        assert!(!is_same_or_parent("oo.com", "bar.foo.com"));
    }

    #[test]
    fn first_invite_is_challenged_407_with_meta_realm_and_the_configured_algorithm() {
        let st = state();
        for (alg, word) in [(Algorithm::Sha256, "SHA-256"), (Algorithm::Md5, "MD5")] {
            let mut r = rules(alg);
            let Verdict::Challenge(c) = decide(&mut r, &st, &invite(OK_RURI, OK_FROM, "")) else {
                panic!()
            };
            assert_eq!((c.status, c.header_name), (407, "Proxy-Authenticate"));
            assert_eq!(c.values.len(), 1);
            assert!(
                c.values[0].contains("realm=\"wa.meta.vc\""),
                "{}",
                c.values[0]
            );
            assert!(
                c.values[0].contains(&format!("algorithm={word}")),
                "{}",
                c.values[0]
            );
            assert!(c.values[0].contains("qop=\"auth\""), "{}", c.values[0]);
        }
    }

    #[test]
    fn correct_digest_and_permission_accepts_sha256_and_md5() {
        let st = state();
        for alg in [Algorithm::Sha256, Algorithm::Md5] {
            let mut r = rules(alg);
            let v = authed(&mut r, &st, OK_RURI, OK_FROM, "15550001111", OK_RURI, None);
            assert_eq!(
                v,
                Verdict::Accept(BusinessCall {
                    business: "+15550001111".into(),
                    phone_number_id: "106540352242922".into(),
                    user: "+15551234567".into()
                })
            );
        }
    }

    #[test]
    fn bsuid_user_part_is_accepted() {
        let st = state();
        let mut r = rules(Algorithm::Sha256);
        let ruri = "sip:US.13491208655302741918@wa.meta.vc;transport=tls";
        let v = authed(&mut r, &st, ruri, OK_FROM, "15550001111", ruri, None);
        assert!(
            matches!(v, Verdict::Accept(ref c) if c.user == "US.13491208655302741918"),
            "{v:?}"
        );
    }

    #[test]
    fn wrong_username_uri_or_password_gets_403() {
        let st = state();
        let mut r = rules(Algorithm::Sha256);
        let with_plus = authed(&mut r, &st, OK_RURI, OK_FROM, "+15550001111", OK_RURI, None);
        assert_eq!(status(&with_plus), 403);
        let other_uri = authed(
            &mut r,
            &st,
            OK_RURI,
            OK_FROM,
            "15550001111",
            "sip:+15551234567@wa.meta.vc",
            None,
        );
        assert_eq!(status(&other_uri), 403);
        let bad_pw = authed(
            &mut r,
            &st,
            OK_RURI,
            OK_FROM,
            "15550001111",
            OK_RURI,
            Some("nope"),
        );
        assert_eq!(status(&bad_pw), 403);
    }

    #[test]
    fn user_without_permission_gets_403_with_meta_code() {
        let st = state();
        let mut r = rules(Algorithm::Sha256);
        let ruri = "sip:+15557654321@wa.meta.vc;transport=tls";
        let v = authed(&mut r, &st, ruri, OK_FROM, "15550001111", ruri, None);
        let Verdict::Refuse(refusal) = v else {
            panic!("{v:?}")
        };
        assert_eq!(refusal.status, 403);
        assert!(
            refusal.warning_text().unwrap().contains("138006"),
            "{refusal:?}"
        );
    }

    #[test]
    fn register_403_update_refer_info_405_with_allow_options_200() {
        let st = state();
        let mut r = rules(Algorithm::Sha256);
        let mk = |m: &str| {
            let text = format!(
                "{m} sip:wa.meta.vc;transport=tls SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.1:5061;branch=z9hG4bKa2\r\nMax-Forwards: 70\r\nFrom: <{OK_FROM}>;tag=f\r\nTo: <sip:wa.meta.vc>\r\nCall-ID: c2\r\nCSeq: 1 {m}\r\nContact: <sip:gw@127.0.0.1>\r\nContent-Length: 0\r\n\r\n"
            );
            match Message::parse(text.as_bytes(), Framing::Stream).unwrap() {
                Message::Request(r) => r,
                Message::Response(_) => unreachable!(),
            }
        };
        assert_eq!(status(&decide(&mut r, &st, &mk("REGISTER"))), 403);
        assert_eq!(status(&decide(&mut r, &st, &mk("OPTIONS"))), 200);
        for m in ["UPDATE", "REFER", "INFO"] {
            let Verdict::Refuse(x) = decide(&mut r, &st, &mk(m)) else {
                panic!()
            };
            assert_eq!(x.status, 405, "{m}");
            assert!(x.headers.contains(&(HeaderName::Allow, ALLOW.to_string())));
        }
        assert_eq!(in_dialog(&Method::Invite).unwrap().status, 500);
        assert_eq!(in_dialog(&Method::Update).unwrap().status, 405);
        assert!(in_dialog(&Method::Bye).is_none());
    }

    proptest::proptest! {
        #[test]
        fn decide_never_panics(user in "[ -~]{0,40}", host in "[ -~]{0,30}", from in "[ -~]{0,60}", auth in "[ -~]{0,120}") {
            let st = state();
            let mut r = rules(Algorithm::Md5);
            let text = format!(
                "INVITE sip:{user}@{host} SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.1;branch=z9hG4bKp\r\nFrom: <sip:{from}>;tag=a\r\nTo: <sip:x@y>\r\nCall-ID: p\r\nCSeq: 1 INVITE\r\nProxy-Authorization: Digest {auth}\r\nContent-Length: 0\r\n\r\n"
            );
            if let Ok(Message::Request(req)) = Message::parse(text.as_bytes(), Framing::Stream) {
                let _ = decide(&mut r, &st, &req);
            }
        }
    }

    #[test]
    fn record_route_styles() {
        assert_eq!(
            RouteStyle::Meta.record_route(),
            META_RECORD_ROUTE.map(str::to_string)
        );
        let lo = RouteStyle::Loopback("127.0.0.1:5062".parse().unwrap()).record_route();
        assert!(
            lo.iter()
                .all(|r| r.starts_with("<sip:127.0.0.1:5062;transport=tls;lr"))
        );
    }
}
