//! Header names and the typed header values a B2BUA touches.
//!
//! Storage is textual (`message::Headers` keeps each header line's name and value in wire order);
//! typed values are parsed on demand by the accessors on `Headers`, strictly, returning
//! `ParseError` instead of panicking.
pub mod cseq;
pub mod name;
pub mod name_addr;
pub mod params;
pub mod parse;
pub mod via;

pub use cseq::CSeq;
pub use name::HeaderName;
pub use name_addr::NameAddr;
pub use params::Params;
pub use via::Via;

/// RFC 3261 `token` character.
pub fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b)
}
