//! Cross-module tests: RFC vectors, client↔server round trips, replay/stale/tamper,
//! lockout on virtual time, Meta's 407, and an independent (Python hashlib) peer.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::*;

const IP: &str = "192.0.2.10";

fn ip() -> IpAddr {
    IP.parse().unwrap()
}

fn fixed(c: &'static str) -> impl FnMut() -> String {
    move || c.to_owned()
}

fn users() -> HashMap<String, String> {
    HashMap::from([("alice".to_owned(), "wonderland".to_owned())])
}

fn server(algorithms: Vec<Algorithm>, t0: Instant) -> DigestServer {
    let mut cfg = ServerConfig::new("example.org");
    cfg.algorithms = algorithms;
    cfg.lockout.threshold = 3;
    cfg.lockout.cooldown = Duration::from_secs(60);
    DigestServer::new(cfg, [42; 32], t0).unwrap()
}

fn values(r: &ChallengeReply) -> Vec<&str> {
    r.values.iter().map(String::as_str).collect()
}

fn challenge_of(v: Verdict) -> ChallengeReply {
    match v {
        Verdict::Challenge(c) => c,
        other => panic!("expected a challenge, got {other:?}"),
    }
}

// --- RFC vectors -------------------------------------------------------------------------

const RFC7616_NONCE: &str = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v";
const RFC7616_CNONCE: &str = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ";
const RFC7616_OPAQUE: &str = "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS";

/// RFC 7616 §3.9.1: Mufasa / "Circle of Life", both algorithms, answered by our client.
#[test]
fn rfc7616_vectors_through_the_client() {
    for (alg, expected) in [
        ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
        (
            "SHA-256",
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
        ),
    ] {
        let ch = format!(
            "Digest\r\n realm=\"http-auth@example.org\",\r\n qop=\"auth, auth-int\",\r\n algorithm={alg},\r\n nonce=\"{RFC7616_NONCE}\",\r\n opaque=\"{RFC7616_OPAQUE}\""
        );
        let mut client = DigestClient::new("Mufasa", "Circle of Life");
        let v = client
            .respond(
                [ch.as_str()],
                "GET",
                "/dir/index.html",
                None,
                &mut fixed(RFC7616_CNONCE),
            )
            .unwrap();
        let c = Credentials::parse(&v).unwrap();
        assert_eq!(c.response, expected, "{alg}");
        assert_eq!(c.qop, Some(Qop::Auth));
        assert_eq!(c.nc, Some(1));
        assert_eq!(c.opaque.as_deref(), Some(RFC7616_OPAQUE));
        assert_eq!(c.algorithm.as_ref().map(Algorithm::as_str), Some(alg));
        assert_eq!(c.uri, "/dir/index.html");
        assert!(v.contains("nc=00000001"), "{v}");
        assert!(v.contains("qop=auth,") || v.ends_with("qop=auth"), "{v}");
    }
}

/// RFC 2617 §3.5 (no algorithm parameter → MD5, which is then not sent back).
#[test]
fn rfc2617_vector_through_the_client() {
    let ch = r#"Digest realm="testrealm@host.com", qop="auth,auth-int", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41""#;
    let mut client = DigestClient::new("Mufasa", "Circle Of Life");
    let v = client
        .respond([ch], "GET", "/dir/index.html", None, &mut fixed("0a4f113b"))
        .unwrap();
    let c = Credentials::parse(&v).unwrap();
    assert_eq!(c.response, "6629fae49393a05397450978507c4ef1");
    assert_eq!(c.algorithm, None);
}

#[test]
fn rfc2069_style_challenge_without_qop() {
    // RFC 2617 §3.2.2.1: no qop → response = H(HA1:nonce:HA2), no cnonce/nc sent
    let ch = r#"Digest realm="r", nonce="n""#;
    let mut client = DigestClient::new("u", "p");
    let v = client
        .respond([ch], "REGISTER", "sip:r", None, &mut fixed("x"))
        .unwrap();
    let c = Credentials::parse(&v).unwrap();
    let h = |s: &str| DigestHash::Md5.hex(s.as_bytes());
    let expected = h(&format!("{}:n:{}", h("u:r:p"), h("REGISTER:sip:r")));
    assert_eq!(c.response, expected);
    assert_eq!((c.cnonce, c.nc, c.qop), (None, None, None));
}

// --- client ↔ server ---------------------------------------------------------------------

