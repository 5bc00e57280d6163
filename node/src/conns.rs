//! The node's HTTP connections, plain and TLS, counted and bounded: a phone on the venue Wi-Fi
//! is as likely to be a stranger's laptop opening connections and saying nothing as a steward.
//!
//! - at most [`CONNECTIONS_MAX`] open at once, and [`CONNECTIONS_PER_IP_MAX`] from one address
//!   (a connection over either is closed as it is accepted; the others are still served);
//! - a connection is a stranger until a request on it presents a valid token; strangers hold at
//!   most [`STRANGERS_MAX`] of the room and are the first closed: a new connection when the room
//!   is full, or when strangers hold their whole share, closes the oldest stranger. So clients
//!   with no token cannot keep a steward out: a steward's connection always gets in, and once
//!   its first request shows the token it is never closed for room;
//! - a connection with nothing read or written for [`IDLE_MAX`] is closed (the live stream
//!   writes a keep-alive every 15 s, so a dashboard stays connected).

use axum::serve::Listener;
use futures::task::AtomicWaker;
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, Sleep};

/// Open HTTP connections (plain and TLS together) a node keeps at most.
pub const CONNECTIONS_MAX: usize = 512;
/// Open HTTP connections from one IP address at most.
pub const CONNECTIONS_PER_IP_MAX: usize = 32;
/// Open connections that have not shown a valid token (strangers) at most.
pub const STRANGERS_MAX: usize = 64;
/// A connection silent this long in both directions is closed.
pub const IDLE_MAX: Duration = Duration::from_secs(60);

/// The open connections, counted by address, strangers oldest first; shared by a node's
/// listeners.
#[derive(Clone, Debug, Default)]
pub struct Budget {
    open: Arc<Mutex<Open>>,
}

#[derive(Debug, Default)]
struct Open {
    total: usize,
    by_ip: HashMap<IpAddr, usize>,
    strangers: VecDeque<Arc<Standing>>,
}

impl Open {
    /// Give one connection's room back (once: a closed connection's is given when it closes).
    fn release(&mut self, s: &Arc<Standing>) {
        if s.released.swap(true, Ordering::SeqCst) {
            return;
        }
        self.total = self.total.saturating_sub(1);
        if let Some(n) = self.by_ip.get_mut(&s.ip) {
            *n -= 1;
            if *n == 0 {
                self.by_ip.remove(&s.ip);
            }
        }
        self.strangers.retain(|x| !Arc::ptr_eq(x, s));
    }

    /// Close the oldest stranger and take its room back.
    fn close_oldest_stranger(&mut self) {
        if let Some(s) = self.strangers.pop_front() {
            self.release(&s);
            s.waker.wake();
        }
    }
}

/// What a connection is to the budget: its address, whether it showed a valid token, whether
/// it was closed to make room.
#[derive(Debug)]
pub struct Standing {
    ip: IpAddr,
    proven: AtomicBool,
    released: AtomicBool,
    waker: AtomicWaker,
}

impl Budget {
    /// Room for one more connection from `ip`, or `None` when that address is at its limit or
    /// the node is full of connections that showed a token. Strangers are closed first to make
    /// room. The room is given back when the ticket is dropped.
    pub fn take(&self, ip: IpAddr) -> Option<Ticket> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if open.by_ip.get(&ip).copied().unwrap_or(0) >= CONNECTIONS_PER_IP_MAX {
            return None;
        }
        if open.strangers.len() >= STRANGERS_MAX || open.total >= CONNECTIONS_MAX {
            open.close_oldest_stranger();
        }
        if open.total >= CONNECTIONS_MAX {
            return None;
        }
        let standing = Arc::new(Standing {
            ip,
            proven: AtomicBool::new(false),
            released: AtomicBool::new(false),
            waker: AtomicWaker::new(),
        });
        *open.by_ip.entry(ip).or_default() += 1;
        open.total += 1;
        open.strangers.push_back(standing.clone());
        Some(Ticket {
            budget: self.clone(),
            standing,
        })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.lock().unwrap_or_else(|e| e.into_inner()).total
    }
}

/// One connection's room in the [`Budget`].
#[derive(Debug)]
pub struct Ticket {
    budget: Budget,
    standing: Arc<Standing>,
}

