//! Sans-IO SIP: messages and their typed headers, URIs, stream framing, transactions, dialogs
//! and digest authentication. Nothing here touches a socket or reads the clock, except
//! `driver`, the thin tokio glue between the transport and the endpoint.
pub mod auth;
pub mod dialog;
pub mod driver;
pub mod endpoint;
pub mod framing;
pub mod header;
pub mod message;
pub mod method;
pub mod transaction;
pub mod ua;
pub mod uri;