#[test]
fn round_trip_every_algorithm() {
    let t0 = Instant::now();
    for alg in [
        Algorithm::Md5,
        Algorithm::Md5Sess,
        Algorithm::Sha256,
        Algorithm::Sha256Sess,
        Algorithm::Sha512_256,
        Algorithm::Sha512_256Sess,
    ] {
        let mut srv = server(vec![alg.clone()], t0);
        let ch = srv.challenge(t0);
        assert_eq!(ch.status, 401);
        assert_eq!(ch.header_name, "WWW-Authenticate");
        let mut client = DigestClient::new("alice", "wonderland");
        let uri = "sip:bob@example.org;transport=tls";
        let auth = client
            .respond(values(&ch), "INVITE", uri, None, &mut RandomCnonce)
            .unwrap();
        assert_eq!(
            Credentials::parse(&auth).unwrap().algorithm,
            Some(alg.clone())
        );
        let t1 = t0 + Duration::from_secs(1);
        let v = srv.authenticate(t1, ip(), "INVITE", Some(uri), [auth.as_str()], &users());
        assert_eq!(
            v,
            Verdict::Accepted {
                username: "alice".into()
            },
            "{alg}"
        );
        // the same credentials on another method do not verify
        let ch = srv.challenge(t1);
        let auth = client
            .respond(values(&ch), "INVITE", uri, None, &mut RandomCnonce)
            .unwrap();
        let v = srv.authenticate(t1, ip(), "BYE", Some(uri), [auth.as_str()], &users());
        assert!(matches!(v, Verdict::Challenge(_)), "{alg}: {v:?}");
    }
}

#[test]
fn server_offers_sha256_and_md5_and_client_picks_sha256() {
    let t0 = Instant::now();
    let mut srv = server(vec![Algorithm::Sha256, Algorithm::Md5], t0);
    let ch = srv.challenge(t0);
    assert_eq!(ch.values.len(), 2);
    let parsed: Vec<Challenge> = ch
        .values
        .iter()
        .map(|v| Challenge::parse(v).unwrap())
        .collect();
    assert_eq!(parsed[0].algorithm, Some(Algorithm::Sha256));
    assert_eq!(parsed[1].algorithm, Some(Algorithm::Md5));
    assert!(
        parsed
            .iter()
            .all(|c| c.qop == vec![Qop::Auth] && c.realm == "example.org")
    );
    assert_ne!(parsed[0].nonce, parsed[1].nonce);
    // client picks SHA-256 whatever the order
    let mut rev = values(&ch);
    rev.reverse();
    let auth = DigestClient::new("alice", "wonderland")
        .respond(rev, "OPTIONS", "sip:x", None, &mut fixed("c"))
        .unwrap();
    assert_eq!(
        Credentials::parse(&auth).unwrap().algorithm,
        Some(Algorithm::Sha256)
    );
    // an MD5 answer to the SHA-256 nonce is refused (nonces are bound to the algorithm)
    let md5_with_sha_nonce = format!(
        r#"Digest realm="example.org", nonce="{}", algorithm=MD5, qop="auth""#,
        parsed[0].nonce
    );
    let auth = DigestClient::new("alice", "wonderland")
        .respond(
            [md5_with_sha_nonce.as_str()],
            "OPTIONS",
            "sip:x",
            None,
            &mut fixed("c"),
        )
        .unwrap();
    let v = srv.authenticate(
        t0,
        ip(),
        "OPTIONS",
        Some("sip:x"),
        [auth.as_str()],
        &users(),
    );
    let c = challenge_of(v);
    assert!(Challenge::parse(&c.values[0]).unwrap().stale);
}

#[test]
fn proxy_mode_uses_407() {
    let t0 = Instant::now();
    let mut cfg = ServerConfig::new("example.org");
    cfg.proxy = true;
    let mut srv = DigestServer::new(cfg, [1; 32], t0).unwrap();
    let ch = srv.challenge(t0);
    assert_eq!((ch.status, ch.header_name), (407, "Proxy-Authenticate"));
    assert_eq!(ch.reason_phrase(), "Proxy Authentication Required");
    assert_eq!(credentials_header_for(407), Some("Proxy-Authorization"));
    assert_eq!(credentials_header_for(401), Some("Authorization"));
}

#[test]
fn replayed_nonce_is_rejected_with_stale() {
    let t0 = Instant::now();
    let mut srv = server(vec![Algorithm::Sha256], t0);
    let ch = srv.challenge(t0);
    let auth = DigestClient::new("alice", "wonderland")
        .respond(values(&ch), "INVITE", "sip:b@x", None, &mut fixed("c1"))
        .unwrap();
    let ok = srv.authenticate(
        t0,
        ip(),
        "INVITE",
        Some("sip:b@x"),
        [auth.as_str()],
        &users(),
    );
    assert!(matches!(ok, Verdict::Accepted { .. }));
    let replay = srv.authenticate(
        t0,
        ip(),
        "INVITE",
        Some("sip:b@x"),
        [auth.as_str()],
        &users(),
    );
    let c = challenge_of(replay);
    assert!(
        Challenge::parse(&c.values[0]).unwrap().stale,
        "replay gets stale=true"
    );
    // a replay is not a password failure: no lockout after many
    for _ in 0..10 {
        let v = srv.authenticate(
            t0,
            ip(),
            "INVITE",
            Some("sip:b@x"),
            [auth.as_str()],
            &users(),
        );
        assert!(matches!(v, Verdict::Challenge(_)));
    }
}