impl Ticket {
    /// What a request handler needs to vouch for the connection.
    pub fn handle(&self) -> ConnHandle {
        ConnHandle {
            budget: self.budget.clone(),
            standing: self.standing.clone(),
        }
    }

    /// Whether the connection was closed to make room.
    fn closed(&self) -> bool {
        self.standing.released.load(Ordering::SeqCst)
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut open = self.budget.open.lock().unwrap_or_else(|e| e.into_inner());
        open.release(&self.standing);
    }
}

/// A connection as request handlers see it (axum's connect info): once a request on it shows a
/// valid token, [`ConnHandle::vouch`] takes it out of the strangers.
#[derive(Clone, Debug)]
pub struct ConnHandle {
    budget: Budget,
    standing: Arc<Standing>,
}

impl ConnHandle {
    pub fn vouch(&self) {
        if self.standing.proven.swap(true, Ordering::SeqCst) {
            return;
        }
        let mut open = self.budget.open.lock().unwrap_or_else(|e| e.into_inner());
        open.strangers.retain(|x| !Arc::ptr_eq(x, &self.standing));
    }

    /// Whether a request on it showed a valid token.
    pub fn vouched(&self) -> bool {
        self.standing.proven.load(Ordering::SeqCst)
    }
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, PlainListener>>
    for ConnHandle
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, PlainListener>) -> ConnHandle {
        stream.io().handle()
    }
}

/// A connection holding its ticket, closed (an error on its next read or write) after `idle`
/// without traffic. Traffic only notes the time; the timer is moved when it fires early.
#[derive(Debug)]
pub struct Guarded<I> {
    io: I,
    idle: Duration,
    last: Instant,
    deadline: Pin<Box<Sleep>>,
    ticket: Ticket,
}

impl<I> Guarded<I> {
    pub fn new(io: I, ticket: Ticket, idle: Duration) -> Guarded<I> {
        Guarded {
            io,
            idle,
            last: Instant::now(),
            deadline: Box::pin(tokio::time::sleep(idle)),
            ticket,
        }
    }

    /// The connection's standing, for request handlers.
    pub fn handle(&self) -> ConnHandle {
        self.ticket.handle()
    }

