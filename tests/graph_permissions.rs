//! `whatsip permissions check/request` against a real `whatsip sandbox` process.
mod graph_support;
use graph_support::*;
use serde_json::json;

#[test]
fn check_shows_status_for_e164_and_bsuid() {
    let sb = Sandbox::start();
    let o = run(
        &args(
            &["permissions", "check", "+15551234567", "--json"],
            &sb.graph_args(),
        ),
        "sandbox",
    );
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    let p: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(p["permission"]["status"], "permanent");
    let start = p["actions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["action_name"] == "start_call")
        .unwrap();
    assert_eq!(start["can_perform_action"], true);

    let o = run(
        &args(
            &["permissions", "check", "US.13491208655302741919"],
            &sb.graph_args(),
        ),
        "sandbox",
    );
    let (out, _) = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(out.contains("permission: no_permission"), "{out}");
    assert!(
        out.contains(
            "SIP: 403 Forbidden / Warning: 399 whatsip \"Meta 138006: no approved call permission\""
        ),
        "{out}"
    );

    let o = run(
        &args(&["permissions", "check", "not-a-user"], &sb.graph_args()),
        "sandbox",
    );
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn request_honours_per_pair_limits_and_permanent_permission() {
    let sb = Sandbox::start();
    let o = run(
        &args(
            &["permissions", "request", "+15557654321"],
            &sb.graph_args(),
        ),
        "sandbox",
    );
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    assert!(
        out.contains("call permission request sent to +15557654321: wamid."),
        "{out}"
    );
    let (_, msgs) = sb.get("/sandbox/messages");
    assert_eq!(msgs["messages"].as_array().map(Vec::len), Some(1));

    // second within 24 h: refused before sending
    let o = run(
        &args(
            &["permissions", "request", "US.13491208655302741919"],
            &sb.graph_args(),
        ),
        "sandbox",
    );
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1));
    assert!(err.contains("Meta 138009"), "{err}");
    let (_, msgs) = sb.get("/sandbox/messages");
    assert_eq!(msgs["messages"].as_array().map(Vec::len), Some(1));

    // the twin enforces it too
    let body = json!({"messaging_product":"whatsapp","to":"15557654321","type":"interactive",
        "interactive":{"type":"call_permission_request","action":{"name":"call_permission_request"},"body":{"text":"hi"}}});
    let (status, resp) = http(
        sb.port,
        "POST",
        &format!("/v23.0/{PNID}/messages"),
        Some("sandbox"),
        Some(&body),
    );
    assert_eq!(status, 400);
    assert_eq!(resp["error"]["code"], 138009);

    let o = run(
        &args(
            &["permissions", "request", "+15551234567"],
            &sb.graph_args(),
        ),
        "sandbox",
    );
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1));
    assert!(err.contains("Meta 138017"), "{err}");
}

#[test]
fn control_api_grants_a_temporary_permission() {
    let sb = Sandbox::start();
    let (status, _) = http(
        sb.port,
        "POST",
        "/sandbox/permissions",
        None,
        Some(&json!({"user": "+15557654321", "status": "temporary"})),
    );
    assert_eq!(status, 200);
    let o = run(
        &args(
            &["permissions", "check", "+15557654321", "--json"],
            &sb.graph_args(),
        ),
        "sandbox",
    );
    let p: serde_json::Value = serde_json::from_str(&text(&o).0).unwrap();
    assert_eq!(p["permission"]["status"], "temporary");
    assert!(p["permission"]["expiration_time"].as_i64().unwrap() > 0);

    let call = json!({"messaging_product":"whatsapp","to":"15557654321","action":"connect",
        "session":{"sdp_type":"offer","sdp":"v=0\r\n"}, "biz_opaque_callback_data": "x".repeat(513)});
    // SIP on: 131055 before anything else
    let (_, resp) = http(
        sb.port,
        "POST",
        &format!("/v23.0/{PNID}/calls"),
        Some("sandbox"),
        Some(&call),
    );
    assert_eq!(resp["error"]["code"], 131055);
}
