//! The strict parsers behind `Message::parse` and the typed header views, and the serializer.
//! (Being written: see the message-parser task.)
use crate::sip::header::{CSeq, NameAddr, Via};
use crate::sip::message::{Framing, Message, ParseError};
use crate::sip::uri::Uri;

pub fn message(_bytes: &[u8], _framing: Framing) -> Result<Message, ParseError> {
    todo!("message parser")
}
pub fn serialize(_m: &Message) -> Vec<u8> {
    todo!("serializer")
}
pub fn split_list(_v: &str) -> Vec<&str> {
    todo!("list splitter")
}
pub fn uri(_s: &str) -> Result<Uri, ParseError> {
    todo!("uri parser")
}
pub fn via(_s: &str) -> Result<Via, ParseError> {
    todo!("via parser")
}
pub fn name_addr(_s: &str, _header: &str) -> Result<NameAddr, ParseError> {
    todo!("name-addr parser")
}
pub fn call_id(_s: &str) -> Result<&str, ParseError> {
    todo!("call-id")
}
pub fn cseq(_s: &str) -> Result<CSeq, ParseError> {
    todo!("cseq")
}
pub fn number(_s: &str, _header: &str) -> Result<u32, ParseError> {
    todo!("number")
}
pub fn session_expires(_s: &str) -> Result<(u32, Option<String>), ParseError> {
    todo!("session-expires")
}