#[test]
fn increasing_nc_mode_allows_preemptive_reuse_but_not_replay() {
    let t0 = Instant::now();
    let mut cfg = ServerConfig::new("example.org");
    cfg.nonce_reuse = NonceReuse::IncreasingNc;
    let mut srv = DigestServer::new(cfg, [3; 32], t0).unwrap();
    let mut client = DigestClient::new("alice", "wonderland");
    let ch = srv.challenge(t0);
    let a1 = client
        .respond(
            values(&ch),
            "REGISTER",
            "sip:example.org",
            None,
            &mut fixed("c"),
        )
        .unwrap();
    let v = srv.authenticate(t0, ip(), "REGISTER", None, [a1.as_str()], &users());
    assert!(matches!(v, Verdict::Accepted { .. }));
    let a2 = client
        .authorize("INVITE", "sip:bob@example.org", &mut fixed("d"))
        .unwrap()
        .unwrap();
    assert_eq!(Credentials::parse(&a2).unwrap().nc, Some(2));
    let v = srv.authenticate(t0, ip(), "INVITE", None, [a2.as_str()], &users());
    assert!(matches!(v, Verdict::Accepted { .. }));
    let v = srv.authenticate(t0, ip(), "INVITE", None, [a2.as_str()], &users());
    assert!(matches!(v, Verdict::Challenge(_)), "nc=2 twice is a replay");
    let v = srv.authenticate(t0, ip(), "REGISTER", None, [a1.as_str()], &users());
    assert!(matches!(v, Verdict::Challenge(_)), "older nc is a replay");
}

#[test]
fn expired_nonce_gives_stale_and_client_retries_without_giving_up() {
    let t0 = Instant::now();
    let mut srv = server(vec![Algorithm::Md5], t0);
    let lifetime = srv.config().nonce_lifetime;
    let mut client = DigestClient::new("alice", "wonderland");
    let ch = srv.challenge(t0);
    let a1 = client
        .respond(values(&ch), "INVITE", "sip:b@x", None, &mut fixed("c"))
        .unwrap();
    // exactly at the lifetime it is still valid
    let at_edge = t0 + lifetime;
    let late = at_edge + Duration::from_millis(1);
    let v = srv.authenticate(late, ip(), "INVITE", None, [a1.as_str()], &users());
    let stale = challenge_of(v);
    assert!(Challenge::parse(&stale.values[0]).unwrap().stale);
    let a2 = client
        .respond(
            values(&stale),
            "INVITE",
            "sip:b@x",
            Some(&a1),
            &mut fixed("c"),
        )
        .unwrap();
    assert_eq!(
        Credentials::parse(&a2).unwrap().nc,
        Some(1),
        "new nonce, nc restarts"
    );
    let v = srv.authenticate(late, ip(), "INVITE", None, [a2.as_str()], &users());
    assert!(matches!(v, Verdict::Accepted { .. }));
    // and the edge itself
    let ch = srv.challenge(t0);
    let a3 = DigestClient::new("alice", "wonderland")
        .respond(values(&ch), "INVITE", "sip:b@x", None, &mut fixed("c"))
        .unwrap();
    let v = srv.authenticate(at_edge, ip(), "INVITE", None, [a3.as_str()], &users());
    assert!(matches!(v, Verdict::Accepted { .. }));
}

#[test]
fn tampered_or_foreign_nonce_is_never_accepted() {
    let t0 = Instant::now();
    let mut srv = server(vec![Algorithm::Sha256], t0);
    let ch = Challenge::parse(&srv.challenge(t0).values[0]).unwrap();
    let mut nonce = ch.nonce.clone().into_bytes();
    nonce[3] = if nonce[3] == b'A' { b'B' } else { b'A' };
    let mut forged = ch.clone();
    forged.nonce = String::from_utf8(nonce).unwrap();
    let other = DigestServer::new(ServerConfig::new("example.org"), [99; 32], t0)
        .unwrap()
        .challenge(t0);
    let foreign = Challenge::parse(&other.values[0]).unwrap();
    for c in [forged, foreign] {
        let auth = DigestClient::new("alice", "wonderland")
            .respond(
                [c.to_header_value().unwrap().as_str()],
                "INVITE",
                "sip:b@x",
                None,
                &mut fixed("c"),
            )
            .unwrap();
        let v = srv.authenticate(t0, ip(), "INVITE", None, [auth.as_str()], &users());
        // right password on a nonce we did not mint: stale, never accepted
        let r = challenge_of(v);
        assert!(Challenge::parse(&r.values[0]).unwrap().stale);
    }
}

