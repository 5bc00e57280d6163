//! `http`: `POST /api/scan` over loopback against a real `gatemesh node run --http`, with
//! `concurrency` clients on keep-alive connections, each scanning distinct tickets (every
//! request is a full decision: credential check, ledger, durable write). Latency is measured by
//! the client from writing the request to reading the whole answer.

use crate::report::percentile;
use gatemesh_tests::{make_event, NodeProc};
use serde_json::{json, Map, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

pub struct HttpBench {
    pub concurrency: usize,
    pub requests: usize,
}

/// One client: its share of the codes, one connection; returns latencies (ms) and failures.
fn client(addr: &str, codes: &[String]) -> anyhow::Result<(Vec<f64>, usize)> {
    client_at(addr, "/api/scan", codes)
}

/// One keep-alive HTTP/1.1 connection with the staff token.
pub struct Conn {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Conn {
    pub fn open(addr: &str) -> anyhow::Result<Conn> {
        Conn::over(TcpStream::connect(addr)?)
    }

    /// Like [`Conn::open`], with the connect, every read and every write bounded by `limit`.
    pub fn open_within(addr: &str, limit: Duration) -> anyhow::Result<Conn> {
        let stream = TcpStream::connect_timeout(&addr.parse::<SocketAddr>()?, limit)?;
        stream.set_read_timeout(Some(limit))?;
        stream.set_write_timeout(Some(limit))?;
        Conn::over(stream)
    }

    fn over(stream: TcpStream) -> anyhow::Result<Conn> {
        stream.set_nodelay(true)?;
        Ok(Conn {
            reader: BufReader::new(stream.try_clone()?),
            writer: stream,
        })
    }

    /// Post `{"code"}` to `path`: whether the answer is a 200 admit.
    fn scan(&mut self, addr: &str, path: &str, code: &str) -> anyhow::Result<bool> {
        let body = serde_json::to_vec(&json!({ "code": code }))?;
        let (status, answer) = exchange(self, addr, "POST", path, &body)?;
        Ok(status == 200
            && serde_json::from_slice::<Value>(&answer).is_ok_and(|v| v["verdict"] == "admit"))
    }
}

/// One request with the staff token and its whole answer: (status, body).
pub fn exchange(
    conn: &mut Conn,
    addr: &str,
    method: &str,
    path: &str,
    body: &[u8],
) -> anyhow::Result<(u16, Vec<u8>)> {
    exchange_as(conn, addr, "staff", (method, path), body)
}

/// One request with `token` (a token or a phone's pass) and its whole answer.
pub fn exchange_as(
    conn: &mut Conn,
    addr: &str,
    token: &str,
    (method, path): (&str, &str),
    body: &[u8],
) -> anyhow::Result<(u16, Vec<u8>)> {
    write!(
        conn.writer,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )?;
    conn.writer.write_all(body)?;
    let mut status = String::new();
    conn.reader.read_line(&mut status)?;
    let code: u16 = status.split(' ').nth(1).unwrap_or("0").parse().unwrap_or(0);
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        conn.reader.read_line(&mut line)?;
        if line == "\r\n" || line.is_empty() {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse()?;
        }
    }
    let mut answer = vec![0u8; length];
    conn.reader.read_exact(&mut answer)?;
    Ok((code, answer))
}

/// One scanner posting `{"code"}` to `path` on one keep-alive connection: the latency of every
/// answer (ms) and how many were not a 200 admit.
pub fn client_at(addr: &str, path: &str, codes: &[String]) -> anyhow::Result<(Vec<f64>, usize)> {
    let mut conn = Conn::open(addr)?;
    let mut latencies = Vec::with_capacity(codes.len());
    let mut failed = 0;
    for code in codes {
        let t0 = Instant::now();
        let admitted = conn.scan(addr, path, code)?;
        latencies.push(t0.elapsed().as_secs_f64() * 1000.0);
        failed += usize::from(!admitted);
    }
    Ok((latencies, failed))
}

/// What a paced scanner saw: the latency of every admit (ms) and the scans that got none.
#[derive(Debug, Default)]
pub struct Paced {
    pub admit_ms: Vec<f64>,
    /// Refused, answered with an error, or unanswered within the limit (no connection, lost).
    pub failed: usize,
}

/// A scanner at a steady pace (one scan every `every`, the first after `offset`) posting
/// `{"code"}` to `path`, as a gate's scanner does: one keep-alive connection, opened before the
/// first scan and again (inside the timed scan) after one broke; each scan waits at most
/// `limit`.
pub fn paced_client(
    addr: &str,
    path: &str,
    codes: &[String],
    (every, offset): (Duration, Duration),
    limit: Duration,
) -> Paced {
    let start = Instant::now() + offset;
    let mut conn = Conn::open_within(addr, limit).ok();
    let mut out = Paced::default();
    for (k, code) in codes.iter().enumerate() {
        if let Some(wait) = (start + every * k as u32).checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let t0 = Instant::now();
        let answer = match conn.as_mut() {
            Some(c) => c.scan(addr, path, code),
            None => {
                Conn::open_within(addr, limit).and_then(|c| conn.insert(c).scan(addr, path, code))
            }
        };
        match answer {
            Ok(true) => out.admit_ms.push(t0.elapsed().as_secs_f64() * 1000.0),
            Ok(false) => out.failed += 1,
            Err(_) => {
                conn = None;
                out.failed += 1;
            }
        }
    }
    out
}

pub fn run(b: &HttpBench) -> anyhow::Result<Map<String, Value>> {
    let tmp = tempfile::tempdir()?;
    let ev = tmp.path().join("event");
    let codes: Vec<String> = make_event(&ev, b.requests as u32, &["a"], false)
        .into_iter()
        .map(|(_, c)| c)
        .collect();
    let (mut node, addr) = NodeProc::start_http(
        &ev,
        "device-a",
        &tmp.path().join("a"),
        "north",
        &["--no-mdns"],
    );
    let per = codes.len().div_ceil(b.concurrency);
    let started = Instant::now();
    let clients: Vec<_> = codes
        .chunks(per)
        .map(|chunk| {
            let (addr, chunk) = (addr.clone(), chunk.to_vec());
            std::thread::spawn(move || client(&addr, &chunk))
        })
        .collect();
    // The node prints every decision; keep reading so it never waits on its output.
    while !clients.iter().all(|c| c.is_finished()) {
        node.drain();
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let elapsed = started.elapsed().as_secs_f64();
    let mut latencies = Vec::new();
    let mut failed = 0;
    for c in clients {
        let (l, f) = c
            .join()
            .map_err(|_| anyhow::anyhow!("a client panicked"))??;
        latencies.extend(l);
        failed += f;
    }
    let mut out = Map::new();
    out.insert("bench".into(), json!("http"));
    out.insert("concurrency".into(), json!(b.concurrency));
    out.insert("requests".into(), json!(latencies.len()));
    out.insert("failed".into(), json!(failed));
    out.insert("p50_ms".into(), json!(percentile(&mut latencies, 50.0)));
    out.insert("p99_ms".into(), json!(percentile(&mut latencies, 99.0)));
    out.insert(
        "throughput_per_s".into(),
        json!(latencies.len() as f64 / elapsed),
    );
    Ok(out)
}
