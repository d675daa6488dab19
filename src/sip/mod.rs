//! Sans-IO SIP: messages and their typed headers, URIs, stream framing, transactions, dialogs
//! and digest authentication. Nothing here touches a socket or reads the clock.
pub mod dialog;
pub mod endpoint;
pub mod header;
pub mod message;
pub mod method;
pub mod transaction;
pub mod ua;
pub mod uri;