/// Wrong password and unknown user: same status, header and challenge bytes except the nonce.
#[test]
fn unknown_user_and_wrong_password_look_identical() {
    let t0 = Instant::now();
    let mut srv = server(vec![Algorithm::Sha256, Algorithm::Md5], t0);
    let reply_for = |user: &str, pw: &str, srv: &mut DigestServer| {
        let ch = srv.challenge(t0);
        let auth = DigestClient::new(user, pw)
            .respond(values(&ch), "INVITE", "sip:b@x", None, &mut fixed("c"))
            .unwrap();
        challenge_of(srv.authenticate(t0, ip(), "INVITE", None, [auth.as_str()], &users()))
    };
    let wrong_pw = reply_for("alice", "nope", &mut srv);
    let unknown = reply_for("mallory", "wonderland", &mut srv);
    assert_eq!(wrong_pw.status, unknown.status);
    assert_eq!(wrong_pw.header_name, unknown.header_name);
    assert_eq!(wrong_pw.values.len(), unknown.values.len());
    for (a, b) in wrong_pw.values.iter().zip(&unknown.values) {
        let (na, nb) = (
            Challenge::parse(a).unwrap().nonce,
            Challenge::parse(b).unwrap().nonce,
        );
        assert_ne!(na, nb);
        assert_eq!(na.len(), nb.len());
        assert_eq!(a.replace(&na, "NONCE"), b.replace(&nb, "NONCE"));
        assert!(!Challenge::parse(a).unwrap().stale);
    }
}

#[test]
fn lockout_after_failures_and_recovery_on_virtual_time() {
    let t0 = Instant::now();
    let mut srv = server(vec![Algorithm::Md5], t0);
    let other_ip: IpAddr = "192.0.2.11".parse().unwrap();
    let attempt = |srv: &mut DigestServer, at: Instant, from: IpAddr, pw: &str| {
        let ch = srv.challenge(at);
        let auth = DigestClient::new("alice", pw)
            .respond(values(&ch), "REGISTER", "sip:x", None, &mut fixed("c"))
            .unwrap();
        srv.authenticate(at, from, "REGISTER", None, [auth.as_str()], &users())
    };
    let s = Duration::from_secs(1);
    assert!(matches!(
        attempt(&mut srv, t0, ip(), "bad"),
        Verdict::Challenge(_)
    ));
    assert!(matches!(
        attempt(&mut srv, t0 + s, ip(), "bad"),
        Verdict::Challenge(_)
    ));
    let third = attempt(&mut srv, t0 + 2 * s, ip(), "bad");
    let Verdict::Refused(e) = third else {
        panic!("{third:?}")
    };
    assert_eq!(
        e,
        AuthError::LockedOut {
            retry_after: Duration::from_secs(60)
        }
    );
    assert_eq!(e.sip_status(), 403);
    // right password from the locked source: still refused, with the remaining time
    let v = attempt(&mut srv, t0 + 32 * s, ip(), "wonderland");
    assert_eq!(
        v,
        Verdict::Refused(AuthError::LockedOut {
            retry_after: Duration::from_secs(30)
        })
    );
    // no credentials at all: refused too
    let v = srv.authenticate(t0 + 32 * s, ip(), "REGISTER", None, [], &users());
    assert!(matches!(v, Verdict::Refused(AuthError::LockedOut { .. })));
    // other sources are unaffected
    assert!(matches!(
        attempt(&mut srv, t0 + 32 * s, other_ip, "wonderland"),
        Verdict::Accepted { .. }
    ));
    // after the cool-down the source recovers
    assert!(matches!(
        attempt(&mut srv, t0 + 62 * s, ip(), "wonderland"),
        Verdict::Accepted { .. }
    ));
    // and a success reset the counter: two more failures do not lock
    assert!(matches!(
        attempt(&mut srv, t0 + 63 * s, ip(), "bad"),
        Verdict::Challenge(_)
    ));
    assert!(matches!(
        attempt(&mut srv, t0 + 64 * s, ip(), "bad"),
        Verdict::Challenge(_)
    ));
    assert!(matches!(
        attempt(&mut srv, t0 + 65 * s, ip(), "wonderland"),
        Verdict::Accepted { .. }
    ));
}

