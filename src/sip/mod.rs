//! Sans-IO SIP: messages and their typed headers, URIs, stream framing, transactions, dialogs
//! and digest authentication. Nothing here touches a socket or reads the clock.
pub mod framing;
pub mod header;
pub mod message;
pub mod method;
pub mod uri;
