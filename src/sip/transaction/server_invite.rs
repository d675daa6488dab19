//! INVITE server transaction (RFC 3261 §17.2.1 with RFC 6026's Accepted state).
//!
//! Guarantees:
//! - **100 Trying**: if the TU has not sent any response 200 ms after the INVITE arrived, the
//!   transaction sends `100 Trying` itself (§17.2.1 "within 200 ms"; we wait the full 200 ms so
//!   a TU that answers at once saves the extra message). Call `handle_timeout` at
//!   `poll_timeout()` as for any other timer.
//! - Retransmitted INVITEs are absorbed and answered with the last response sent (Proceeding,
//!   Completed), or silently absorbed in Accepted (the TU core retransmits 2xx, §13.3.1.4).
//! - A final non-2xx response is retransmitted at Timer G intervals (T1 doubling, capped at T2;
//!   unreliable only) until the ACK arrives (→ Confirmed, Timer I) or Timer H (64·T1) fires,
//!   which is reported as `ServerEvent::Timeout`.
//! - A 2xx moves the transaction to Accepted for Timer L (64·T1); further 2xx (the core's
//!   retransmissions) are sent, ACKs are passed up as `ServerEvent::Ack`.
use super::timer::{Timer, TimerConfig, TimerSet};
use super::{ServerEvent, response_to};
use crate::sip::message::{Request, Response};
use crate::sip::method::Method;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How long the transaction waits for the TU before sending 100 Trying itself.
pub const TRYING_DELAY: Duration = Duration::from_millis(200);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerInviteState {
    Proceeding,
    Completed,
    Confirmed,
    Accepted,
    Terminated,
}

#[derive(Debug)]
pub struct ServerInvite {
    state: ServerInviteState,
    request: Request,
    reliable: bool,
    config: TimerConfig,
    timers: TimerSet,
    /// When 100 Trying is due if the TU stays silent (not one of the RFC's lettered timers).
    trying_at: Option<Instant>,
    interval_g: Duration,
    last_response: Option<Response>,
    transmit: VecDeque<Response>,
    events: VecDeque<ServerEvent>,
}

impl ServerInvite {
    pub fn new(now: Instant, request: Request, reliable: bool, config: TimerConfig) -> Self {
        ServerInvite {
            state: ServerInviteState::Proceeding,
            request,
            reliable,
            config,
            timers: TimerSet::new(),
            trying_at: Some(now + TRYING_DELAY),
            interval_g: config.t1,
            last_response: None,
            transmit: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    pub fn state(&self) -> ServerInviteState {
        self.state
    }

    pub fn request(&self) -> &Request {
        &self.request
    }

    pub fn is_terminated(&self) -> bool {
        self.state == ServerInviteState::Terminated
    }

    /// The last response sent (provisional or final).
    pub fn last_response(&self) -> Option<&Response> {
        self.last_response.as_ref()
    }

    /// A response from the TU. Returns `false` (and sends nothing) if the state does not
    /// allow it (a second final non-2xx, anything after Completed).
    pub fn send_response(&mut self, now: Instant, response: Response) -> bool {
        use ServerInviteState::*;
        match (self.state, response.status) {
            (Proceeding, 100..=199) => {
                self.trying_at = None;
                self.send(response);
                true
            }
            (Proceeding | Accepted, 200..=299) => {
                self.trying_at = None;
                if self.state == Proceeding {
                    self.state = Accepted;
                    self.timers.set(
                        Timer::L,
                        now + self.config.duration(Timer::L, self.reliable),
                    );
                }
                self.send(response);
                true
            }
            (Proceeding, 300..) => {
                self.trying_at = None;
                self.state = Completed;
                if let Some(g) = self.config.initial_retransmit(self.reliable) {
                    self.interval_g = g;
                    self.timers.set(Timer::G, now + g);
                }
                self.timers.set(
                    Timer::H,
                    now + self.config.duration(Timer::H, self.reliable),
                );
                self.send(response);
                true
            }
            _ => false,
        }
    }

    /// A request matched to this transaction: a retransmitted INVITE or the ACK for a non-2xx.
    pub fn handle_request(&mut self, now: Instant, request: Request) {
        use ServerInviteState::*;
        match (&request.method, self.state) {
            (Method::Ack, Completed) => {
                self.state = Confirmed;
                self.timers.cancel(Timer::G);
                self.timers.cancel(Timer::H);
                let i = self.config.duration(Timer::I, self.reliable);
                if i.is_zero() {
                    self.state = Terminated;
                    self.timers.clear();
                } else {
                    self.timers.set(Timer::I, now + i);
                }
            }
            (Method::Ack, Accepted) => self.events.push_back(ServerEvent::Ack(Box::new(request))),
            (Method::Ack, _) => {}
            (_, Proceeding | Completed) => {
                if let Some(r) = self.last_response.clone() {
                    self.transmit.push_back(r);
                }
            }
            _ => {}
        }
    }

    pub fn handle_transport_error(&mut self, _now: Instant) {
        if self.state != ServerInviteState::Terminated {
            self.events.push_back(ServerEvent::TransportError);
        }
        self.state = ServerInviteState::Terminated;
        self.timers.clear();
        self.trying_at = None;
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        use ServerInviteState::*;
        if let Some(at) = self.trying_at
            && at <= now
        {
            self.trying_at = None;
            if self.state == Proceeding && self.last_response.is_none() {
                self.send(response_to(&self.request, 100, "Trying"));
            }
        }
        while let Some((timer, at)) = self.timers.pop_expired(now) {
            match (timer, self.state) {
                (Timer::G, Completed) => {
                    if let Some(r) = self.last_response.clone() {
                        self.transmit.push_back(r);
                    }
                    self.interval_g = self.config.next_capped(self.interval_g);
                    self.timers.set(Timer::G, at + self.interval_g);
                }
                (Timer::H, Completed) => {
                    self.events.push_back(ServerEvent::Timeout);
                    self.state = Terminated;
                    self.timers.clear();
                }
                (Timer::I, Confirmed) | (Timer::L, Accepted) => {
                    self.state = Terminated;
                    self.timers.clear();
                }
                _ => {}
            }
        }
    }

    pub fn poll_transmit(&mut self) -> Option<Response> {
        self.transmit.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<ServerEvent> {
        self.events.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        match (self.trying_at, self.timers.next()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn send(&mut self, response: Response) {
        self.last_response = Some(response.clone());
        self.transmit.push_back(response);
    }
}
