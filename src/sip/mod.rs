//! Sans-IO SIP: message framing (and, from sibling modules, parsing, transactions, dialogs).

pub mod framing;
