//! The sandbox's SIP edge against independent clients: `openssl s_client` for the TLS/ALPN
//! rule, SIPp (through a socat TLS wrapper) for every refusal of a business-initiated call and
//! for a full call (407 → digest → 100/180/200 with Meta's headers → ACK → re-INVITE 500 →
//! UPDATE 405 → BYE).
mod sandbox_support;

use sandbox_support::*;
use std::process::Stdio;
use std::time::Duration;
use whatsip::sandbox::edge::{CallState, RouteStyle};
use whatsip::sip::auth::Algorithm;

const OK_FROM: &str = "sip:+15550001111@gateway.whatsip.test";
const OK_RURI: &str = "sip:+15551234567@wa.meta.vc;transport=tls";

async fn s_client(
    edge: std::net::SocketAddr,
    ca: &std::path::Path,
    alpn: Option<&str>,
) -> (bool, String) {
    let mut cmd = tokio::process::Command::new("openssl");
    cmd.args(["s_client", "-connect"])
        .arg(edge.to_string())
        .args([
            "-servername",
            "wa.meta.vc",
            "-verify_hostname",
            "wa.meta.vc",
            "-verify_return_error",
            "-CAfile",
        ])
        .arg(ca);
    if let Some(a) = alpn {
        cmd.args(["-alpn", a]);
    }
    let out = tokio::time::timeout(
        Duration::from_secs(15),
        cmd.stdin(Stdio::null()).kill_on_drop(true).output(),
    )
    .await
    .expect("openssl finished")
    .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alpn_sip_gets_alert_120_and_no_alpn_verifies_as_wa_meta_vc() {
    let sb = sandbox(Algorithm::Sha256, 5061).await;
    let (ok, text) = s_client(sb.edge(), &sb.ca(), Some("sip")).await;
    assert!(!ok, "handshake with ALPN sip must fail: {text}");
    assert!(
        text.contains("no application protocol") || text.contains("alert number 120"),
        "expected alert 120 no_application_protocol: {text}"
    );
    let (ok, text) = s_client(sb.edge(), &sb.ca(), None).await;
    assert!(ok, "handshake without ALPN must verify wa.meta.vc: {text}");
    assert!(text.contains("Verify return code: 0 (ok)"), "{text}");
    assert!(text.contains("No ALPN negotiated"), "{text}");
}

/// `GET /sandbox/refused` of `sb`'s control API.
async fn refused(sb: &Sandbox) -> Vec<serde_json::Value> {
    let v: serde_json::Value = reqwest::Client::new()
        .get(format!("http://{}/sandbox/refused", sb.running.http_addr))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v.as_array()
        .unwrap_or_else(|| panic!("not a list: {v:#}"))
        .clone()
}

/// First lines of a transcript (`sip` array of the control API), as `dir first_line`.
fn lines(sip: &serde_json::Value) -> Vec<String> {
    sip.as_array()
        .unwrap()
        .iter()
        .map(|e| {
            format!(
                "{} {}",
                e["dir"].as_str().unwrap(),
                e["first_line"].as_str().unwrap()
            )
        })
        .collect()
}

/// Asserts the control API lists exactly one refused `method` with `status`, whose
/// transcript holds the request as received and the answer as sent; returns it.
async fn assert_refused(sb: &Sandbox, method: &str, status: u16) -> serde_json::Value {
    let list = refused(sb).await;
    assert_eq!(list.len(), 1, "{list:#?}");
    let r = list[0].clone();
    assert_eq!(r["method"], method, "{r:#}");
    assert_eq!(r["status"], status, "{r:#}");
    assert_eq!(r["id"], "ref-1", "{r:#}");
    let l = lines(&r["sip"]);
    assert!(
        l.first()
            .is_some_and(|f| f.starts_with(&format!("received {method} "))),
        "{l:?}"
    );
    assert!(
        l.iter()
            .any(|x| x.starts_with(&format!("sent SIP/2.0 {status} "))),
        "{l:?}"
    );
    assert!(
        sb.running.edge.calls.list().is_empty(),
        "a refusal is no call"
    );
    r
}

async fn refusal(method: &str, ruri: &str, from: &str, status: &str, expect: &str) {
    let sb = refusal_on(method, ruri, from, status, expect).await;
    let code: u16 = status.parse().unwrap();
    if code < 300 {
        // answered outside any call (OPTIONS): no refusal, no call
        assert_eq!(refused(&sb).await, Vec::<serde_json::Value>::new());
        assert!(sb.running.edge.calls.list().is_empty());
    } else {
        let r = assert_refused(&sb, method, code).await;
        assert_eq!(r["request_uri"], ruri, "{r:#}");
        assert!(r["from"].as_str().unwrap().contains(from), "{r:#}");
    }
}

/// Runs the refusal scenario; returns the sandbox to inspect.
async fn refusal_on(method: &str, ruri: &str, from: &str, status: &str, expect: &str) -> Sandbox {
    let sb = sandbox(Algorithm::Md5, 5061).await;
    let (_socat, port) = tls_wrapper(sb.edge(), &sb.ca()).await;
    let xml = scenario(
        "sandbox_refusal.xml",
        &[
            ("METHOD", method),
            ("RURI", ruri),
            ("FROM", from),
            ("STATUS", status),
            ("EXPECT", expect),
        ],
    );
    let (ok, log) = run_sipp(&xml, port).await;
    assert!(
        ok,
        "{method} {ruri} from {from}: expected {status} /{expect}/\n{log}"
    );
    sb
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sips_request_uri_gets_404() {
    refusal(
        "INVITE",
        "sips:+15551234567@wa.meta.vc",
        OK_FROM,
        "404",
        "SIP/2.0 404",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ip_request_uri_gets_404() {
    refusal(
        "INVITE",
        "sip:+15551234567@157.240.19.130;transport=tls",
        OK_FROM,
        "404",
        "SIP/2.0 404",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_user_not_a_business_number_gets_400() {
    refusal(
        "INVITE",
        OK_RURI,
        "sip:+15559990000@gateway.whatsip.test",
        "400",
        "SIP/2.0 400",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_host_not_configured_gets_403_with_metas_warning() {
    let sb = refusal_on(
        "INVITE",
        OK_RURI,
        "sip:+15550001111@pbx.example.net",
        "403",
        "SIP/2.0 403",
    )
    .await;
    let r = assert_refused(&sb, "INVITE", 403).await;
    assert_eq!(
        r["reason"],
        "SIP server pbx.example.net from INVITE does not match any SIP server configured for phone number id 106540352242922",
        "{r:#}"
    );
    assert!(
        r["warning"]
            .as_str()
            .is_some_and(|w| w.starts_with("399 wa.meta.vc \"SIP server pbx.example.net")),
        "{r:#}"
    );
    refusal(
        "INVITE",
        OK_RURI,
        "sip:+15550001111@pbx.example.net",
        "403",
        "Warning: 399 wa.meta.vc \"SIP server pbx.example.net from INVITE does not match any SIP server configured for phone number id 106540352242922\"",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parent_domain_from_host_is_challenged_407_realm_wa_meta_vc() {
    refusal(
        "INVITE",
        OK_RURI,
        "sip:+15550001111@whatsip.test",
        "407",
        "Proxy-Authenticate: Digest realm=\"wa.meta.vc\"",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_gets_403() {
    refusal(
        "REGISTER",
        "sip:wa.meta.vc;transport=tls",
        OK_FROM,
        "403",
        "SIP/2.0 403",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn options_gets_200_with_metas_allow() {
    refusal(
        "OPTIONS",
        "sip:wa.meta.vc;transport=tls",
        OK_FROM,
        "200",
        "Allow: INVITE, ACK, BYE, CANCEL, NOTIFY, OPTIONS",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_refer_info_get_405_with_metas_allow() {
    for m in ["UPDATE", "REFER", "INFO"] {
        refusal(
            m,
            OK_RURI,
            OK_FROM,
            "405",
            "Allow: INVITE, ACK, BYE, CANCEL, NOTIFY, OPTIONS",
        )
        .await;
    }
}

/// SIPp's digest `uri` for a call to `callee` (SIPp prefixes `sip:`): the Request-URI.
fn auth_uri(callee: &str) -> String {
    format!("{callee}@wa.meta.vc;transport=tls")
}

async fn auth_refusal(callee: &str, user: &str, password: Option<&str>, expect: &str) {
    auth_refusal_uri(callee, user, password, &auth_uri(callee), expect).await;
}

async fn auth_refusal_uri(
    callee: &str,
    user: &str,
    password: Option<&str>,
    uri: &str,
    expect: &str,
) {
    let sb = sandbox(Algorithm::Md5, 5061).await;
    let (_socat, port) = tls_wrapper(sb.edge(), &sb.ca()).await;
    let pw = password
        .map(str::to_string)
        .unwrap_or_else(|| sb.password());
    let xml = scenario(
        "sandbox_auth_refusal.xml",
        &[
            ("CALLEE", callee),
            ("USER", user),
            ("PASSWORD", &pw),
            ("STATUS", "403"),
            ("EXPECT", expect),
        ],
    );
    let (ok, log) = run_sipp_args(&xml, port, &["-auth_uri", uri]).await;
    assert!(ok, "expected 403 /{expect}/\n{log}");
    // on the wire and in the control API: INVITE → 407 → ACK → INVITE with credentials → 403
    let r = assert_refused(&sb, "INVITE", 403).await;
    let l = lines(&r["sip"]);
    let at = |p: &str| {
        l.iter()
            .position(|x| x.starts_with(p))
            .unwrap_or_else(|| panic!("{p} not in {l:?}"))
    };
    assert!(at("sent SIP/2.0 407") < at("sent SIP/2.0 403"), "{l:?}");
    let invites = l
        .iter()
        .filter(|x| x.starts_with("received INVITE "))
        .count();
    assert_eq!(invites, 2, "{l:?}");
    let with_creds = r["sip"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            e["headers"]
                .as_array()
                .unwrap()
                .iter()
                .any(|h| h[0] == "Proxy-Authorization")
        })
        .count();
    assert_eq!(with_creds, 1, "{r:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn digest_username_with_plus_gets_403() {
    auth_refusal("+15551234567", "+15550001111", None, "SIP/2.0 403").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn digest_uri_not_the_request_uri_gets_403() {
    auth_refusal_uri(
        "+15551234567",
        "15550001111",
        None,
        "+15551234567@wa.meta.vc",
        "SIP/2.0 403",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_digest_password_gets_403() {
    auth_refusal(
        "+15551234567",
        "15550001111",
        Some("not-the-password"),
        "SIP/2.0 403",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_without_call_permission_gets_403_138006() {
    auth_refusal(
        "+15557654321",
        "15550001111",
        None,
        "Warning: 399 wa.meta.vc .*138006",
    )
    .await;
}

async fn business_call(callee: &str, routes: &str) -> whatsip::sandbox::edge::CallRecord {
    business_call_styled(callee, routes, RouteStyle::Meta).await
}

async fn business_call_styled(
    callee: &str,
    routes: &str,
    style: RouteStyle,
) -> whatsip::sandbox::edge::CallRecord {
    let sb = sandbox_cfg(Algorithm::Md5, 5061, Duration::from_secs(10), style).await;
    let (_socat, port) = tls_wrapper(sb.edge(), &sb.ca()).await;
    let pw = sb.password();
    let xml = scenario(
        "sandbox_call.xml",
        &[
            ("CALLEE", callee),
            ("USER", "15550001111"),
            ("PASSWORD", &pw),
            ("ROUTES", routes),
        ],
    );
    let (ok, log) = run_sipp_args(&xml, port, &["-auth_uri", &auth_uri(callee)]).await;
    assert!(ok, "business-initiated call failed\n{log}");
    let calls = sb.running.edge.calls.list();
    assert_eq!(calls.len(), 1, "{calls:?}");
    calls[0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn business_initiated_call_with_digest_connects_and_mirrors_payload_types() {
    let call = business_call("+15551234567", "[routes]").await;
    assert_eq!(call.state, CallState::Completed, "{call:?}");
    assert_eq!(call.status, Some(200));
    assert_eq!(call.end_reason.as_deref(), Some("bye_from_gateway"));
    assert_eq!(call.media.payload_type, Some(107));
    assert!(call.violations.is_empty(), "{:?}", call.violations);
    let ok = call
        .sip
        .iter()
        .find(|e| {
            e.dir == "sent" && e.first_line.starts_with("SIP/2.0 200") && e.body.contains("m=audio")
        })
        .expect("200 OK in the transcript");
    let rr: Vec<&str> = ok
        .headers
        .iter()
        .filter(|(n, _)| n == "Record-Route")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(
        rr,
        [
            "<sip:onevc-sip-proxy.fbinfra.net:8191;transport=tls;lr>",
            "<sip:wa.meta.vc;transport=tls;lr>"
        ]
    );
    // the transcript starts with the INVITE before the challenge, its 407 and the ACK
    let head: Vec<(&str, &str)> = call
        .sip
        .iter()
        .take(4)
        .map(|e| (e.dir.as_str(), e.first_line.as_str()))
        .filter(|(_, l)| !l.starts_with("SIP/2.0 100"))
        .collect();
    assert!(
        head.len() >= 3
            && head[0].0 == "received"
            && head[0].1.starts_with("INVITE ")
            && head[1] == ("sent", "SIP/2.0 407 Proxy Authentication Required")
            && head[2].0 == "received"
            && head[2].1.starts_with("ACK "),
        "{head:?}"
    );
    assert!(call.sip[0].header("Proxy-Authorization").is_none());
    let statuses: Vec<&str> = call
        .sip
        .iter()
        .filter(|e| e.dir == "sent")
        .map(|e| e.first_line.as_str())
        .collect();
    for want in [
        "SIP/2.0 100",
        "SIP/2.0 180",
        "SIP/2.0 200",
        "SIP/2.0 500",
        "SIP/2.0 405",
    ] {
        assert!(
            statuses.iter().any(|s| s.starts_with(want)),
            "{want} missing in {statuses:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bsuid_callee_is_accepted() {
    let call = business_call("US.13491208655302741918", "[routes]").await;
    assert_eq!(call.to, "US.13491208655302741918");
    assert_eq!(call.state, CallState::Completed, "{call:?}");
    let ok = call
        .sip
        .iter()
        .find(|e| {
            e.dir == "sent" && e.first_line.starts_with("SIP/2.0 200") && e.body.contains("m=audio")
        })
        .expect("200 OK in the transcript");
    assert!(
        ok.headers
            .iter()
            .any(|(n, v)| n == "x-wa-meta-user-id" && v == "US.13491208655302741918"),
        "{:?}",
        ok.headers
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ack_and_bye_outside_the_route_set_are_violations() {
    let call = business_call("+15551234567", "X-Routes: none").await;
    assert!(
        call.violations
            .iter()
            .any(|v| v.starts_with("ACK not routed")),
        "{:?}",
        call.violations
    );
    assert!(
        call.violations
            .iter()
            .any(|v| v.starts_with("BYE not routed")),
        "{:?}",
        call.violations
    );
}

/// Sets how the fixture user answers through the control API, then calls it.
async fn answered_as(mode: &str, status: &str, expect: &str) -> whatsip::sandbox::edge::CallRecord {
    let sb = sandbox(Algorithm::Md5, 5061).await;
    let resp = reqwest::Client::new()
        .post(format!("http://{}/sandbox/users", sb.running.http_addr))
        .json(&serde_json::json!({"user": "+15551234567", "answer": mode,
                                  "answer_delay_ms": 100, "ring_timeout_ms": 300}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["permission"], "permanent", "{v}");
    assert_eq!(v["behaviour"]["answer"], mode, "{v}");
    let (_socat, port) = tls_wrapper(sb.edge(), &sb.ca()).await;
    let pw = sb.password();
    let xml = scenario(
        "sandbox_auth_refusal.xml",
        &[
            ("CALLEE", "+15551234567"),
            ("USER", "15550001111"),
            ("PASSWORD", &pw),
            ("STATUS", status),
            ("EXPECT", expect),
        ],
    );
    let (ok, log) = run_sipp_args(&xml, port, &["-auth_uri", &auth_uri("+15551234567")]).await;
    assert!(ok, "{mode}: expected {status}\n{log}");
    let calls = sb.running.edge.calls.list();
    assert_eq!(calls.len(), 1);
    calls[0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_user_answers_486_at_once() {
    let call = answered_as("busy", "486", "SIP/2.0 486 Busy Here").await;
    assert_eq!((call.state, call.status), (CallState::Rejected, Some(486)));
    assert!(
        !call
            .sip
            .iter()
            .any(|e| e.first_line.starts_with("SIP/2.0 180")),
        "{:?}",
        call.sip
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejecting_user_rings_then_declines_486() {
    let call = answered_as("reject", "486", "SIP/2.0 486 Declined").await;
    assert_eq!((call.state, call.status), (CallState::Rejected, Some(486)));
    assert!(
        call.sip
            .iter()
            .any(|e| e.first_line.starts_with("SIP/2.0 180")),
        "{:?}",
        call.sip
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unanswering_user_gives_480_after_the_ring_timeout() {
    let call = answered_as("no_answer", "480", "SIP/2.0 480").await;
    assert_eq!((call.state, call.status), (CallState::Rejected, Some(480)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loopback_record_route_style_routes_ack_and_bye_to_the_edge() {
    let call = business_call_styled(
        "+15551234567",
        "[routes]",
        RouteStyle::Loopback("127.0.0.1:0".parse().unwrap()),
    )
    .await;
    assert_eq!(call.state, CallState::Completed, "{call:?}");
    assert!(call.violations.is_empty(), "{:?}", call.violations);
    let ok = call
        .sip
        .iter()
        .find(|e| {
            e.dir == "sent" && e.first_line.starts_with("SIP/2.0 200") && e.body.contains("m=audio")
        })
        .expect("200 OK in the transcript");
    let rr: Vec<&str> = ok
        .headers
        .iter()
        .filter(|(n, _)| n == "Record-Route")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(rr.len(), 2);
    assert!(
        rr.iter().all(
            |r| r.starts_with("<sip:127.0.0.1:") && r.contains(";transport=tls;lr;x-meta-hop=")
        ),
        "{rr:?}"
    );
}