    /// Pending until `idle` has passed since the last traffic (the idle error) or the
    /// connection is closed to make room.
    fn expired<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        self.ticket.standing.waker.register(cx.waker());
        if self.ticket.closed() {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "closed to make room for connections with a token",
            )));
        }
        while self.deadline.as_mut().poll(cx).is_ready() {
            let due = self.last + self.idle;
            if due <= Instant::now() {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "connection idle too long",
                )));
            }
            self.deadline.as_mut().reset(due);
        }
        Poll::Pending
    }

    /// Note traffic; when the inner side waits, wait on the clock too.
    fn watch<T>(&mut self, cx: &mut Context<'_>, p: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if self.ticket.closed() {
            return self.expired(cx);
        }
        match p {
            Poll::Ready(r) => {
                self.last = Instant::now();
                Poll::Ready(r)
            }
            Poll::Pending => self.expired(cx),
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Guarded<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let p = Pin::new(&mut this.io).poll_read(cx, buf);
        this.watch(cx, p)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Guarded<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let p = Pin::new(&mut this.io).poll_write(cx, buf);
        this.watch(cx, p)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let p = Pin::new(&mut this.io).poll_flush(cx);
        this.watch(cx, p)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Accept the next TCP connection `budget` has room for; the others are closed at once.
pub async fn accept(tcp: &TcpListener, budget: &Budget) -> (Guarded<TcpStream>, SocketAddr) {
    loop {
        let (stream, peer) = match tcp.accept().await {
            Ok(c) => c,
            // Out of descriptors, say: wait a little rather than spin.
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if let Some(ticket) = budget.take(peer.ip()) {
            let _ = stream.set_nodelay(true);
            return (Guarded::new(stream, ticket, IDLE_MAX), peer);
        }
    }
}

/// Plain HTTP connections within a [`Budget`] (for `axum::serve`).
#[derive(Debug)]
pub struct PlainListener {
    tcp: TcpListener,
    budget: Budget,
}

impl PlainListener {
    pub fn new(tcp: TcpListener, budget: Budget) -> PlainListener {
        PlainListener { tcp, budget }
    }
}

impl Listener for PlainListener {
    type Io = Guarded<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        accept(&self.tcp, &self.budget).await
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn the_budget_bounds_each_address_and_gives_room_back() {
        let b = Budget::default();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        let held: Vec<Ticket> = (0..CONNECTIONS_PER_IP_MAX)
            .map(|_| b.take(a).expect("room"))
            .collect();
        assert!(b.take(a).is_none(), "one address is bounded");
        let o = b.take(other).expect("another address still has room");
        drop(held);
        assert_eq!(b.open(), 1);
        assert!(b.take(a).is_some(), "room comes back");
        drop(o);
    }

    fn ip(i: usize) -> IpAddr {
        IpAddr::from([10, 1, (i / 256) as u8, (i % 256) as u8])
    }

    #[test]
    fn the_budget_bounds_the_node_and_closes_strangers_first() {
        let b = Budget::default();
        let mut held = Vec::new();
        for i in 0..CONNECTIONS_MAX {
            let t = b.take(ip(i)).expect("room");
            // All but the last STRANGERS_MAX show a token.
            if i < CONNECTIONS_MAX - STRANGERS_MAX {
                t.handle().vouch();
            }
            held.push(t);
        }
        assert_eq!(b.open(), CONNECTIONS_MAX);
        // A newcomer closes the oldest stranger, never a vouched connection.
        let newcomer = b
            .take("10.9.9.9".parse().unwrap())
            .expect("room for a newcomer");
        let oldest_stranger = CONNECTIONS_MAX - STRANGERS_MAX;
        assert!(held[oldest_stranger].closed());
        assert!(held[..oldest_stranger].iter().all(|t| !t.closed()));
        assert!(held[oldest_stranger + 1..].iter().all(|t| !t.closed()));
        assert_eq!(b.open(), CONNECTIONS_MAX);
        // The closed one gives its room back once only.
        held.remove(oldest_stranger);
        assert_eq!(b.open(), CONNECTIONS_MAX);
        newcomer.handle().vouch();
        // Vouched all through: no room, and nothing is closed for it.
        for t in held.iter().skip(oldest_stranger) {
            t.handle().vouch();
        }
        assert!(b.take("10.9.9.8".parse().unwrap()).is_none());
        assert!(held.iter().all(|t| !t.closed()));
        held.pop();
        assert!(b.take("10.9.9.8".parse().unwrap()).is_some());
    }

    #[test]
    fn strangers_hold_a_share_and_the_oldest_goes_first() {
        let b = Budget::default();
        let held: Vec<Ticket> = (0..STRANGERS_MAX + 3)
            .map(|i| b.take(ip(i)).unwrap())
            .collect();
        assert_eq!(b.open(), STRANGERS_MAX);
        assert!(held[..3].iter().all(Ticket::closed));
        assert!(held[3..].iter().all(|t| !t.closed()));
    }

    #[tokio::test]
    async fn a_stranger_closed_for_room_fails_its_next_read() {
        let b = Budget::default();
        let (near, _far) = tokio::io::duplex(64);
        let mut g = Guarded::new(near, b.take(ip(0)).unwrap(), IDLE_MAX);
        let reading = tokio::spawn(async move {
            let mut buf = [0u8; 1];
            g.read(&mut buf).await
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        let _others: Vec<Ticket> = (1..=STRANGERS_MAX)
            .map(|i| b.take(ip(i)).unwrap())
            .collect();
        let e = reading.await.unwrap().unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::ConnectionAborted);
    }

    #[tokio::test]
    async fn a_silent_connection_is_closed_and_a_talking_one_is_not() {
        let b = Budget::default();
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let idle = Duration::from_millis(150);
        let (near, mut far) = tokio::io::duplex(64);
        let mut g = Guarded::new(near, b.take(ip).unwrap(), idle);
        // Traffic every 50 ms keeps it open past the idle time.
        for _ in 0..6 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            far.write_all(b"x").await.unwrap();
            let mut one = [0u8; 1];
            g.read_exact(&mut one).await.unwrap();
        }
        // Then silence: the next read fails with the idle error, and the room is given back.
        let mut buf = [0u8; 1];
        let e = g.read(&mut buf).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        drop(g);
        assert_eq!(b.open(), 0);
    }
}
