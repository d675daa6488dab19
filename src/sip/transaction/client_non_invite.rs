//! Non-INVITE client transaction (RFC 3261 §17.1.2, RFC 4320 behaviour for 408 kept as-is).
//!
//! Guarantees: over an unreliable transport the request is retransmitted at Timer E intervals
//! (T1 doubling, capped at T2; T2 in Proceeding) until a final response or Timer F (64·T1), so
//! with 100 % loss and default timers it is sent exactly 11 times and the timeout is reported at
//! exactly 64·T1. Over a reliable transport it is sent once. The first final response is passed
//! up; retransmissions of it are absorbed while Timer K runs (T4 unreliable, 0 reliable).
use super::ClientEvent;
use super::timer::{Timer, TimerConfig, TimerSet};
use crate::sip::message::{Request, Response};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientNonInviteState {
    Trying,
    Proceeding,
    Completed,
    Terminated,
}

#[derive(Debug)]
pub struct ClientNonInvite {
    state: ClientNonInviteState,
    request: Request,
    reliable: bool,
    config: TimerConfig,
    timers: TimerSet,
    interval_e: Duration,
    transmit: VecDeque<Request>,
    events: VecDeque<ClientEvent>,
}

impl ClientNonInvite {
    /// Starts the transaction: the request is queued for transmission at `now`. `request` must
    /// already carry its top Via with the transaction's branch. Must not be INVITE or ACK.
    pub fn new(now: Instant, request: Request, reliable: bool, config: TimerConfig) -> Self {
        let mut timers = TimerSet::new();
        if let Some(e) = config.initial_retransmit(reliable) {
            timers.set(Timer::E, now + e);
        }
        timers.set(Timer::F, now + config.duration(Timer::F, reliable));
        let mut transmit = VecDeque::new();
        transmit.push_back(request.clone());
        ClientNonInvite {
            state: ClientNonInviteState::Trying,
            request,
            reliable,
            config,
            timers,
            interval_e: config.t1,
            transmit,
            events: VecDeque::new(),
        }
    }

    pub fn state(&self) -> ClientNonInviteState {
        self.state
    }

    pub fn request(&self) -> &Request {
        &self.request
    }

    pub fn is_terminated(&self) -> bool {
        self.state == ClientNonInviteState::Terminated
    }

    pub fn handle_response(&mut self, now: Instant, response: Response) {
        use ClientNonInviteState::*;
        match (self.state, response.is_final()) {
            (Trying | Proceeding, false) => {
                self.state = Proceeding;
                self.events.push_back(ClientEvent::Response(response));
            }
            (Trying | Proceeding, true) => {
                self.state = Completed;
                self.timers.clear();
                self.events.push_back(ClientEvent::Response(response));
                let k = self.config.duration(Timer::K, self.reliable);
                if k.is_zero() {
                    self.state = Terminated;
                } else {
                    self.timers.set(Timer::K, now + k);
                }
            }
            _ => {}
        }
    }

    pub fn handle_transport_error(&mut self, _now: Instant) {
        if matches!(
            self.state,
            ClientNonInviteState::Trying | ClientNonInviteState::Proceeding
        ) {
            self.events.push_back(ClientEvent::TransportError);
        }
        self.state = ClientNonInviteState::Terminated;
        self.timers.clear();
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        use ClientNonInviteState::*;
        while let Some((timer, at)) = self.timers.pop_expired(now) {
            match (timer, self.state) {
                (Timer::E, Trying) => {
                    self.transmit.push_back(self.request.clone());
                    self.interval_e = self.config.next_capped(self.interval_e);
                    self.timers.set(Timer::E, at + self.interval_e);
                }
                (Timer::E, Proceeding) => {
                    self.transmit.push_back(self.request.clone());
                    self.interval_e = self.config.t2;
                    self.timers.set(Timer::E, at + self.interval_e);
                }
                (Timer::F, Trying | Proceeding) => {
                    self.events.push_back(ClientEvent::Timeout);
                    self.state = Terminated;
                    self.timers.clear();
                }
                (Timer::K, Completed) => {
                    self.state = Terminated;
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
}
