//! The Graph API twin: `GET/POST /{vNN.0}/{phone_number_id}/settings` (with
//! `include_sip_credentials`, the same validation and error wording as `whatsip settings
//! push`), `GET …/call_permissions` (per-pair limits, API rate limit → 613), `POST
//! …/messages` (interactive `call_permission_request`, 1 per 24 h / 2 per 7 days → 138009),
//! `POST …/calls` (131055 while SIP is enabled), all behind the bearer token with Graph's
//! error envelope; plus control endpoints under `/sandbox/`.
pub mod state;

use crate::whatsapp::errors::MetaCode;
use crate::whatsapp::graph::error::{ErrorBody, ErrorData, ErrorEnvelope};
use crate::whatsapp::graph::limits::{BizOpaqueData, RateLimiter};
use crate::whatsapp::graph::permissions::unix_now;
use crate::whatsapp::graph::settings::{self, CallingSettings};
use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use state::{SandboxState, SentMessage};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Call-permission GETs allowed per second per number (Meta documents 100/s; older pages 5/s).
pub const PERMISSION_API_PER_SECOND: u32 = 100;

#[derive(Clone)]
struct App {
    state: SandboxState,
    perm_limiter: Arc<Mutex<RateLimiter>>,
}

/// The twin's router (Graph paths and `/sandbox/` control paths).
pub fn router(state: SandboxState) -> Router {
    let app = App {
        state,
        perm_limiter: Arc::new(Mutex::new(RateLimiter::new(
            PERMISSION_API_PER_SECOND,
            Duration::from_secs(1),
        ))),
    };
    Router::new()
        .route(
            "/{version}/{pnid}/settings",
            get(get_settings).post(post_settings),
        )
        .route("/{version}/{pnid}/call_permissions", get(get_permissions))
        .route("/{version}/{pnid}/messages", post(post_messages))
        .route("/{version}/{pnid}/calls", post(post_calls))
        .route("/sandbox/numbers", get(control_numbers))
        .route("/sandbox/permissions", post(control_set_permission))
        .route("/sandbox/messages", get(control_messages))
        .with_state(app)
}

fn graph_error(status: StatusCode, code: u32, message: &str, details: Option<String>) -> Response {
    let env = ErrorEnvelope {
        error: ErrorBody {
            message: message.to_string(),
            kind: Some("OAuthException".into()),
            code,
            error_subcode: None,
            error_user_title: None,
            error_user_msg: details.clone(),
            error_data: details.map(|d| ErrorData {
                messaging_product: Some("whatsapp".into()),
                details: Some(d),
            }),
            fbtrace_id: Some("SandboxTrace".into()),
        },
    };
    (status, Json(env)).into_response()
}

fn meta_error(status: StatusCode, code: MetaCode, details: Option<String>) -> Response {
    graph_error(
        status,
        code.code(),
        &format!("(#{}) {}", code.code(), code.short()),
        details,
    )
}

/// Bearer token and `vNN.N` version checks, then the number.
fn guard(app: &App, headers: &HeaderMap, version: &str, pnid: &str) -> Result<(), Box<Response>> {
    let token = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match token {
        None => {
            return Err(Box::new(graph_error(
                StatusCode::UNAUTHORIZED,
                190,
                "An access token is required to request this resource.",
                None,
            )));
        }
        Some(t) if t != app.state.lock().options.token => {
            return Err(Box::new(graph_error(
                StatusCode::UNAUTHORIZED,
                190,
                "Invalid OAuth access token - Cannot parse access token",
                None,
            )));
        }
        Some(_) => {}
    }
    let ok_version = version
        .strip_prefix('v')
        .and_then(|v| v.split_once('.'))
        .is_some_and(|(a, b)| {
            !a.is_empty()
                && !b.is_empty()
                && a.chars().all(|c| c.is_ascii_digit())
                && b.chars().all(|c| c.is_ascii_digit())
        });
    if !ok_version {
        return Err(Box::new(graph_error(
            StatusCode::BAD_REQUEST,
            2500,
            &format!("Unknown path components: /{version}"),
            None,
        )));
    }
    if !app.state.lock().numbers.contains_key(pnid) {
        return Err(Box::new(graph_error(
            StatusCode::BAD_REQUEST,
            100,
            &format!(
                "Unsupported request - method type: get or post. Object with ID '{pnid}' does not exist, cannot be loaded due to missing permissions, or does not support this operation"
            ),
            None,
        )));
    }
    Ok(())
}

