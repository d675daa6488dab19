//! The WhatsApp sandbox twin used by `whatsip sandbox` and by tests. This module only wires
//! the pieces: the Graph API twin (`graph`) and its shared state [`SandboxState`], from which
//! the SIP edge twin reads each business number's SIP server and password and each user's
//! call permission. Everything binds to loopback.
pub mod graph;
pub mod media_user;

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
