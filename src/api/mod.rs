//! The gateway's HTTP API (axum), on loopback by default: `GET /healthz`, `/metrics`
//! (Prometheus text), `/calls`, `/calls/{id}`, `/records`, `/records/{id}`. Field names are
//! documented in `docs/http-api.md`.
//!
//! Guarantees: handlers never block the runtime (record queries run on the blocking pool);
//! errors are JSON `{"error": "..."}` with a 4xx/5xx status; the server binds only the address
//! it is given (`127.0.0.1:8080` by default, port 0 in tests).
pub mod calls;
pub mod health;

pub use calls::{ActiveCall, CallInfo, CallRegistry, CallSnapshot, MediaMeter, NewCall};
pub use health::{Health, HealthReport, Readiness, TrunkStatus};

use crate::metrics::{self, Metrics};
use crate::store::{
    CallState, Direction, RecordFilter, RecorderMonitor, Store, StoreError, Timestamp,
};
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use tokio::task::JoinHandle;

/// Default listen address.
pub const DEFAULT_ADDR: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 8080);

/// Everything the API reads. Clone freely (all shared handles).
#[derive(Debug, Clone)]
pub struct ApiState {
    pub health: Health,
    pub metrics: Arc<Metrics>,
    pub calls: CallRegistry,
    /// Call-record database read by `/records`; `None` = records disabled (404).
    pub records_db: Option<PathBuf>,
    /// The gateway's recorder counters, for `whatsip_records_*` metrics.
    pub recorder: Option<RecorderMonitor>,
}

impl ApiState {
    /// State with fresh health and metrics, an empty registry, and no records.
    pub fn new() -> ApiState {
        let metrics = Arc::new(Metrics::new());
        ApiState {
            health: Health::new(),
            calls: CallRegistry::new(metrics.clone()),
            metrics,
            records_db: None,
            recorder: None,
        }
    }

    /// Serves `/records` from `db`; `recorder` (from [`Recorder::monitor`]) adds the
    /// `whatsip_records_*` metrics.
    ///
    /// [`Recorder::monitor`]: crate::store::Recorder::monitor
    pub fn with_records(
        mut self,
        db: impl Into<PathBuf>,
        recorder: Option<RecorderMonitor>,
    ) -> ApiState {
        self.records_db = Some(db.into());
        self.recorder = recorder;
        self
    }
}

impl Default for ApiState {
    fn default() -> ApiState {
        ApiState::new()
    }
}

/// API server failures.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// The API's routes, for embedding or for tests with `tower::ServiceExt`.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics_text))
        .route("/calls", get(list_calls))
        .route("/calls/{id}", get(get_call))
        .route("/records", get(list_records))
        .route("/records/{id}", get(get_record))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such endpoint".into()) })
        .with_state(state)
}

/// Binds `addr` and serves the API on the current tokio runtime until the task is aborted.
/// Returns the server task and the bound address (useful with port 0).
pub async fn serve(
    addr: SocketAddr,
    state: ApiState,
) -> Result<(JoinHandle<std::io::Result<()>>, SocketAddr), ApiError> {
    serve_with_shutdown(addr, state, std::future::pending()).await
}

/// As [`serve`], finishing gracefully (in-flight requests complete) when `shutdown` resolves.
pub async fn serve_with_shutdown(
    addr: SocketAddr,
    state: ApiState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(JoinHandle<std::io::Result<()>>, SocketAddr), ApiError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ApiError::Bind { addr, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| ApiError::Bind { addr, source })?;
    let app = router(state);
    tracing::info!(addr = %local, "HTTP API listening");
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
    });
    Ok((task, local))
}

fn error(status: StatusCode, msg: String) -> Response {
    (status, Json(serde_json::json!({ "error": msg }))).into_response()
}

async fn healthz(State(s): State<ApiState>) -> Response {
    let report = s.health.report();
    let code = if report.status == "ok" {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(report)).into_response()
}