async fn get_settings(
    State(app): State<App>,
    Path((version, pnid)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = guard(&app, &headers, &version, &pnid) {
        return *r;
    }
    let creds = q.get("include_sip_credentials").map(String::as_str) == Some("true");
    let st = app.state.lock();
    let Some(n) = st.numbers.get(&pnid) else {
        return meta_error(StatusCode::BAD_REQUEST, MetaCode::InvalidParameter, None);
    };
    let calling = if creds {
        n.calling.clone()
    } else {
        n.calling.without_secrets()
    };
    Json(json!({ "calling": calling, "id": pnid })).into_response()
}

async fn post_settings(
    State(app): State<App>,
    Path((version, pnid)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(r) = guard(&app, &headers, &version, &pnid) {
        return *r;
    }
    let invalid = |d: String| {
        graph_error(
            StatusCode::BAD_REQUEST,
            100,
            settings::MSG_INVALID_PARAMETER,
            Some(d),
        )
    };
    let v: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return invalid(format!("body is not JSON: {e}")),
    };
    let Some(calling) = v.get("calling") else {
        return invalid("calling is required".into());
    };
    let calling: CallingSettings = match serde_json::from_value(calling.clone()) {
        Ok(c) => c,
        Err(e) => return invalid(format!("calling: {e}")),
    };
    let now = jiff::Timestamp::now();
    if let Some(first) = settings::validate(&calling, now).into_iter().next() {
        return graph_error(
            StatusCode::BAD_REQUEST,
            100,
            first.violation.message,
            Some(first.violation.to_string()),
        );
    }
    app.state.lock().apply_settings(&pnid, calling);
    Json(json!({ "success": true })).into_response()
}

async fn get_permissions(
    State(app): State<App>,
    Path((version, pnid)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = guard(&app, &headers, &version, &pnid) {
        return *r;
    }
    let limited = app
        .perm_limiter
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .try_acquire(Instant::now())
        .is_err();
    if limited {
        return meta_error(
            StatusCode::TOO_MANY_REQUESTS,
            MetaCode::PermissionApiRateLimit,
            Some(format!(
                "Rate limit reached: at most {PERMISSION_API_PER_SECOND} requests per second"
            )),
        );
    }
    let Some(user) = q.get("user_wa_id").or_else(|| q.get("recipient")) else {
        return graph_error(
            StatusCode::BAD_REQUEST,
            100,
            settings::MSG_INVALID_PARAMETER,
            Some("user_wa_id or recipient is required".into()),
        );
    };
    let st = app.state.lock();
    Json(st.permissions_of(&pnid, user, unix_now())).into_response()
}

async fn post_messages(
    State(app): State<App>,
    Path((version, pnid)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(r) = guard(&app, &headers, &version, &pnid) {
        return *r;
    }
    let bad = |d: &str| {
        graph_error(
            StatusCode::BAD_REQUEST,
            100,
            settings::MSG_INVALID_PARAMETER,
            Some(d.to_string()),
        )
    };
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return bad("body is not JSON");
    };
    if v.get("messaging_product").and_then(Value::as_str) != Some("whatsapp") {
        return bad("messaging_product must be whatsapp");
    }
    let to = v
        .get("to")
        .or_else(|| v.get("recipient"))
        .and_then(Value::as_str)
        .map(str::to_string);
    let Some(to) = to else {
        return bad("to or recipient is required");
    };
    let is_request = v.get("type").and_then(Value::as_str) == Some("interactive")
        && v.pointer("/interactive/type").and_then(Value::as_str)
            == Some("call_permission_request")
        && v.pointer("/interactive/action/name")
            .and_then(Value::as_str)
            == Some("call_permission_request");
    if !is_request {
        return bad("the sandbox accepts only interactive call_permission_request messages");
    }
    if v.pointer("/interactive/header").is_some() || v.pointer("/interactive/footer").is_some() {
        return bad("call_permission_request takes no header or footer");
    }
    let text = v
        .pointer("/interactive/body/text")
        .and_then(Value::as_str)
        .unwrap_or("");
    if text.is_empty() {
        return bad("interactive.body.text is required");
    }
    let now = unix_now();
    let mut st = app.state.lock();
    let perms = st.permissions_of(&pnid, &to, now);
    if perms.permission.status == "permanent" {
        return meta_error(
            StatusCode::BAD_REQUEST,
            MetaCode::PermanentPermissionExists,
            Some("The user already granted permanent call permission".into()),
        );
    }
    let key = st
        .user_key(&to)
        .unwrap_or_else(|| to.trim_start_matches('+').to_string());
    if let Err(e) = st.request_limits.record(&format!("{pnid}/{key}"), now) {
        return meta_error(
            StatusCode::BAD_REQUEST,
            MetaCode::PermissionRequestLimit,
            Some(e.to_string()),
        );
    }
    let id = format!("wamid.SANDBOX{:012}", st.now_id());
    st.messages.push(SentMessage {
        id: id.clone(),
        phone_number_id: pnid,
        to: to.clone(),
        body: text.to_string(),
        timestamp: now,
    });
    Json(json!({
        "messaging_product": "whatsapp",
        "contacts": [{ "input": to, "wa_id": key }],
        "messages": [{ "id": id }]
    }))
    .into_response()
}

async fn post_calls(
    State(app): State<App>,
    Path((version, pnid)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(r) = guard(&app, &headers, &version, &pnid) {
        return *r;
    }
    let sip_enabled = app
        .state
        .lock()
        .numbers
        .get(&pnid)
        .is_some_and(|n| n.calling.sip_enabled());
    if sip_enabled {
        return meta_error(
            StatusCode::BAD_REQUEST,
            MetaCode::SipEnabledForNumber,
            Some(
                "Calling API endpoints are unavailable while SIP is enabled for this phone number"
                    .into(),
            ),
        );
    }
    let bad = |d: String| {
        graph_error(
            StatusCode::BAD_REQUEST,
            100,
            settings::MSG_INVALID_PARAMETER,
            Some(d),
        )
    };
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return bad("body is not JSON".into());
    };
    if let Some(data) = v.get("biz_opaque_callback_data").and_then(Value::as_str)
        && let Err(e) = BizOpaqueData::new(data)
    {
        return bad(e.to_string());
    }
    let now = unix_now();
    match v.get("action").and_then(Value::as_str) {
        Some("connect") => {
            let Some(to) = v
                .get("to")
                .or_else(|| v.get("recipient"))
                .and_then(Value::as_str)
            else {
                return bad("to or recipient is required".into());
            };
            if v.pointer("/session/sdp").and_then(Value::as_str).is_none() {
                return bad("session.sdp is required".into());
            }
            if let Err(code) = app.state.authorize_business_call(&pnid, to, now) {
                return meta_error(StatusCode::BAD_REQUEST, code, None);
            }
            let mut st = app.state.lock();
            let id = format!("wacid.SANDBOX{:012}", st.now_id());
            st.calls.push(id.clone());
            Json(json!({"messaging_product":"whatsapp","calls":[{"id": id}]})).into_response()
        }
        Some("pre_accept" | "accept" | "reject" | "terminate") => {
            let known = v
                .get("call_id")
                .and_then(Value::as_str)
                .is_some_and(|id| app.state.lock().calls.iter().any(|c| c == id));
            if !known {
                return bad("Invalid call-id".into());
            }
            Json(json!({"messaging_product":"whatsapp","success":true})).into_response()
        }
        other => bad(format!("unknown action {other:?}")),
    }
}

async fn control_numbers(State(app): State<App>) -> Response {
    let list: Vec<Value> = app
        .state
        .sip_targets()
        .into_iter()
        .map(|t| {
            json!({
                "phone_number_id": t.phone_number_id,
                "e164": t.e164,
                "calling_enabled": t.calling_enabled,
                "sip_enabled": t.sip_enabled,
                "hostname": t.hostname,
                "port": t.port,
                "request_uri_user_params": t.request_uri_user_params,
                "has_password": t.password.is_some(),
                "srtp_key_exchange_protocol": t.srtp_key_exchange_protocol,
                "additional_codecs": t.additional_codecs,
            })
        })
        .collect();
    Json(json!({ "numbers": list })).into_response()
}

#[derive(serde::Deserialize)]
struct SetPermission {
    user: String,
    status: String,
    #[serde(default)]
    expiration_time: Option<i64>,
}

async fn control_set_permission(State(app): State<App>, body: Bytes) -> Response {
    let req: SetPermission = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({"error": e.to_string()})),
            )
                .into_response();
        }
    };
    match app
        .state
        .set_permission(&req.user, &req.status, req.expiration_time, unix_now())
    {
        Ok(()) => Json(json!({"success": true})).into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, Json(json!({"error": e}))).into_response(),
    }
}