#[test]
fn server_edge_cases() {
    let t0 = Instant::now();
    let mut srv = server(vec![Algorithm::Sha256], t0);
    // no credentials → plain challenge
    let v = srv.authenticate(t0, ip(), "INVITE", None, [], &users());
    assert!(!Challenge::parse(&challenge_of(v).values[0]).unwrap().stale);
    // malformed → 400
    let v = srv.authenticate(t0, ip(), "INVITE", None, ["Digest username=\"a"], &users());
    let Verdict::Refused(e) = v else { panic!() };
    assert_eq!(e.sip_status(), 400);
    // credentials for another realm are ignored → challenge
    let ch = srv.challenge(t0);
    let foreign = r#"Digest realm="elsewhere", nonce="n", qop="auth""#;
    let other = DigestClient::new("alice", "wonderland")
        .respond([foreign], "INVITE", "sip:b@x", None, &mut fixed("c"))
        .unwrap();
    let v = srv.authenticate(t0, ip(), "INVITE", None, [other.as_str()], &users());
    assert!(matches!(v, Verdict::Challenge(_)));
    // ... but ours is found among several
    let ours = DigestClient::new("alice", "wonderland")
        .respond(values(&ch), "INVITE", "sip:b@x", None, &mut fixed("c"))
        .unwrap();
    let v = srv.authenticate(
        t0,
        ip(),
        "INVITE",
        Some("sip:b@x"),
        [other.as_str(), ours.as_str()],
        &users(),
    );
    assert!(matches!(v, Verdict::Accepted { .. }));
    // uri mismatch → 400
    let ch = srv.challenge(t0);
    let a = DigestClient::new("alice", "wonderland")
        .respond(values(&ch), "INVITE", "sip:b@x", None, &mut fixed("c"))
        .unwrap();
    let v = srv.authenticate(t0, ip(), "INVITE", Some("sip:B@x"), [a.as_str()], &users());
    assert_eq!(v, Verdict::Refused(AuthError::UriMismatch));
    // an algorithm we did not offer → challenge, not a failure
    let md5 = format!(
        r#"Digest realm="example.org", nonce="{}", algorithm=MD5, qop="auth""#,
        "n"
    );
    let a = DigestClient::new("alice", "wonderland")
        .respond([md5.as_str()], "INVITE", "sip:b@x", None, &mut fixed("c"))
        .unwrap();
    let v = srv.authenticate(t0, ip(), "INVITE", None, [a.as_str()], &users());
    assert!(matches!(v, Verdict::Challenge(_)));
    // no qop → 400
    let noqop = r#"Digest username="alice", realm="example.org", nonce="n", uri="sip:b@x", response="00", algorithm=SHA-256"#;
    let v = srv.authenticate(t0, ip(), "INVITE", None, [noqop], &users());
    assert!(matches!(
        v,
        Verdict::Refused(AuthError::InvalidParam { name: "qop", .. })
    ));
    // HA1 stores work
    let ch = srv.challenge(t0);
    let a = DigestClient::new("alice", "wonderland")
        .respond(values(&ch), "INVITE", "sip:b@x", None, &mut fixed("c"))
        .unwrap();
    let ha1_store = |u: &str, r: &str, h: DigestHash| {
        (u == "alice").then(|| UserSecret::Ha1(h.hex_joined(&[u, r, "wonderland"]).to_uppercase()))
    };
    let v = srv.authenticate(t0, ip(), "INVITE", None, [a.as_str()], &ha1_store);
    assert!(matches!(v, Verdict::Accepted { .. }));
    // bad config
    let mut cfg = ServerConfig::new("x");
    cfg.algorithms = vec![Algorithm::Unknown("SHA-3".into())];
    assert!(DigestServer::new(cfg, [0; 32], t0).is_err());
    assert!(DigestServer::new(ServerConfig::new("a\r\nb"), [0; 32], t0).is_err());
}

// --- client give-up rules ------------------------------------------------------------------

