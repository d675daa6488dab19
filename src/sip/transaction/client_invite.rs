//! INVITE client transaction (RFC 3261 §17.1.1 with RFC 6026's Accepted state).
//!
//! Guarantees: over an unreliable transport the INVITE is retransmitted at Timer A intervals
//! (T1, 2·T1, 4·T1, … uncapped) until a response arrives or Timer B (64·T1) fires, so with 100 %
//! loss it is sent exactly 7 times and the timeout is reported at exactly 64·T1. Over a reliable
//! transport it is sent once. A non-2xx final response is answered by an ACK built inside the
//! transaction (§17.1.1.3: same Request-URI, top Via/branch, From, Call-ID and Route as the
//! INVITE, To from the response, CSeq number with method ACK), re-sent for each retransmission
//! of that response while Timer D runs. A 2xx moves the transaction to Accepted (RFC 6026) where
//! every 2xx (retransmissions and other forks) is passed up so the TU can ACK it, until Timer M.
use super::timer::{Timer, TimerConfig, TimerSet};
use super::{ClientEvent, cseq_number};
use crate::sip::header::HeaderName;
use crate::sip::message::{Headers, Request, Response};
use crate::sip::method::Method;
use bytes::Bytes;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientInviteState {
    Calling,
    Proceeding,
    Accepted,
    Completed,
    Terminated,
}

#[derive(Debug)]
pub struct ClientInvite {
    state: ClientInviteState,
    request: Request,
    reliable: bool,
    config: TimerConfig,
    timers: TimerSet,
    /// Current Timer A interval.
    interval_a: Duration,
    ack: Option<Request>,
    transmit: VecDeque<Request>,
    events: VecDeque<ClientEvent>,
}

impl ClientInvite {
    /// Starts the transaction: the INVITE is queued for transmission at `now`. `request` must
    /// already carry its top Via with the transaction's branch.
    pub fn new(now: Instant, request: Request, reliable: bool, config: TimerConfig) -> Self {
        let mut timers = TimerSet::new();
        let interval_a = config.t1;
        if let Some(a) = config.initial_retransmit(reliable) {
            timers.set(Timer::A, now + a);
        }
        timers.set(Timer::B, now + config.duration(Timer::B, reliable));
        let mut transmit = VecDeque::new();
        transmit.push_back(request.clone());
        ClientInvite {
            state: ClientInviteState::Calling,
            request,
            reliable,
            config,
            timers,
            interval_a,
            ack: None,
            transmit,
            events: VecDeque::new(),
        }
    }

    pub fn state(&self) -> ClientInviteState {
        self.state
    }

    pub fn request(&self) -> &Request {
        &self.request
    }

    pub fn is_terminated(&self) -> bool {
        self.state == ClientInviteState::Terminated
    }

    /// A response matched to this transaction (§17.1.3).
    pub fn handle_response(&mut self, now: Instant, response: Response) {
        use ClientInviteState::*;
        match (self.state, response.status) {
            (Calling | Proceeding, 100..=199) => {
                self.state = Proceeding;
                // No retransmissions in Proceeding; Timer B only guards Calling (Figure 5).
                self.timers.cancel(Timer::A);
                self.timers.cancel(Timer::B);
                self.events.push_back(ClientEvent::Response(response));
            }
            (Calling | Proceeding, 200..=299) => {
                self.state = Accepted;
                self.timers.clear();
                self.timers.set(
                    Timer::M,
                    now + self.config.duration(Timer::M, self.reliable),
                );
                self.events.push_back(ClientEvent::Response(response));
            }
            (Calling | Proceeding, 300..) => {
                self.state = Completed;
                self.timers.clear();
                let ack = self.build_ack(&response);
                self.transmit.push_back(ack.clone());
                self.ack = Some(ack);
                self.timers.set(
                    Timer::D,
                    now + self.config.duration(Timer::D, self.reliable),
                );
                self.events.push_back(ClientEvent::Response(response));
                if self.reliable {
                    self.state = Terminated;
                    self.timers.clear();
                }
            }
            (Accepted, 200..=299) => {
                self.events.push_back(ClientEvent::Response(response));
            }
            (Completed, 300..) => {
                if let Some(ack) = &self.ack {
                    self.transmit.push_back(ack.clone());
                }
            }
            _ => {}
        }
    }

    /// The transport could not send the request (§17.1.4).
    pub fn handle_transport_error(&mut self, _now: Instant) {
        if matches!(
            self.state,
            ClientInviteState::Calling | ClientInviteState::Proceeding
        ) {
            self.events.push_back(ClientEvent::TransportError);
        }
        self.state = ClientInviteState::Terminated;
        self.timers.clear();
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some((timer, at)) = self.timers.pop_expired(now) {
            match timer {
                Timer::A if self.state == ClientInviteState::Calling => {
                    self.transmit.push_back(self.request.clone());
                    self.interval_a = self.config.next_a(self.interval_a);
                    self.timers.set(Timer::A, at + self.interval_a);
                }
                Timer::B if self.state == ClientInviteState::Calling => {
                    self.events.push_back(ClientEvent::Timeout);
                    self.state = ClientInviteState::Terminated;
                    self.timers.clear();
                }
                Timer::D | Timer::M => {
                    self.state = ClientInviteState::Terminated;
                    self.timers.clear();
                }
                _ => {}
            }
        }
    }

    pub fn poll_transmit(&mut self) -> Option<Request> {
        self.transmit.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    /// ACK for a non-2xx final response (§17.1.1.3).
    fn build_ack(&self, response: &Response) -> Request {
        let mut headers = Headers::new();
        if let Some(via) = self.request.headers.get(&HeaderName::Via) {
            // Only the top Via: the first element of the first Via line.
            let top = crate::sip::transaction::key::first_element(via);
            headers.push(HeaderName::Via, top);
        }
        headers.push(HeaderName::MaxForwards, "70");
        for name in [HeaderName::From] {
            if let Some(v) = self.request.headers.get(&name) {
                headers.push(name, v);
            }
        }
        let to = response
            .headers
            .get(&HeaderName::To)
            .or_else(|| self.request.headers.get(&HeaderName::To));
        if let Some(v) = to {
            headers.push(HeaderName::To, v);
        }
        if let Some(v) = self.request.headers.get(&HeaderName::CallId) {
            headers.push(HeaderName::CallId, v);
        }
        let seq = self
            .request
            .headers
            .get(&HeaderName::CSeq)
            .map(cseq_number)
            .unwrap_or("0");
        headers.push(HeaderName::CSeq, format!("{seq} ACK"));
        for r in self.request.headers.get_all(&HeaderName::Route) {
            headers.push(HeaderName::Route, r);
        }
        Request {
            method: Method::Ack,
            uri: self.request.uri.clone(),
            headers,
            body: Bytes::new(),
        }
    }
}