async fn control_messages(State(app): State<App>) -> Response {
    let msgs = app.state.lock().messages.clone();
    Json(json!({ "messages": msgs })).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::whatsapp::graph::permissions::{PermissionLookup, UserId};
    use crate::whatsapp::graph::{GraphClient, GraphTarget, RetryPolicy, Token};

    async fn serve(state: SandboxState) -> String {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(l, router(state)).await;
        });
        format!("http://{addr}")
    }

    fn client(base: String) -> GraphClient {
        GraphClient::new(GraphTarget {
            base_url: base,
            api_version: "v23.0".into(),
            token: Token::new("sandbox"),
            phone_number_id: state::FIXTURE_PHONE_NUMBER_ID.into(),
            timeout: Duration::from_secs(5),
            retry: RetryPolicy::default(),
        })
        .unwrap()
    }

    #[tokio::test]
    async fn permission_lookup_authorizes_caches_and_invalidates() {
        let st = SandboxState::new(state::SandboxOptions::default());
        let lookup =
            PermissionLookup::new(client(serve(st.clone()).await), Duration::from_secs(60), 5);
        let ok = UserId::parse("+15551234567").unwrap();
        let none = UserId::parse("US.13491208655302741919").unwrap();
        assert!(lookup.authorize_call(&ok).await.is_ok());
        let e = lookup.authorize_call(&none).await.unwrap_err();
        let a = e.sip_answer();
        assert_eq!(
            (a.status, a.warning.as_str()),
            (
                403,
                "399 whatsip \"Meta 138006: no approved call permission\""
            )
        );

        // the twin changes; the cache still answers until invalidated
        st.set_permission("+15557654321", "permanent", None, unix_now())
            .unwrap();
        assert!(lookup.authorize_call(&none).await.is_err());
        lookup.invalidate(&none).await;
        assert!(lookup.authorize_call(&none).await.is_ok());
    }

    #[tokio::test]
    async fn calls_endpoint_answers_131055_with_sip_and_enforces_permission_without() {
        let st = SandboxState::new(state::SandboxOptions::default());
        let c = client(serve(st.clone()).await);
        let body = json!({"messaging_product":"whatsapp","to":"15557654321","action":"connect",
            "session":{"sdp_type":"offer","sdp":"v=0\r\n"}});
        let e = c.post("calls", &body).await.unwrap_err();
        assert_eq!(e.meta_code(), Some(MetaCode::SipEnabledForNumber));
        let off: CallingSettings =
            serde_json::from_value(json!({"sip":{"status":"DISABLED"}})).unwrap();
        c.post_settings(&off).await.unwrap();
        let e = c.post("calls", &body).await.unwrap_err();
        assert_eq!(e.meta_code(), Some(MetaCode::NoCallPermission));
        let mut long = body.clone();
        long["to"] = json!("15551234567");
        long["biz_opaque_callback_data"] = json!("x".repeat(513));
        let e = c.post("calls", &long).await.unwrap_err();
        assert_eq!(e.meta_code(), Some(MetaCode::InvalidParameter));
        long["biz_opaque_callback_data"] = json!("x".repeat(512));
        let v = c.post("calls", &long).await.unwrap();
        assert!(
            v.pointer("/calls/0/id")
                .and_then(Value::as_str)
                .is_some_and(|id| id.starts_with("wacid."))
        );
    }
}
