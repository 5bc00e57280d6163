//! The node's HTTP connections, plain and TLS, counted and bounded: a phone on the venue Wi-Fi
//! is as likely to be a stranger's laptop opening connections and saying nothing as a steward.
//!
//! - at most [`CONNECTIONS_MAX`] open at once, and [`CONNECTIONS_PER_IP_MAX`] from one address
//!   (a connection over either is closed as it is accepted; the others are still served);
//! - a connection with nothing read or written for [`IDLE_MAX`] is closed (the live stream
//!   writes a keep-alive every 15 s, so a dashboard stays connected).

use axum::serve::Listener;
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
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
/// A connection silent this long in both directions is closed.
pub const IDLE_MAX: Duration = Duration::from_secs(60);

/// The open connections, counted by address; shared by a node's listeners.
#[derive(Clone, Debug, Default)]
pub struct Budget {
    open: Arc<Mutex<(usize, HashMap<IpAddr, usize>)>>,
}

impl Budget {
    /// Room for one more connection from `ip`, or `None` when the node or that address is at its
    /// limit. The room is given back when the ticket is dropped.
    pub fn take(&self, ip: IpAddr) -> Option<Ticket> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let (total, by_ip) = &mut *open;
        let mine = by_ip.entry(ip).or_default();
        if *total >= CONNECTIONS_MAX || *mine >= CONNECTIONS_PER_IP_MAX {
            return None;
        }
        *mine += 1;
        *total += 1;
        Some(Ticket {
            budget: self.clone(),
            ip,
        })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.lock().unwrap_or_else(|e| e.into_inner()).0
    }
}

/// One connection's room in the [`Budget`].
#[derive(Debug)]
pub struct Ticket {
    budget: Budget,
    ip: IpAddr,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut open = self.budget.open.lock().unwrap_or_else(|e| e.into_inner());
        let (total, by_ip) = &mut *open;
        *total = total.saturating_sub(1);
        if let Some(n) = by_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                by_ip.remove(&self.ip);
            }
        }
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
    _ticket: Ticket,
}

impl<I> Guarded<I> {
    pub fn new(io: I, ticket: Ticket, idle: Duration) -> Guarded<I> {
        Guarded {
            io,
            idle,
            last: Instant::now(),
            deadline: Box::pin(tokio::time::sleep(idle)),
            _ticket: ticket,
        }
    }

    /// Pending until `idle` has passed since the last traffic, then the idle error.
    fn expired<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
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

    #[test]
    fn the_budget_bounds_the_node() {
        let b = Budget::default();
        let mut held = Vec::new();
        for i in 0..CONNECTIONS_MAX {
            let ip = IpAddr::from([10, 1, (i / 256) as u8, (i % 256) as u8]);
            held.push(b.take(ip).expect("room"));
        }
        assert!(b.take("10.9.9.9".parse().unwrap()).is_none());
        held.pop();
        assert!(b.take("10.9.9.9".parse().unwrap()).is_some());
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
