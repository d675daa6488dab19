//! Minimal sans-IO user agents on the `Endpoint`: a UAS that answers every INVITE
//! (180 + 200) and every in-dialog BYE, and a UAC that places N calls at a fixed rate, ACKs the
//! 2xx and hangs up at once. They exist to exercise the transaction layer and dialogs against
//! independent implementations (SIPp in `tests/sipp_core.rs`, `examples/sip_ua.rs`); the
//! B2BUA in `call/` is the real TU.
//!
//! Guarantees: every request the UAS receives gets exactly one final response (481 for
//! requests outside a known dialog, 405 for methods it does not serve, 487 after CANCEL);
//! both sides re-ACK / stop on the RFC 3261 §13 rules the endpoint enforces; counters say how
//! many calls completed or failed.
use crate::sip::dialog::{Dialog, DialogId};
use crate::sip::endpoint::{Endpoint, Event, Target, TxnId};
use crate::sip::header::HeaderName;
use crate::sip::message::{Headers, Request};
use crate::sip::method::Method;
use crate::sip::uri::Uri;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Call counters of a UA.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UaStats {
    /// Calls answered with 2xx (UAS) / 2xx received (UAC).
    pub answered: u64,
    /// Calls ended by a BYE answered 200.
    pub completed: u64,
    /// Calls that failed (error response, timeout, no ACK).
    pub failed: u64,
}

/// Answers INVITEs with 180 then 200, BYEs in known dialogs with 200, OPTIONS with 200.
#[derive(Debug)]
pub struct SimpleUas {
    contact: Uri,
    dialogs: HashMap<DialogId, Dialog>,
    stats: UaStats,
}

impl SimpleUas {
    pub fn new(contact: Uri) -> SimpleUas {
        SimpleUas {
            contact,
            dialogs: HashMap::new(),
            stats: UaStats::default(),
        }
    }

    pub fn stats(&self) -> UaStats {
        self.stats
    }

    pub fn dialogs(&self) -> usize {
        self.dialogs.len()
    }

    pub fn handle_event(&mut self, now: Instant, ep: &mut Endpoint, event: Event) {
        match event {
            Event::Request { id, request, .. } => self.handle_request(now, ep, id, &request),
            Event::Cancelled { invite, .. } if ep.respond(now, invite, 487).is_ok() => {
                self.stats.failed += 1;
            }
            Event::AckTimeout { response, .. } => {
                // §13.3.1.4: no ACK → end the dialog with BYE.
                self.stats.failed += 1;
                let key = response
                    .headers
                    .to()
                    .ok()
                    .and_then(|t| t.tag().map(str::to_string));
                let call_id = response.headers.call_id().ok().map(str::to_string);
                if let Some(id) = self.dialogs.keys().find(|d| {
                    Some(&d.local_tag) == key.as_ref() && Some(&d.call_id) == call_id.as_ref()
                }) {
                    let id = id.clone();
                    if let Some(mut d) = self.dialogs.remove(&id) {
                        let bye = d.new_request(Method::Bye);
                        if let Some(target) = target_of(&d) {
                            let _ = ep.send_request(now, bye, target);
                        }
                    }
                }
            }
            _ => {}
        }
    }

    fn handle_request(&mut self, now: Instant, ep: &mut Endpoint, id: TxnId, req: &Request) {
        let in_dialog = DialogId::of_incoming_request(req).ok().flatten();
        let result = match (&req.method, in_dialog) {
            (Method::Invite, None) => self.answer_invite(now, ep, id, req),
            (Method::Options, None) => ep.respond(now, id, 200),
            (_, None) => ep.respond(now, id, 405),
            (method, Some(did)) => match self.dialogs.get_mut(&did) {
                None => ep.respond(now, id, 481),
                Some(d) => match d.handle_request(req) {
                    Err(e) => ep.respond(now, id, e.sip_status()),
                    Ok(()) => {
                        if *method == Method::Bye {
                            self.dialogs.remove(&did);
                            self.stats.completed += 1;
                            ep.respond(now, id, 200)
                        } else if *method == Method::Invite {
                            let mut ok = match ep.make_response(id, 200, "") {
                                Some(r) => r,
                                None => return,
                            };
                            ok.headers
                                .push(HeaderName::Contact, format!("<{}>", self.contact));
                            ep.send_response(now, id, ok)
                        } else {
                            ep.respond(now, id, 200)
                        }
                    }
                },
            },
        };
        if let Err(e) = result {
            tracing::debug!(error = %e, "UAS could not answer");
        }
    }

