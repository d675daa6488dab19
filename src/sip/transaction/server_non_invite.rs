//! Non-INVITE server transaction (RFC 3261 §17.2.2).
//!
//! Guarantees: request retransmissions are absorbed (Trying) or answered with the last response
//! sent (Proceeding, Completed); the first final response moves the transaction to Completed for
//! Timer J (64·T1 unreliable, 0 reliable), after which it is terminated. Provisional responses
//! after the final one, and a second final response, are refused.
use super::ServerEvent;
use super::timer::{Timer, TimerConfig, TimerSet};
use crate::sip::message::{Request, Response};
use std::collections::VecDeque;
use std::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerNonInviteState {
    Trying,
    Proceeding,
    Completed,
    Terminated,
}

#[derive(Debug)]
pub struct ServerNonInvite {
    state: ServerNonInviteState,
    request: Request,
    reliable: bool,
    config: TimerConfig,
    timers: TimerSet,
    last_response: Option<Response>,
    transmit: VecDeque<Response>,
    events: VecDeque<ServerEvent>,
}

impl ServerNonInvite {
    pub fn new(_now: Instant, request: Request, reliable: bool, config: TimerConfig) -> Self {
        ServerNonInvite {
            state: ServerNonInviteState::Trying,
            request,
            reliable,
            config,
            timers: TimerSet::new(),
            last_response: None,
            transmit: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    pub fn state(&self) -> ServerNonInviteState {
        self.state
    }

    pub fn request(&self) -> &Request {
        &self.request
    }

    pub fn is_terminated(&self) -> bool {
        self.state == ServerNonInviteState::Terminated
    }

    pub fn last_response(&self) -> Option<&Response> {
        self.last_response.as_ref()
    }

    /// A response from the TU; `false` if refused (already Completed/Terminated).
    pub fn send_response(&mut self, now: Instant, response: Response) -> bool {
        use ServerNonInviteState::*;
        match (self.state, response.is_final()) {
            (Trying | Proceeding, false) => {
                self.state = Proceeding;
                self.send(response);
                true
            }
            (Trying | Proceeding, true) => {
                self.state = Completed;
                self.send(response);
                let j = self.config.duration(Timer::J, self.reliable);
                if j.is_zero() {
                    self.state = Terminated;
                } else {
                    self.timers.set(Timer::J, now + j);
                }
                true
            }
            _ => false,
        }
    }

    /// A retransmission of the request.
    pub fn handle_request(&mut self, _now: Instant, _request: Request) {
        if matches!(
            self.state,
            ServerNonInviteState::Proceeding | ServerNonInviteState::Completed
        ) && let Some(r) = self.last_response.clone()
        {
            self.transmit.push_back(r);
        }
    }

    pub fn handle_transport_error(&mut self, _now: Instant) {
        if self.state != ServerNonInviteState::Terminated {
            self.events.push_back(ServerEvent::TransportError);
        }
        self.state = ServerNonInviteState::Terminated;
        self.timers.clear();
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some((timer, _)) = self.timers.pop_expired(now) {
            if timer == Timer::J && self.state == ServerNonInviteState::Completed {
                self.state = ServerNonInviteState::Terminated;
                self.timers.clear();
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
        self.timers.next()
    }

    fn send(&mut self, response: Response) {
        self.last_response = Some(response.clone());
        self.transmit.push_back(response);
    }
}