#[test]
fn client_gives_up_on_rejection_but_follows_stale() {
    let t0 = Instant::now();
    let mut srv = server(vec![Algorithm::Md5], t0);
    let mut client = DigestClient::new("alice", "wrong");
    let ch = srv.challenge(t0);
    let a1 = client
        .respond(values(&ch), "INVITE", "sip:b@x", None, &mut fixed("c"))
        .unwrap();
    let again = challenge_of(srv.authenticate(t0, ip(), "INVITE", None, [a1.as_str()], &users()));
    let e = client
        .respond(
            values(&again),
            "INVITE",
            "sip:b@x",
            Some(&a1),
            &mut fixed("c"),
        )
        .unwrap_err();
    assert_eq!(
        e,
        AuthError::CredentialsRejected {
            realm: "example.org".into()
        }
    );
    assert_eq!(e.sip_status(), 403);

    // same nonce challenged again after we answered it → give up, even if "stale"
    let ch = r#"Digest realm="r", nonce="same", qop="auth", algorithm=MD5"#;
    let stale_same = r#"Digest realm="r", nonce="same", qop="auth", algorithm=MD5, stale=true"#;
    let mut client = DigestClient::new("u", "p");
    let a1 = client
        .respond([ch], "INVITE", "sip:b@x", None, &mut fixed("c"))
        .unwrap();
    assert!(matches!(
        client.respond([ch], "INVITE", "sip:b@x", Some(&a1), &mut fixed("c")),
        Err(AuthError::CredentialsRejected { .. })
    ));
    assert!(matches!(
        client.respond(
            [stale_same],
            "INVITE",
            "sip:b@x",
            Some(&a1),
            &mut fixed("c")
        ),
        Err(AuthError::CredentialsRejected { .. })
    ));
    // stale with a new nonce → answered; but not forever
    let mut prev = a1;
    for i in 0..3 {
        let s = format!(r#"Digest realm="r", nonce="n{i}", qop="auth", stale=true"#);
        prev = client
            .respond(
                [s.as_str()],
                "INVITE",
                "sip:b@x",
                Some(&prev),
                &mut fixed("c"),
            )
            .unwrap();
    }
    let s = r#"Digest realm="r", nonce="n9", qop="auth", stale=true"#;
    assert!(
        client
            .respond([s], "INVITE", "sip:b@x", Some(&prev), &mut fixed("c"))
            .is_err()
    );
    // a fresh request (no previous credentials) starts over
    assert!(
        client
            .respond([ch], "INVITE", "sip:b@x", None, &mut fixed("c"))
            .is_ok()
    );
}

#[test]
fn client_nc_counts_per_nonce() {
    let ch = r#"Digest realm="r", nonce="n1", qop="auth""#;
    let mut client = DigestClient::new("u", "p");
    let a = client
        .respond([ch], "REGISTER", "sip:r", None, &mut fixed("c"))
        .unwrap();
    assert!(a.contains("nc=00000001"));
    let b = client
        .authorize("REGISTER", "sip:r", &mut fixed("c"))
        .unwrap()
        .unwrap();
    assert!(b.contains("nc=00000002"));
    // the same nonce challenged for a new request continues counting
    let c = client
        .respond([ch], "REGISTER", "sip:r", None, &mut fixed("c"))
        .unwrap();
    assert!(c.contains("nc=00000003"));
    let d = client
        .respond(
            [r#"Digest realm="r", nonce="n2", qop="auth""#],
            "REGISTER",
            "sip:r",
            None,
            &mut fixed("c"),
        )
        .unwrap();
    assert!(d.contains("nc=00000001"));
    // no qop → nothing to reuse
    let mut plain = DigestClient::new("u", "p");
    plain
        .respond(
            [r#"Digest realm="r", nonce="n""#],
            "REGISTER",
            "sip:r",
            None,
            &mut fixed("c"),
        )
        .unwrap();
    assert!(
        plain
            .authorize("REGISTER", "sip:r", &mut fixed("c"))
            .is_none()
    );
    assert!(
        DigestClient::new("u", "p")
            .authorize("REGISTER", "sip:r", &mut fixed("c"))
            .is_none()
    );
}

#[test]
fn client_refuses_unanswerable_challenges() {
    let mut c = DigestClient::new("u", "p");
    let e = c
        .respond(
            [r#"Digest realm="r", nonce="n", algorithm=SHA3-512"#],
            "INVITE",
            "sip:x",
            None,
            &mut fixed("c"),
        )
        .unwrap_err();
    assert_eq!(e, AuthError::UnsupportedAlgorithm("SHA3-512".into()));
    assert_eq!(e.sip_status(), 403);
    // a control character in the Request-URI cannot be put on the wire
    let e = c
        .respond(
            [r#"Digest realm="r", nonce="n""#],
            "INVITE",
            "sip:x\r\nVia: evil",
            None,
            &mut fixed("c"),
        )
        .unwrap_err();
    assert!(matches!(e, AuthError::InvalidParam { name: "uri", .. }));
}

// --- Meta --------------------------------------------------------------------------------

#[test]
fn meta_407_answered_as_business_number_without_plus() {
    let ch = r#"Digest realm="wa.meta.vc",nonce="1234abcd-5678",opaque="0123456789abcdef",algorithm=MD5,qop="auth""#;
    let uri = "sip:+447700900123@wa.meta.vc;transport=tls";
    let mut client = meta_client("+17125550259", "meta-sip-pw").unwrap();
    let v = client
        .respond([ch], "INVITE", uri, None, &mut fixed("deadbeef"))
        .unwrap();
    let c = Credentials::parse(&v).unwrap();
    assert_eq!(c.username, "17125550259");
    assert_eq!(c.realm, META_REALM);
    assert_eq!(c.uri, uri);
    assert_eq!(c.opaque.as_deref(), Some("0123456789abcdef"));
    assert_eq!(c.algorithm, Some(Algorithm::Md5));
    assert_eq!((c.qop, c.nc), (Some(Qop::Auth), Some(1)));
    let h = |s: &str| DigestHash::Md5.hex(s.as_bytes());
    let ha1 = h("17125550259:wa.meta.vc:meta-sip-pw");
    let ha2 = h(&format!("INVITE:{uri}"));
    assert_eq!(
        c.response,
        h(&format!("{ha1}:1234abcd-5678:00000001:deadbeef:auth:{ha2}"))
    );
    assert!(v.contains("algorithm=MD5") && v.contains("qop=auth") && v.contains("nc=00000001"));
    // SHA-256 from Meta works too
    let sha = ch.replace("MD5", "SHA-256");
    let v = meta_client("+17125550259", "pw")
        .unwrap()
        .respond([sha.as_str()], "INVITE", uri, None, &mut fixed("c"))
        .unwrap();
    assert_eq!(
        Credentials::parse(&v).unwrap().algorithm,
        Some(Algorithm::Sha256)
    );
    // other realms are not answered with the Meta password
    let evil = ch.replace("wa.meta.vc", "evil.example");
    assert!(
        client
            .respond([evil.as_str()], "INVITE", uri, None, &mut fixed("c"))
            .is_err()
    );
    assert!(meta_digest_username("+1712-555").is_err());
    assert!(meta_digest_username("").is_err());
    assert_eq!(
        meta_digest_username("447700900123").unwrap(),
        "447700900123"
    );
}

// --- errors ------------------------------------------------------------------------------

#[test]
fn error_status_mapping() {
    assert_eq!(AuthError::Unauthorized { proxy: false }.sip_status(), 401);
    assert_eq!(AuthError::Unauthorized { proxy: true }.sip_status(), 407);
    assert_eq!(AuthError::MissingParam("nonce").sip_status(), 400);
    assert_eq!(AuthError::NoUsableChallenge.sip_status(), 403);
    let l = AuthError::LockedOut {
        retry_after: Duration::from_millis(1500),
    };
    assert_eq!(
        (l.sip_status(), l.reason_phrase(), l.retry_after_secs()),
        (403, "Forbidden", Some(2))
    );
}

// --- independent implementation ----------------------------------------------------------

/// Runs python3 with a bounded wait; `None` when python3 is unavailable.
fn python(script: &str, args: &[&str]) -> Option<String> {
    use std::process::{Command, Stdio};
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .ok()?;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        if child.try_wait().ok()?.is_some() {
            break;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("python3 did not finish in 20 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = child.wait_with_output().ok()?;
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8(out.stdout).unwrap().trim().to_owned())
}

/// A tiny independent digest client (regex parse + hashlib), not sharing any of our code.
const PY_CLIENT: &str = r#"
import hashlib, re, sys
chal, method, uri, user, pw = sys.argv[1:6]
p = {k: v for k, v in re.findall(r'(\w+)="?([^",]*)"?', chal)}
alg = p.get('algorithm', 'MD5')
h = {'MD5': 'md5', 'SHA-256': 'sha256'}[alg.upper().replace('-SESS', '')]
H = lambda s: hashlib.new(h, s.encode()).hexdigest()
cnonce, nc, qop = '0a4f113b', '00000001', 'auth'
ha1 = H(f"{user}:{p['realm']}:{pw}")
if alg.lower().endswith('-sess'):
    ha1 = H(f"{ha1}:{p['nonce']}:{cnonce}")
ha2 = H(f"{method}:{uri}")
resp = H(f"{ha1}:{p['nonce']}:{nc}:{cnonce}:{qop}:{ha2}")
print(f'Digest username="{user}", realm="{p["realm"]}", nonce="{p["nonce"]}", uri="{uri}", '
      f'response="{resp}", algorithm={alg}, cnonce="{cnonce}", qop={qop}, nc={nc}')
"#;

#[test]
fn server_accepts_credentials_from_python_hashlib() {
    let t0 = Instant::now();
    for alg in [Algorithm::Md5, Algorithm::Sha256, Algorithm::Sha256Sess] {
        let mut srv = server(vec![alg.clone()], t0);
        let ch = srv.challenge(t0);
        let uri = "sip:+17125550259@gw.example.org;transport=tls";
        let Some(auth) = python(
            PY_CLIENT,
            &[&ch.values[0], "INVITE", uri, "alice", "wonderland"],
        ) else {
            eprintln!("python3 not available, skipping");
            return;
        };
        let v = srv.authenticate(t0, ip(), "INVITE", Some(uri), [auth.as_str()], &users());
        assert_eq!(
            v,
            Verdict::Accepted {
                username: "alice".into()
            },
            "{alg}: {auth}"
        );
        // and our client agrees byte for byte on the response
        let ours = DigestClient::new("alice", "wonderland")
            .respond(values(&ch), "INVITE", uri, None, &mut fixed("0a4f113b"))
            .unwrap();
        assert_eq!(
            Credentials::parse(&ours).unwrap().response,
            Credentials::parse(&auth).unwrap().response
        );
        // wrong password from the independent client is refused
        let ch = srv.challenge(t0);
        let bad = python(PY_CLIENT, &[&ch.values[0], "INVITE", uri, "alice", "x"]).unwrap();
        assert!(matches!(
            srv.authenticate(t0, ip(), "INVITE", Some(uri), [bad.as_str()], &users()),
            Verdict::Challenge(_)
        ));
    }
}

// --- property tests ----------------------------------------------------------------------

mod prop {
    use super::*;
    use proptest::prelude::*;

    fn text() -> impl Strategy<Value = String> {
        // printable ASCII and some UTF-8, including quotes and backslashes
        proptest::string::string_regex("[ -~\t\u{e9}\u{4e2d}]{0,24}").unwrap()
    }

    proptest! {
        #[test]
        fn parsers_never_panic(s in "\\PC*") {
            let _ = Challenge::parse(&s);
            let _ = Credentials::parse(&s);
            let _ = select_challenge([s.as_str()]);
        }

        #[test]
        fn parsers_never_panic_on_near_valid(s in "(Digest|digest|Basic)?[ \t\r\n]{0,2}([a-z]{1,6}[ ]?=[ ]?(\"([^\"\\\\]|\\\\.){0,8}\"|[a-z0-9]{0,6})[ ]?,?[ \r\n\t]{0,2}){0,6}") {
            let _ = Challenge::parse(&s);
            let _ = Credentials::parse(&s);
        }

        #[test]
        fn challenge_round_trips(realm in text(), nonce in text(), opaque in proptest::option::of(text()),
                                 stale: bool, userhash: bool, alg in 0usize..7) {
            let algs = [None, Some(Algorithm::Md5), Some(Algorithm::Sha256), Some(Algorithm::Sha256Sess),
                        Some(Algorithm::Md5Sess), Some(Algorithm::Sha512_256), Some(Algorithm::Unknown("X-1".into()))];
            let mut c = Challenge::new(realm, nonce);
            c.opaque = opaque;
            c.stale = stale;
            c.userhash = userhash;
            c.algorithm = algs[alg].clone();
            c.qop = vec![Qop::Auth, Qop::AuthInt];
            let v = c.to_header_value().unwrap();
            prop_assert_eq!(Challenge::parse(&v).unwrap(), c);
        }

        #[test]
        fn credentials_round_trip(user in text(), uri in text(), cnonce in text(), nc: u32,
                                  resp in "[0-9a-f]{32}") {
            let c = Credentials {
                username: user, realm: "r".into(), nonce: "n".into(), uri,
                response: resp, algorithm: Some(Algorithm::Sha256), cnonce: Some(cnonce),
                opaque: None, qop: Some(Qop::Auth), nc: Some(nc), userhash: false, other: vec![],
            };
            let v = c.to_header_value().unwrap();
            prop_assert_eq!(Credentials::parse(&v).unwrap(), c);
        }

        #[test]
        fn client_server_agree(user in "[a-z0-9+]{1,12}", pw in text(), uri in "sip:[a-z0-9@.;=+]{1,30}") {
            let t0 = Instant::now();
            let mut srv = DigestServer::new(ServerConfig::new("example.org"), [5; 32], t0).unwrap();
            let ch = srv.challenge(t0);
            let auth = DigestClient::new(user.clone(), pw.clone())
                .respond(ch.values.iter().map(String::as_str), "INVITE", &uri, None, &mut RandomCnonce)
                .unwrap();
            let store = HashMap::from([(user.clone(), pw)]);
            let v = srv.authenticate(t0, "127.0.0.1".parse().unwrap(), "INVITE", Some(&uri), [auth.as_str()], &store);
            prop_assert_eq!(v, Verdict::Accepted { username: user });
        }
    }
}

#[test]
fn secrets_never_appear_in_debug_output() {
    let client = DigestClient::new("alice", "hunter2-secret");
    let secret = UserSecret::Password("hunter2-secret".into());
    let ha1 = UserSecret::Ha1("0123abcd".into());
    let t0 = Instant::now();
    let srv = server(vec![Algorithm::Md5], t0);
    for s in [
        format!("{client:?}"),
        format!("{secret:?}"),
        format!("{ha1:?}"),
        format!("{srv:?}"),
    ] {
        assert!(
            !s.contains("hunter2") && !s.contains("0123abcd") && !s.contains("[42"),
            "{s}"
        );
    }
}

#[test]
fn lockout_threshold_zero_disables_it() {
    let t0 = Instant::now();
    let mut cfg = ServerConfig::new("example.org");
    cfg.lockout.threshold = 0;
    let mut srv = DigestServer::new(cfg, [2; 32], t0).unwrap();
    for i in 0..20 {
        let ch = srv.challenge(t0);
        let a = DigestClient::new("alice", "bad")
            .respond(values(&ch), "INVITE", "sip:b@x", None, &mut fixed("c"))
            .unwrap();
        let v = srv.authenticate(t0, ip(), "INVITE", None, [a.as_str()], &users());
        assert!(matches!(v, Verdict::Challenge(_)), "attempt {i}: {v:?}");
    }
}
