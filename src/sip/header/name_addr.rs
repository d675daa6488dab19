//! name-addr / addr-spec values: From, To, Contact, Route, Record-Route (RFC 3261 §20).
use crate::sip::header::params::Params;
use crate::sip::uri::Uri;
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr {
    /// Display name as written (quoted-string keeps its quotes and escapes), if any.
    pub display_name: Option<String>,
    pub uri: Uri,
    /// Header parameters after the URI (`;tag=…`, `;expires=…`, `;lr` of a Route is a URI param).
    pub params: Params,
}

impl NameAddr {
    pub fn new(uri: Uri) -> NameAddr {
        NameAddr {
            display_name: None,
            uri,
            params: Params::new(),
        }
    }

    /// The display name without quotes and escapes (`"J \"R\""` → `J "R"`).
    pub fn display_name_unquoted(&self) -> Option<String> {
        self.display_name
            .as_deref()
            .map(crate::sip::header::parse::unquote)
    }

    pub fn tag(&self) -> Option<&str> {
        self.params.value("tag")
    }
}

impl fmt::Display for NameAddr {
    /// Always the `<…>` form, which is unambiguous for URIs with parameters.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(d) = &self.display_name {
            write!(f, "{d} ")?;
        }
        write!(f, "<{}>{}", self.uri, self.params)
    }
}