async fn metrics_text(State(s): State<ApiState>) -> Response {
    let mut out = String::with_capacity(8 * 1024);
    s.metrics.render(&mut out, &s.calls.live_media());
    if let Some(r) = &s.recorder {
        let st = r.stats();
        for (name, help, v) in [
            (
                "whatsip_records_written_total",
                "Call-record events written.",
                st.written,
            ),
            (
                "whatsip_records_dropped_total",
                "Call-record events dropped (queue full).",
                st.dropped,
            ),
            (
                "whatsip_records_failed_total",
                "Call-record events the database refused.",
                st.failed,
            ),
        ] {
            metrics::write_family(
                &mut out,
                name,
                "counter",
                help,
                &[(String::new(), v as f64)],
            );
        }
    }
    let report = s.health.report();
    metrics::write_family(
        &mut out,
        "whatsip_uptime_seconds",
        "gauge",
        "Seconds since the gateway started.",
        &[(String::new(), report.uptime_s as f64)],
    );
    metrics::write_family(
        &mut out,
        "whatsip_build_info",
        "gauge",
        "Build information.",
        &[(
            format!("version=\"{}\"", metrics::escape_label(&report.version)),
            1.0,
        )],
    );
    let trunks: Vec<(String, f64)> = report
        .trunks
        .iter()
        .map(|(n, t)| {
            (
                format!("trunk=\"{}\"", metrics::escape_label(n)),
                if *t == TrunkStatus::Up { 1.0 } else { 0.0 },
            )
        })
        .collect();
    if !trunks.is_empty() {
        metrics::write_family(
            &mut out,
            "whatsip_trunk_up",
            "gauge",
            "1 if the trunk is up.",
            &trunks,
        );
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
        .into_response()
}

async fn list_calls(State(s): State<ApiState>) -> Response {
    Json(s.calls.snapshot(Timestamp::now())).into_response()
}

async fn get_call(State(s): State<ApiState>, Path(id): Path<String>) -> Response {
    match s.calls.get(&id) {
        Some(c) => Json(c.snapshot(Timestamp::now())).into_response(),
        None => error(StatusCode::NOT_FOUND, format!("no active call {id:?}")),
    }
}

/// `GET /records` query parameters (all optional).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordQuery {
    pub since: Option<String>,
    pub number: Option<String>,
    pub direction: Option<String>,
    pub state: Option<String>,
    pub limit: Option<u32>,
}

impl RecordQuery {
    /// The filter this query means, or a message saying which parameter is wrong.
    pub fn to_filter(&self, now: Timestamp) -> Result<RecordFilter, String> {
        let since = match &self.since {
            Some(s) => Some(Timestamp::parse_since(s, now).ok_or_else(|| {
                format!("since: {s:?} is neither RFC 3339, a date, nor an age like 2h")
            })?),
            None => None,
        };
        let direction = match &self.direction {
            Some(d) => Some(d.parse::<Direction>().map_err(|e| e.to_string())?),
            None => None,
        };
        let state = match &self.state {
            Some(st) => Some(st.parse::<CallState>().map_err(|e| e.to_string())?),
            None => None,
        };
        Ok(RecordFilter {
            since,
            number: self.number.clone().filter(|n| !n.trim().is_empty()),
            direction,
            state,
            limit: self.limit,
        })
    }
}

async fn with_store<T: Send + 'static>(
    s: &ApiState,
    f: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, Response> {
    let Some(path) = s.records_db.clone() else {
        return Err(error(
            StatusCode::NOT_FOUND,
            "call records are disabled".into(),
        ));
    };
    let res = tokio::task::spawn_blocking(move || {
        let store = Store::open_existing(&path)?;
        f(&store)
    })
    .await;
    match res {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(StoreError::Missing(_))) => Err(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "call-record database not created yet".into(),
        )),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "call-record query failed");
            Err(error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
        }
        Err(e) => Err(error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
    }
}

async fn list_records(
    State(s): State<ApiState>,
    q: Result<Query<RecordQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let q = match q {
        Ok(Query(q)) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let filter = match q.to_filter(Timestamp::now()) {
        Ok(f) => f,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    match with_store(&s, move |st| st.list(&filter)).await {
        Ok(recs) => {
            let views: Vec<_> = recs.iter().map(|r| r.view()).collect();
            Json(views).into_response()
        }
        Err(resp) => resp,
    }
}

async fn get_record(State(s): State<ApiState>, Path(id): Path<String>) -> Response {
    let lookup = id.clone();
    match with_store(&s, move |st| st.get(&lookup)).await {
        Ok(Some(r)) => Json(r.view()).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, format!("no call record {id:?}")),
        Err(resp) => resp,
    }
}
