//! The WhatsApp sandbox twin used by `whatsip sandbox` and by tests. This module only wires
//! the pieces: the Graph API twin (`graph`) and its shared state [`SandboxState`], from which
//! the SIP edge twin (`edge` rules, `runtime` glue) reads each business number's SIP server
//! and password and each user's call permission; the control API (`control`); the CA that
//! signs the edge's and the gateway's certificates (`ca`). Everything binds to loopback.
pub mod ca;
pub mod control;
pub mod edge;
pub mod graph;
pub mod media_user;
pub mod runtime;

pub use graph::state::{SandboxOptions, SandboxState, SipTarget};

use std::net::SocketAddr;

/// Builds the sandbox HTTP app (Graph twin + control endpoints) over `state`.
pub fn http_router(state: SandboxState) -> axum::Router {
    graph::router(state)
}

/// Serves the sandbox HTTP app on `addr` until the process ends.
pub async fn serve_http(addr: SocketAddr, state: SandboxState) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "sandbox HTTP (Graph twin + control) listening");
    axum::serve(listener, http_router(state)).await
}

/// The sandbox HTTP app with the control API of a running edge merged in.
pub fn http_router_with_edge(state: SandboxState, edge: runtime::EdgeHandle) -> axum::Router {
    graph::router(state).merge(control::router(edge))
}

/// A running sandbox: edge TLS + HTTP (Graph twin and control API).
#[derive(Debug)]
pub struct Running {
    pub edge: runtime::EdgeHandle,
    pub http_addr: SocketAddr,
}

/// Starts the SIP edge and the HTTP server (ports may be 0); returns once both are bound.
pub async fn start(
    http: SocketAddr,
    config: runtime::RuntimeConfig,
    state: SandboxState,
) -> Result<Running, std::io::Error> {
    let calls = edge::CallBook::new();
    let edge = runtime::start_edge(config, state.clone(), calls)
        .await
        .map_err(std::io::Error::other)?;
    let listener = tokio::net::TcpListener::bind(http).await?;
    let http_addr = listener.local_addr()?;
    let app = http_router_with_edge(state, edge.clone());
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::warn!(error = %e, "sandbox HTTP stopped");
        }
    });
    tracing::info!(%http_addr, "sandbox HTTP (Graph twin + control) listening");
    Ok(Running { edge, http_addr })
}
