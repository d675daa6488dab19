//! SIP dialogs (RFC 3261 §12, §13.2.2.4, §13.3.1.4): creation on both sides, in-dialog request
//! construction and in-dialog request checks.
//!
//! Guarantees:
//! - A UAC dialog is created from a 101–199 response with a To tag (early; each fork with its
//!   own To tag gives its own dialog) or from a 2xx (confirmed); its route set is the response's
//!   Record-Route in reverse order, its remote target the response's Contact. A UAS dialog is
//!   created from the INVITE and our To tag; its route set is the Record-Route in order.
//! - Route entries are kept as written on the wire and re-emitted byte for byte in `Route`.
//! - `new_request` follows §12.2.1.1: loose routing (`lr`) keeps the remote target as
//!   Request-URI; a strict first route becomes the Request-URI and the remote target is
//!   appended to the Route set. Non-ACK requests take the next local CSeq; `ack` reuses the
//!   INVITE's CSeq number.
//! - `handle_request` rejects an out-of-order remote CSeq with `DialogError::CSeqOutOfOrder`
//!   (500, §12.2.2) and applies target refreshes.
use crate::sip::header::{HeaderName, NameAddr};
use crate::sip::message::{Headers, ParseError, Request, Response};
use crate::sip::method::Method;
use crate::sip::uri::Uri;
use bytes::Bytes;

/// Dialog errors, each with the SIP status that answers the offending request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DialogError {
    #[error(transparent)]
    Parse(#[from] ParseError),
    #[error("response does not create a dialog (status {0} or no To tag)")]
    NotDialogCreating(u16),
    #[error("request has no Contact")]
    NoContact,
    #[error("CSeq {got} lower than the last remote CSeq {last}")]
    CSeqOutOfOrder { got: u32, last: u32 },
    #[error("message does not belong to this dialog")]
    NotThisDialog,
}

impl DialogError {
    pub fn sip_status(&self) -> u16 {
        match self {
            DialogError::Parse(_) | DialogError::NoContact => 400,
            DialogError::CSeqOutOfOrder { .. } => 500,
            DialogError::NotThisDialog => 481,
            DialogError::NotDialogCreating(_) => 500,
        }
    }
}

/// Dialog identifier (§12): Call-ID, local tag, remote tag.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DialogId {
    pub call_id: String,
    pub local_tag: String,
    pub remote_tag: String,
}

impl DialogId {
    /// Id of the dialog a received request belongs to (local = To tag, remote = From tag), or
    /// `None` if the request has no To tag (out of dialog).
    pub fn of_incoming_request(req: &Request) -> Result<Option<DialogId>, ParseError> {
        let to = req.headers.to()?;
        let from = req.headers.from()?;
        Ok(match to.tag() {
            Some(local) => Some(DialogId {
                call_id: req.headers.call_id()?.to_string(),
                local_tag: local.to_string(),
                remote_tag: from.tag().unwrap_or_default().to_string(),
            }),
            None => None,
        })
    }

