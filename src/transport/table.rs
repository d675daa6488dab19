//! The connection table: live stream connections and the addresses that reach them
//! (RFC 5923 connection reuse).
//!
//! Guarantees: at most `cap` connections; each connection is found under its peer address and
//! at most [`MAX_ALIASES`] alias addresses; removing a connection removes exactly the address
//! entries that still point at it (a newer connection to the same address is kept).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::mpsc;

use super::tls::TlsPeer;
use super::{ConnId, Kind};

/// Most alias addresses one connection may be registered under.
pub const MAX_ALIASES: usize = 8;

/// A command for a connection task.
#[derive(Debug)]
pub(crate) enum Cmd {
    /// Write one message; the result is reported back.
    Send {
        bytes: bytes::Bytes,
        done: tokio::sync::oneshot::Sender<std::io::Result<()>>,
    },
    /// Close the connection.
    Close,
}

/// What the table knows about one connection.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub kind: Kind,
    pub peer: SocketAddr,
    pub local: SocketAddr,
    pub outbound: bool,
    pub tls: Option<Arc<TlsPeer>>,
    pub tx: mpsc::Sender<Cmd>,
    aliases: Vec<SocketAddr>,
}

/// Public description of a live connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionInfo {
    /// Its id.
    pub id: ConnId,
    /// TCP or TLS.
    pub kind: Kind,
    /// The peer's socket address.
    pub peer: SocketAddr,
    /// Our socket address.
    pub local: SocketAddr,
    /// Whether we opened it.
    pub outbound: bool,
    /// Alias addresses registered for it.
    pub aliases: Vec<SocketAddr>,
    /// TLS details, for TLS connections.
    pub tls: Option<Arc<TlsPeer>>,
}

/// Connections by id and by (kind, address).
#[derive(Debug)]
pub(crate) struct Table {
    cap: usize,
    conns: HashMap<ConnId, Entry>,
    by_addr: HashMap<(Kind, SocketAddr), ConnId>,
}

impl Table {
    pub fn new(cap: usize) -> Self {
        Self {
            cap,
            conns: HashMap::new(),
            by_addr: HashMap::new(),
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.conns.len()
    }

    pub fn is_full(&self) -> bool {
        self.conns.len() >= self.cap
    }

    /// Register a connection under its peer address; `false` if the table is full.
    #[allow(clippy::too_many_arguments)]
    pub fn insert(
        &mut self,
        id: ConnId,
        kind: Kind,
        peer: SocketAddr,
        local: SocketAddr,
        outbound: bool,
        tls: Option<Arc<TlsPeer>>,
        tx: mpsc::Sender<Cmd>,
    ) -> bool {
        if self.is_full() {
            return false;
        }
        self.conns.insert(
            id,
            Entry {
                kind,
                peer,
                local,
                outbound,
                tls,
                tx,
                aliases: Vec::new(),
            },
        );
        self.by_addr.insert((kind, peer), id);
        true
    }

    /// Also reach `id` through `addr`; `false` if `id` is unknown.
    pub fn alias(&mut self, id: ConnId, addr: SocketAddr) -> bool {
        let Some(entry) = self.conns.get_mut(&id) else {
            return false;
        };
        if addr != entry.peer && !entry.aliases.contains(&addr) {
            if entry.aliases.len() >= MAX_ALIASES {
                let old = entry.aliases.remove(0);
                if self.by_addr.get(&(entry.kind, old)) == Some(&id) {
                    self.by_addr.remove(&(entry.kind, old));
                }
            }
            entry.aliases.push(addr);
        }
        self.by_addr.insert((entry.kind, addr), id);
        true
    }

    pub fn get(&self, id: ConnId) -> Option<&Entry> {
        self.conns.get(&id)
    }

    pub fn lookup(&self, kind: Kind, addr: SocketAddr) -> Option<(ConnId, &Entry)> {
        let id = *self.by_addr.get(&(kind, addr))?;
        self.conns.get(&id).map(|e| (id, e))
    }

    pub fn remove(&mut self, id: ConnId) -> Option<Entry> {
        let entry = self.conns.remove(&id)?;
        for addr in std::iter::once(entry.peer).chain(entry.aliases.iter().copied()) {
            if self.by_addr.get(&(entry.kind, addr)) == Some(&id) {
                self.by_addr.remove(&(entry.kind, addr));
            }
        }
        Some(entry)
    }

    pub fn info(&self, id: ConnId) -> Option<ConnectionInfo> {
        self.conns.get(&id).map(|e| ConnectionInfo {
            id,
            kind: e.kind,
            peer: e.peer,
            local: e.local,
            outbound: e.outbound,
            aliases: e.aliases.clone(),
            tls: e.tls.clone(),
        })
    }

    pub fn ids(&self) -> Vec<ConnId> {
        self.conns.keys().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(p: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], p))
    }

    #[test]
    fn cap_alias_and_remove() {
        let (tx, _rx) = mpsc::channel(1);
        let mut t = Table::new(2);
        assert!(t.insert(
            ConnId(1),
            Kind::Tcp,
            a(1000),
            a(5060),
            false,
            None,
            tx.clone()
        ));
        assert!(t.insert(
            ConnId(2),
            Kind::Tls,
            a(1000),
            a(5061),
            false,
            None,
            tx.clone()
        ));
        assert!(!t.insert(
            ConnId(3),
            Kind::Tcp,
            a(1001),
            a(5060),
            false,
            None,
            tx.clone()
        ));
        assert_eq!(t.lookup(Kind::Tcp, a(1000)).map(|x| x.0), Some(ConnId(1)));
        assert_eq!(t.lookup(Kind::Tls, a(1000)).map(|x| x.0), Some(ConnId(2)));
        assert!(t.lookup(Kind::Udp, a(1000)).is_none());
        assert!(t.alias(ConnId(1), a(5070)));
        assert!(!t.alias(ConnId(9), a(5070)));
        assert_eq!(t.lookup(Kind::Tcp, a(5070)).map(|x| x.0), Some(ConnId(1)));
        for p in 0..20 {
            assert!(t.alias(ConnId(1), a(6000 + p)));
        }
        assert_eq!(t.info(ConnId(1)).unwrap().aliases.len(), MAX_ALIASES);
        assert!(t.lookup(Kind::Tcp, a(5070)).is_none());
        t.remove(ConnId(1));
        assert!(t.lookup(Kind::Tcp, a(6019)).is_none());
        assert!(t.lookup(Kind::Tcp, a(1000)).is_none());
        assert_eq!(t.len(), 1);
        // A newer connection under the same address survives the old one's removal.
        assert!(t.insert(ConnId(4), Kind::Tls, a(1000), a(5061), true, None, tx));
        t.remove(ConnId(2));
        assert_eq!(t.lookup(Kind::Tls, a(1000)).map(|x| x.0), Some(ConnId(4)));
    }
}
