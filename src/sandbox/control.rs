//! The sandbox control API (merged into the sandbox HTTP router next to the Graph twin):
//! place user-initiated calls, define users (permission and how they answer), read calls
//! (state, media counters, SIP transcript, violations) and refused out-of-call requests. Documented in `docs/sandbox.md`.
//!
//! Guarantees: every refusal is a JSON `{"error": "..."}` with a 4xx status; nothing here
//! blocks on SIP beyond handing the command to the edge task.
use crate::sandbox::edge::calls::{AnswerMode, UserBehaviour};
use crate::sandbox::runtime::{EdgeHandle, PlaceCall};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

fn error(status: StatusCode, text: impl Into<String>) -> Response {
    (status, Json(serde_json::json!({ "error": text.into() }))).into_response()
}

/// The control routes over a running edge.
pub fn router(edge: EdgeHandle) -> Router {
    Router::new()
        .route("/sandbox/calls", post(place_call).get(list_calls))
        .route("/sandbox/calls/{id}", get(get_call))
        .route("/sandbox/calls/{id}/hangup", post(hangup))
        .route("/sandbox/users", post(set_user).get(list_users))
        .route("/sandbox/refused", get(list_refused))
        .route("/sandbox/edge", get(edge_info))
        .with_state(edge)
}

async fn place_call(State(edge): State<EdgeHandle>, body: Option<Json<PlaceCall>>) -> Response {
    let Some(Json(call)) = body else {
        return error(
            StatusCode::BAD_REQUEST,
            "body must be JSON {\"from\", \"to\", \"duration\"?}",
        );
    };
    if call.from.trim().is_empty() || call.to.trim().is_empty() {
        return error(StatusCode::BAD_REQUEST, "from and to are required");
    }
    match edge.place_call(call).await {
        Ok(id) => (StatusCode::CREATED, Json(serde_json::json!({ "id": id }))).into_response(),
        Err(e) => error(StatusCode::BAD_REQUEST, e),
    }
}

async fn list_calls(State(edge): State<EdgeHandle>) -> Response {
    Json(edge.calls.list()).into_response()
}

async fn list_refused(State(edge): State<EdgeHandle>) -> Response {
    Json(edge.calls.refused()).into_response()
}

async fn get_call(State(edge): State<EdgeHandle>, Path(id): Path<String>) -> Response {
    match edge.calls.get(&id) {
        Some(c) => Json(c).into_response(),
        None => error(StatusCode::NOT_FOUND, format!("no call {id}")),
    }
}

async fn hangup(State(edge): State<EdgeHandle>, Path(id): Path<String>) -> Response {
    match edge.hangup(&id).await {
        Ok(()) => Json(serde_json::json!({ "id": id })).into_response(),
        Err(e) => error(StatusCode::CONFLICT, e),
    }
}

/// `POST /sandbox/users` body.
#[derive(Debug, Deserialize)]
pub struct UserBody {
    /// `+E164`, digits or BSUID.
    pub user: String,
    /// `no_permission` | `temporary` | `permanent`.
    pub permission: Option<String>,
    /// Unix seconds (temporary permission).
    pub expiration_time: Option<i64>,
    pub answer: Option<AnswerMode>,
    pub answer_delay_ms: Option<u64>,
    pub ring_timeout_ms: Option<u64>,
    /// `echo` | `tone` | `silent`.
    pub media: Option<crate::sandbox::media_user::Mode>,
}

#[derive(Debug, Serialize)]
struct UserView {
    user: String,
    permission: Option<String>,
    behaviour: UserBehaviour,
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

async fn set_user(State(edge): State<EdgeHandle>, body: Option<Json<UserBody>>) -> Response {
    let Some(Json(b)) = body else {
        return error(StatusCode::BAD_REQUEST, "body must be JSON {\"user\", ...}");
    };
    let now = now_unix();
    let user = b.user.trim().to_string();
    if user.trim_start_matches('+').is_empty() {
        return error(StatusCode::BAD_REQUEST, "user is required");
    }
    // Creates the user (no permission) when unknown, or sets the given permission.
    let status = b.permission.clone().unwrap_or_else(|| {
        let st = edge.state.lock();
        st.user_key(&user)
            .and_then(|k| st.users.get(&k).map(|u| u.status.clone()))
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "no_permission".to_string())
    });
    if let Err(e) = edge
        .state
        .set_permission(&user, &status, b.expiration_time, now)
    {
        return error(StatusCode::BAD_REQUEST, e);
    }
    let key = edge
        .state
        .lock()
        .user_key(&user)
        .unwrap_or_else(|| user.trim_start_matches('+').to_string());
    let mut behaviour = edge.calls.behaviour(&key);
    if let Some(a) = b.answer {
        behaviour.answer = a;
    }
    if let Some(d) = b.answer_delay_ms {
        behaviour.answer_delay_ms = d.min(600_000);
    }
    if let Some(m) = b.media {
        behaviour.media = m;
    }
    if let Some(d) = b.ring_timeout_ms {
        behaviour.ring_timeout_ms = d.min(600_000);
    }
    edge.calls.set_user(&key, behaviour);
    Json(UserView {
        user: key,
        permission: Some(status),
        behaviour,
    })
    .into_response()
}

async fn list_users(State(edge): State<EdgeHandle>) -> Response {
    let users: Vec<UserView> = {
        let st = edge.state.lock();
        st.users
            .iter()
            .map(|(k, u)| UserView {
                user: k.clone(),
                permission: Some(u.status.clone()),
                behaviour: edge.calls.behaviour(k),
            })
            .collect()
    };
    Json(users).into_response()
}

async fn edge_info(State(edge): State<EdgeHandle>) -> Response {
    Json(serde_json::json!({
        "edge": edge.edge_addr.to_string(),
        "ca_path": edge.ca_path.display().to_string(),
    }))
    .into_response()
}