    /// Id of the dialog a received response belongs to (local = From tag, remote = To tag), or
    /// `None` without a To tag.
    pub fn of_incoming_response(resp: &Response) -> Result<Option<DialogId>, ParseError> {
        let to = resp.headers.to()?;
        let from = resp.headers.from()?;
        Ok(match to.tag() {
            Some(remote) => Some(DialogId {
                call_id: resp.headers.call_id()?.to_string(),
                local_tag: from.tag().unwrap_or_default().to_string(),
                remote_tag: remote.to_string(),
            }),
            None => None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialogState {
    Early,
    Confirmed,
    Terminated,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Uac,
    Uas,
}

/// One entry of the route set: the element as written on the wire and its parsed form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteEntry {
    pub raw: String,
    pub addr: NameAddr,
}

impl RouteEntry {
    pub fn is_loose(&self) -> bool {
        self.addr
            .uri
            .as_sip()
            .is_some_and(|u| u.params.contains("lr"))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dialog {
    pub id: DialogId,
    pub role: Role,
    pub state: DialogState,
    /// Last CSeq number we used in this dialog.
    pub local_seq: u32,
    /// Last CSeq number the peer used (`None` until it sends a request).
    pub remote_seq: Option<u32>,
    /// Our From (UAC) / To (UAS) name-addr, tag included.
    pub local_uri: NameAddr,
    /// The peer's name-addr, tag included.
    pub remote_uri: NameAddr,
    /// Our Contact, put in target-refresh requests.
    pub local_contact: Uri,
    pub remote_target: Uri,
    pub route_set: Vec<RouteEntry>,
    /// CSeq number of the last INVITE (for its ACK).
    pub invite_seq: u32,
}

impl Dialog {
    /// UAC side: `request` is the INVITE we sent, `response` a 101–299 with a To tag.
    pub fn uac(request: &Request, response: &Response) -> Result<Dialog, DialogError> {
        let to = response.headers.to()?;
        if !(101..300).contains(&response.status) || to.tag().is_none() {
            return Err(DialogError::NotDialogCreating(response.status));
        }
        let from = request.headers.from()?;
        let cseq = request.headers.cseq()?;
        let remote_target = match response.headers.contacts()?.into_iter().next() {
            Some(c) => c.uri,
            None if response.is_provisional() => request.uri.clone(),
            None => return Err(DialogError::NoContact),
        };
        let local_contact = request
            .headers
            .contacts()?
            .into_iter()
            .next()
            .map(|c| c.uri)
            .ok_or(DialogError::NoContact)?;
        let mut route_set = route_set(&response.headers)?;
        route_set.reverse();
        Ok(Dialog {
            id: DialogId {
                call_id: request.headers.call_id()?.to_string(),
                local_tag: from.tag().unwrap_or_default().to_string(),
                remote_tag: to.tag().unwrap_or_default().to_string(),
            },
            role: Role::Uac,
            state: if response.is_success() {
                DialogState::Confirmed
            } else {
                DialogState::Early
            },
            local_seq: cseq.seq,
            remote_seq: None,
            local_uri: from,
            remote_uri: to,
            local_contact,
            remote_target,
            route_set,
            invite_seq: cseq.seq,
        })
    }

    /// UAS side: `request` is the received INVITE, `local_tag` the To tag our responses carry,
    /// `local_contact` our Contact. The dialog is early until `confirm` (2xx sent).
    pub fn uas(
        request: &Request,
        local_tag: &str,
        local_contact: Uri,
    ) -> Result<Dialog, DialogError> {
        let from = request.headers.from()?;
        let mut to = request.headers.to()?;
        to.params.set("tag", Some(local_tag));
        let cseq = request.headers.cseq()?;
        let remote_target = request
            .headers
            .contacts()?
            .into_iter()
            .next()
            .map(|c| c.uri)
            .ok_or(DialogError::NoContact)?;
        Ok(Dialog {
            id: DialogId {
                call_id: request.headers.call_id()?.to_string(),
                local_tag: local_tag.to_string(),
                remote_tag: from.tag().unwrap_or_default().to_string(),
            },
            role: Role::Uas,
            state: DialogState::Early,
            local_seq: 0,
            remote_seq: Some(cseq.seq),
            local_uri: to,
            remote_uri: from,
            local_contact,
            remote_target,
            route_set: route_set(&request.headers)?,
            invite_seq: cseq.seq,
        })
    }

    /// UAS: the 2xx was sent.
    pub fn confirm(&mut self) {
        if self.state == DialogState::Early {
            self.state = DialogState::Confirmed;
        }
    }

    pub fn terminate(&mut self) {
        self.state = DialogState::Terminated;
    }

    /// UAC: a response to a request of this dialog (or the INVITE that created it). A 2xx to
    /// the INVITE confirms an early dialog and recomputes its route set (§13.2.2.4); a 2xx to a
    /// target-refresh request updates the remote target (§12.2.1.2).
    pub fn handle_response(&mut self, response: &Response) -> Result<(), DialogError> {
        if DialogId::of_incoming_response(response)?.as_ref() != Some(&self.id) {
            return Err(DialogError::NotThisDialog);
        }
        let cseq = response.headers.cseq()?;
        let refresh = is_target_refresh(&cseq.method);
        if response.is_success()
            && self.state == DialogState::Early
            && cseq.method == Method::Invite
        {
            self.state = DialogState::Confirmed;
            let mut rs = route_set(&response.headers)?;
            rs.reverse();
            self.route_set = rs;
        }
        if (response.is_success()
            || (response.is_provisional() && self.state == DialogState::Early))
            && refresh
            && let Some(c) = response.headers.contacts()?.into_iter().next()
        {
            self.remote_target = c.uri;
        }
        Ok(())
    }

    /// A request received inside this dialog (§12.2.2): CSeq order check, target refresh.
    pub fn handle_request(&mut self, request: &Request) -> Result<(), DialogError> {
        if DialogId::of_incoming_request(request)?.as_ref() != Some(&self.id) {
            return Err(DialogError::NotThisDialog);
        }
        let cseq = request.headers.cseq()?;
        if matches!(request.method, Method::Ack | Method::Cancel) {
            return Ok(());
        }
        if let Some(last) = self.remote_seq
            && cseq.seq < last
        {
            return Err(DialogError::CSeqOutOfOrder {
                got: cseq.seq,
                last,
            });
        }
        self.remote_seq = Some(cseq.seq);
        if is_target_refresh(&request.method)
            && let Some(c) = request.headers.contacts()?.into_iter().next()
        {
            self.remote_target = c.uri;
        }
        if request.method == Method::Invite {
            self.invite_seq = cseq.seq;
        }
        Ok(())
    }

    /// Builds a request inside the dialog (§12.2.1.1) with the next local CSeq (re-INVITE, BYE,
    /// UPDATE, INFO, …). The endpoint adds the Via. For ACK use `ack`.
    pub fn new_request(&mut self, method: Method) -> Request {
        self.local_seq = self.local_seq.wrapping_add(1);
        if method == Method::Invite {
            self.invite_seq = self.local_seq;
        }
        let seq = self.local_seq;
        self.build(method, seq)
    }

    /// The end-to-end ACK for a 2xx to the INVITE with CSeq `invite_seq` (§13.2.2.4).
    pub fn ack(&self, invite_seq: u32) -> Request {
        self.build(Method::Ack, invite_seq)
    }

    /// Request-URI and Route lines per §12.2.1.1.
    pub fn request_target(&self) -> (Uri, Vec<String>) {
        match self.route_set.first() {
            None => (self.remote_target.clone(), vec![]),
            Some(first) if first.is_loose() => (
                self.remote_target.clone(),
                self.route_set.iter().map(|r| r.raw.clone()).collect(),
            ),
            Some(first) => {
                let mut ruri = first.addr.uri.clone();
                if let Some(u) = ruri.as_sip_mut() {
                    u.headers.clear();
                }
                let mut routes: Vec<String> =
                    self.route_set[1..].iter().map(|r| r.raw.clone()).collect();
                routes.push(format!("<{}>", self.remote_target));
                (ruri, routes)
            }
        }
    }

    fn build(&self, method: Method, seq: u32) -> Request {
        let (uri, routes) = self.request_target();
        let mut h = Headers::new();
        h.push(HeaderName::MaxForwards, "70");
        h.push(HeaderName::From, self.local_uri.to_string());
        h.push(HeaderName::To, self.remote_uri.to_string());
        h.push(HeaderName::CallId, self.id.call_id.clone());
        h.push(HeaderName::CSeq, format!("{seq} {method}"));
        for r in routes {
            h.push(HeaderName::Route, r);
        }
        if is_target_refresh(&method) {
            h.push(HeaderName::Contact, format!("<{}>", self.local_contact));
        }
        Request {
            method,
            uri,
            headers: h,
            body: Bytes::new(),
        }
    }
}

/// Methods that refresh the remote target (§12.2, RFC 3311, RFC 6665).
pub fn is_target_refresh(m: &Method) -> bool {
    matches!(
        m,
        Method::Invite | Method::Update | Method::Subscribe | Method::Notify | Method::Refer
    )
}

fn route_set(headers: &Headers) -> Result<Vec<RouteEntry>, ParseError> {
    headers
        .list(&HeaderName::RecordRoute)
        .into_iter()
        .map(|raw| {
            Ok(RouteEntry {
                raw: raw.to_string(),
                addr: crate::sip::header::parse::name_addr(raw, "Record-Route")?,
            })
        })
        .collect()
}