    fn answer_invite(
        &mut self,
        now: Instant,
        ep: &mut Endpoint,
        id: TxnId,
        req: &Request,
    ) -> Result<(), crate::sip::endpoint::EndpointError> {
        let tag = ep.local_tag(id).unwrap_or_default().to_string();
        let mut dialog = match Dialog::uas(req, &tag, self.contact.clone()) {
            Ok(d) => d,
            Err(e) => return ep.respond(now, id, e.sip_status()),
        };
        let contact = format!("<{}>", self.contact);
        if let Some(mut ringing) = ep.make_response(id, 180, "") {
            ringing.headers.push(HeaderName::Contact, contact.clone());
            ep.send_response(now, id, ringing)?;
        }
        let mut ok = ep
            .make_response(id, 200, "")
            .ok_or(crate::sip::endpoint::EndpointError::UnknownTransaction)?;
        ok.headers.push(HeaderName::Contact, contact);
        ep.send_response(now, id, ok)?;
        dialog.confirm();
        self.stats.answered += 1;
        self.dialogs.insert(dialog.id.clone(), dialog);
        Ok(())
    }
}

/// Places `calls` calls to `target` at `rate` calls per second; each is ACKed and hung up
/// with BYE as soon as it is answered.
#[derive(Debug)]
pub struct SimpleUac {
    target: Target,
    request_uri: Uri,
    local_uri: String,
    contact: Uri,
    calls: u64,
    started: u64,
    interval: Duration,
    next_start: Option<Instant>,
    invites: HashMap<TxnId, Request>,
    dialogs: HashMap<DialogId, Dialog>,
    byes: HashMap<TxnId, DialogId>,
    stats: UaStats,
}

impl SimpleUac {
    pub fn new(
        now: Instant,
        target: Target,
        request_uri: Uri,
        contact: Uri,
        calls: u64,
        rate: u32,
    ) -> SimpleUac {
        SimpleUac {
            target,
            local_uri: format!("<{contact}>"),
            request_uri,
            contact,
            calls,
            started: 0,
            interval: Duration::from_secs(1) / rate.max(1),
            next_start: (calls > 0).then_some(now),
            invites: HashMap::new(),
            dialogs: HashMap::new(),
            byes: HashMap::new(),
            stats: UaStats::default(),
        }
    }

    pub fn stats(&self) -> UaStats {
        self.stats
    }

    /// All calls placed and ended (completed or failed).
    pub fn is_done(&self) -> bool {
        self.started == self.calls && self.stats.completed + self.stats.failed >= self.calls
    }

