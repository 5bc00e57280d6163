//! `gatemesh-bench search`: a steward's search box over a festival's guest list. A manifest of
//! N tickets with attendee names and order references (made up from syllables, accents
//! included); the index is built (as a node does when it starts), then many searches of 3 to 6 letters of
//! a name, typed without accents, each timed. Reports the build time, the search latency and
//! the memory the index takes.

use crate::report::percentile;
use gatemesh_crdt::event::manifest::{
    Attendee, Manifest, ManifestBody, ManifestTicket, TicketStatus,
};
use gatemesh_crdt::event::search::{fold, parse_query};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Map, Value};
use std::time::Instant;

const SYLLABLES: [&str; 24] = [
    "ma", "ri", "lé", "no", "è", "sa", "tu", "ko", "ä", "bel", "jo", "an", "dré", "ç", "ou", "li",
    "ne", "ro", "ü", "vi", "del", "mo", "za", "ph",
];
const SEARCHES: usize = 10_000;

fn word(rng: &mut StdRng) -> String {
    let n = rng.gen_range(2..=4);
    let mut w: String = (0..n)
        .map(|_| SYLLABLES[rng.gen_range(0..SYLLABLES.len())])
        .collect();
    if let Some(first) = w.chars().next() {
        let upper: String = first.to_uppercase().collect();
        w.replace_range(..first.len_utf8(), &upper);
    }
    w
}

fn manifest(tickets: usize, rng: &mut StdRng) -> Manifest {
    let tickets = (0..tickets)
        .map(|i| ManifestTicket {
            ticket_id: format!("T{i:07}"),
            ticket_code: format!("CODE-{i}"),
            tier: "general".into(),
            zone: "main".into(),
            max_scans: 1,
            current_scans: 0,
            status: TicketStatus::Valid,
            nfc_uid: None,
            attendee: Attendee {
                name: Some(format!("{} {}", word(rng), word(rng))),
                order: Some(format!("ORD-{}", i / 3)),
                ..Attendee::default()
            },
        })
        .collect();
    let body = ManifestBody {
        event_id: "bench".into(),
        generated_at: 0,
        expires_at: u64::MAX,
        tickets,
    };
    Manifest::new(body).expect("the bench manifest is valid")
}

/// Run the benchmark with `tickets` attendees; `live_bytes` reads the allocator's live bytes.
pub fn run(tickets: usize, live_bytes: fn() -> u64) -> anyhow::Result<Map<String, Value>> {
    let mut rng = StdRng::seed_from_u64(7);
    let m = manifest(tickets, &mut rng);
    let names: Vec<String> = m
        .tickets()
        .iter()
        .map(|t| t.attendee.name.clone().unwrap_or_default())
        .collect();
    let before = live_bytes();
    let started = Instant::now();
    m.search_index();
    let build_ms = started.elapsed().as_secs_f64() * 1000.0;
    let index_bytes = live_bytes().saturating_sub(before);
    let first = m.search(&parse_query("zz")?).len();
    let mut lat = Vec::with_capacity(SEARCHES);
    let mut hits = 0usize;
    for _ in 0..SEARCHES {
        let name = fold(&names[rng.gen_range(0..names.len())]);
        let last = name.split_whitespace().last().unwrap_or("").to_string();
        let len = rng.gen_range(3..=6).min(last.chars().count());
        let q: String = last.chars().take(len.max(2)).collect();
        let query = parse_query(&q)?;
        let t = Instant::now();
        hits += m.search(&query).len();
        lat.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let mut out = Map::new();
    out.insert("bench".into(), json!("search"));
    out.insert("tickets".into(), json!(tickets));
    out.insert("index_build_ms".into(), json!(build_ms));
    out.insert(
        "index_bytes_per_ticket".into(),
        json!(index_bytes as f64 / tickets as f64),
    );
    out.insert("search_p50_us".into(), json!(percentile(&mut lat, 50.0)));
    out.insert("search_p99_us".into(), json!(percentile(&mut lat, 99.0)));
    out.insert("search_max_us".into(), json!(percentile(&mut lat, 100.0)));
    out.insert("mean_hits".into(), json!(hits as f64 / SEARCHES as f64));
    out.insert("first_hits".into(), json!(first));
    Ok(out)
}
