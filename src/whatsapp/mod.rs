//! Meta specifics: Graph API client and settings (`graph`), and Meta's error codes mapped to
//! SIP answers (`errors`).
pub mod errors;
pub mod graph;