    /// When the next call starts.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_start
    }

    pub fn handle_timeout(&mut self, now: Instant, ep: &mut Endpoint) {
        while let Some(at) = self.next_start
            && at <= now
        {
            self.start_call(now, ep);
            self.started += 1;
            self.next_start = (self.started < self.calls).then_some(at + self.interval);
        }
    }

    fn start_call(&mut self, now: Instant, ep: &mut Endpoint) {
        let n = self.started + 1;
        let tag = ep.new_tag();
        let mut h = Headers::new();
        h.push(HeaderName::From, format!("{};tag={tag}", self.local_uri));
        h.push(HeaderName::To, format!("<{}>", self.request_uri));
        h.push(
            HeaderName::CallId,
            format!("{n}-{}@{}", tag, ep.config().via_host),
        );
        h.push(HeaderName::CSeq, "1 INVITE");
        h.push(HeaderName::Contact, format!("<{}>", self.contact));
        let invite = Request {
            method: Method::Invite,
            uri: self.request_uri.clone(),
            headers: h,
            body: Default::default(),
        };
        match ep.send_request(now, invite, self.target.clone()) {
            Ok(id) => {
                if let Some(sent) = ep.client_request(id) {
                    self.invites.insert(id, sent.clone());
                }
            }
            Err(_) => self.stats.failed += 1,
        }
    }

    pub fn handle_event(&mut self, now: Instant, ep: &mut Endpoint, event: Event) {
        match event {
            Event::Response { id, response } => {
                if let Some(did) = self.byes.get(&id).cloned() {
                    if response.is_final() {
                        self.byes.remove(&id);
                        self.dialogs.remove(&did);
                        if response.is_success() {
                            self.stats.completed += 1;
                        } else {
                            self.stats.failed += 1;
                        }
                    }
                    return;
                }
                let Some(invite) = self.invites.get(&id) else {
                    return;
                };
                if response.is_success() {
                    let Ok(Some(did)) = DialogId::of_incoming_response(&response) else {
                        return;
                    };
                    if let Some(d) = self.dialogs.get(&did) {
                        // Retransmitted 2xx: re-send the ACK (§13.2.2.4).
                        let ack = d.ack(d.invite_seq);
                        let _ = ep.send_ack(now, ack, self.target.clone());
                        return;
                    }
                    let Ok(mut d) = Dialog::uac(invite, &response) else {
                        self.stats.failed += 1;
                        return;
                    };
                    self.stats.answered += 1;
                    let ack = d.ack(d.invite_seq);
                    let _ = ep.send_ack(now, ack, self.target.clone());
                    let bye = d.new_request(Method::Bye);
                    match ep.send_request(now, bye, self.target.clone()) {
                        Ok(bid) => {
                            self.byes.insert(bid, did.clone());
                        }
                        Err(_) => self.stats.failed += 1,
                    }
                    self.dialogs.insert(did, d);
                } else if response.is_final() {
                    self.invites.remove(&id);
                    self.stats.failed += 1;
                }
            }
            Event::Timeout { id } | Event::TransportError { id }
                if self.invites.remove(&id).is_some() || self.byes.remove(&id).is_some() =>
            {
                self.stats.failed += 1;
            }
            Event::Request { id, request, .. } => {
                // We never expect requests; answer correctly anyway.
                let known = DialogId::of_incoming_request(&request)
                    .ok()
                    .flatten()
                    .is_some_and(|d| self.dialogs.contains_key(&d));
                let _ = ep.respond(now, id, if known { 200 } else { 481 });
            }
            _ => {}
        }
    }
}

/// Where a UAS-side in-dialog request goes: the remote target as an address (IP hosts only;
/// this minimal UA does not resolve names).
fn target_of(d: &Dialog) -> Option<Target> {
    use crate::sip::endpoint::{Destination, TransportKind};
    use crate::sip::uri::Host;
    let uri = d
        .route_set
        .first()
        .map(|r| &r.addr.uri)
        .unwrap_or(&d.remote_target);
    let sip = uri.as_sip()?;
    let ip: std::net::IpAddr = match &sip.host {
        Host::Ipv4(a) => (*a).into(),
        Host::Ipv6(a) => (*a).into(),
        Host::Domain(_) => return None,
    };
    let transport = match sip.params.value("transport") {
        Some(t) => TransportKind::from_via_token(t)?,
        None => TransportKind::Udp,
    };
    Some(Target {
        transport,
        destination: Destination::Addr(std::net::SocketAddr::new(ip, sip.port.unwrap_or(5060))),
        connection: None,
    })
}
