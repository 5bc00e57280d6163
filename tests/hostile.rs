//! Hostile input on both protocols from an enrolled device (admission lets it in): garbage,
//! truncated and oversized gossip; garbage, unknown-kind, truncated and oversized sync frames;
//! and crafted Automerge changes (a forged actor, a hijacked next sequence number, a delete, an
//! overwrite, a root write, an op on an unknown object, a flood of changes missing their
//! predecessor, a record re-wrapped under another actor, a forked chain). The nodes refuse each,
//! count it, keep serving, and still agree after every honest node is SIGKILLed and restarted.

use futures::{AsyncRead, AsyncWrite, AsyncWriteExt, StreamExt};
use gatemesh_tests::{make_event, NodeProc};
use libp2p::{gossipsub, request_response, swarm::SwarmEvent, Multiaddr, StreamProtocol};
use std::io;
use std::time::Duration;

/// A request-response codec that writes whatever bytes it is given, with no framing: the test
/// controls the length prefix the node reads.
#[derive(Clone, Default)]
struct RawCodec;

impl request_response::Codec for RawCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;
    async fn read_request<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        _: &mut T,
    ) -> io::Result<Vec<u8>> {
        Ok(Vec::new())
    }
    async fn read_response<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Vec<u8>> {
        use futures::AsyncReadExt;
        let mut buf = Vec::new();
        io.take(1 << 20).read_to_end(&mut buf).await?;
        Ok(buf)
    }
    async fn write_request<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Vec<u8>,
    ) -> io::Result<()> {
        io.write_all(&req).await?;
        io.close().await
    }
    async fn write_response<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        _: &mut T,
        _: Vec<u8>,
    ) -> io::Result<()> {
        Ok(())
    }
}

#[derive(libp2p::swarm::NetworkBehaviour)]
struct Attacker {
    gossip: gossipsub::Behaviour,
    sync: request_response::Behaviour<RawCodec>,
}

fn framed(kind: Option<u8>, body: &[u8]) -> Vec<u8> {
    let len = body.len() + usize::from(kind.is_some());
    let mut f = (len as u32).to_be_bytes().to_vec();
    f.extend(kind);
    f.extend_from_slice(body);
    f
}

#[test]
fn garbage_truncated_and_oversized_messages_are_rejected_and_the_node_keeps_serving() {
    let tmp = tempfile::tempdir().unwrap();
    let ev = tmp.path().join("event");
    let codes = make_event(&ev, 2, &["a", "mallory"], false);
    let mut a = NodeProc::start(
        &ev,
        "device-a",
        &tmp.path().join("a"),
        "north",
        &["--no-mdns"],
    );
    let started = a.wait_for("started", |v| v["event"] == "started");
    let listening = a.wait_for("listening", |v| v["event"] == "listening");
    let addr: Multiaddr = format!(
        "{}/p2p/{}",
        listening["addr"].as_str().unwrap(),
        started["peer_id"].as_str().unwrap()
    )
    .parse()
    .unwrap();
    let event_id: String =
        serde_json::from_slice::<serde_json::Value>(&std::fs::read(ev.join("event.json")).unwrap())
            .unwrap()["event_id"]
            .as_str()
            .unwrap()
            .to_string();
    let secret = std::fs::read_to_string(ev.join("device-mallory/device.key")).unwrap();
    let secret: [u8; 32] = hex::decode(secret.trim()).unwrap().try_into().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(attack(secret, addr, event_id, hello(&ev)));
    // The node is still serving: it answers a scan and reports what it refused.
    assert_eq!(a.scan(&codes[0].1)["reason"], "ok");
    let status = a.status();
    assert_eq!(status["records"], 1, "{status}");
    let refused: Vec<&serde_json::Value> = a
        .seen
        .iter()
        .filter(|v| v["event"] == "rejected_message")
        .collect();
    for r in &refused {
        eprintln!("refused: {}", r["reason"]);
    }
    let rejected = refused.len();
    assert!(
        rejected >= 4,
        "expected the garbage to be refused and reported: {:#?}",
        a.seen
    );
    assert!(
        status["mesh"]["gossip_rejected"].as_u64().unwrap() >= 2,
        "{status}"
    );
    assert!(
        status["mesh"]["sync_failures"].as_u64().unwrap() >= 2,
        "{status}"
    );
    assert!(
        status["sync_frames_refused"].as_u64().unwrap() >= 2,
        "oversized and cut frames: {status}"
    );
    assert!(
        status["mesh"]["peers_penalized"].as_u64().unwrap() >= 1,
        "{status}"
    );
}

/// A message's id from its bytes, as the nodes make it (an anonymous message has no author and
/// sequence number to make one from).
fn content_id(m: &gossipsub::Message) -> gossipsub::MessageId {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    m.data.hash(&mut h);
    gossipsub::MessageId::from(h.finish().to_be_bytes().to_vec())
}

async fn attack(secret: [u8; 32], addr: Multiaddr, event_id: String, hello: Vec<u8>) {
    let keypair = libp2p::identity::Keypair::ed25519_from_bytes(secret).unwrap();
    let gossip_config = gossipsub::ConfigBuilder::default()
        .validation_mode(gossipsub::ValidationMode::Anonymous)
        .message_id_fn(content_id)
        .max_transmit_size(1 << 20) // bigger than the node accepts
        .heartbeat_interval(Duration::from_millis(100))
        .build()
        .unwrap();
    let mut swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_quic()
        .with_behaviour(|_| {
            Ok(Attacker {
                gossip: gossipsub::Behaviour::new(
                    gossipsub::MessageAuthenticity::Anonymous,
                    gossip_config,
                )
                .unwrap(),
                sync: request_response::Behaviour::with_codec(
                    RawCodec,
                    [(
                        StreamProtocol::new("/gatemesh/sync/2"),
                        request_response::ProtocolSupport::Outbound,
                    )],
                    request_response::Config::default()
                        .with_request_timeout(Duration::from_secs(5)),
                ),
            })
        })
        .unwrap()
        .build();
    let topic = gossipsub::IdentTopic::new(format!("gatemesh/{event_id}/ledger"));
    swarm.behaviour_mut().gossip.subscribe(&topic).unwrap();
    swarm.dial(addr).unwrap();
    let peer = loop {
        if let SwarmEvent::ConnectionEstablished { peer_id, .. } = swarm.select_next_some().await {
            break peer_id;
        }
    };
    // The hello any member sends: the event configuration, public in event.json.
    swarm.behaviour_mut().sync.send_request(&peer, hello);
    // Let subscriptions cross, then send everything.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    let mut sent = false;
    loop {
        tokio::select! {
            _ = swarm.select_next_some() => {}
            _ = tokio::time::sleep_until(deadline) => break,
            _ = tokio::time::sleep(Duration::from_millis(1500)), if !sent => {
                sent = true;
                let g = &mut swarm.behaviour_mut().gossip;
                let _ = g.publish(topic.clone(), b"not an automerge change".to_vec());
                let _ = g.publish(topic.clone(), vec![0x85, 0x6f, 0x4a, 0x83, 0, 0, 0]); // truncated change header
                let _ = g.publish(topic.clone(), vec![7u8; 200 * 1024]); // oversized
                let s = &mut swarm.behaviour_mut().sync;
                s.send_request(&peer, framed(Some(0), b"not a sync message"));
                s.send_request(&peer, framed(Some(9), b"unknown kind"));
                s.send_request(&peer, (1u32 << 30).to_be_bytes().to_vec()); // claims 1 GiB
                let mut cut = framed(Some(0), &[1, 2, 3, 4, 5, 6, 7, 8]);
                cut.truncate(7);
                s.send_request(&peer, cut);
            }
        }
    }
}

/// Read a sync answer written by the node's codec: a u32 length, then a kind-less message.
/// A member's hello, framed: the fingerprint of the event configuration in `ev`.
fn hello(ev: &std::path::Path) -> Vec<u8> {
    let config = gatemesh_node::package::load_config(ev).expect("event.json");
    framed(
        Some(gatemesh_crdt::protocol::KIND_HELLO),
        &config.fingerprint(),
    )
}

fn answer(bytes: &[u8]) -> Option<gatemesh_crdt::SyncMessage> {
    gatemesh_crdt::SyncMessage::decode(bytes.get(4..)?).ok()
}

/// Every crafted change mallory can make from a's real changes and its own key.
fn crafted_changes(
    real: &[Vec<u8>],
    mallory: &ed25519_dalek::SigningKey,
    event_id: &str,
) -> Vec<Vec<u8>> {
    use automerge::legacy::{Key, ObjectId, OpId, OpType};
    use automerge::{ActorId, Change, ChangeHash, ScalarValue};
    use gatemesh_crdt::record::change;
    let recs: Vec<gatemesh_crdt::Candidate> = real
        .iter()
        .map(|c| change::read(c).expect("a's change"))
        .collect();
    let last = recs.last().unwrap();
    let a_actor = ActorId::from(last.chain().actor_bytes().to_vec());
    let edit = |c: &gatemesh_crdt::Candidate, f: &dyn Fn(&mut automerge::ExpandedChange)| {
        let mut e = change::build(&c.record).decode();
        f(&mut e);
        Change::from(e).raw_bytes().to_vec()
    };
    // mallory's own records, validly signed, on its own chain.
    let me = gatemesh_crdt::DeviceId::from_public_key(&mallory.verifying_key());
    let own = |seq: u32, link: [u8; 32], ticket: &str| {
        let body = gatemesh_crdt::ScanBody {
            version: gatemesh_crdt::record::RECORD_VERSION,
            device: me,
            chain: gatemesh_crdt::ChainId(66),
            seq,
            link,
            ticket_id: ticket.into(),
            tier: "general".into(),
            gate: "north".into(),
            zone: "main".into(),
            direction: gatemesh_crdt::Direction::In,
            verdict: gatemesh_crdt::Verdict::Admit,
            reason: "ok".into(),
            hlc: gatemesh_crdt::Hlc::new(gatemesh_node::now_ms(), 0).0,
            wall_ms: gatemesh_node::now_ms(),
            seen: vec![],
            annuls: None,
            origin: None,
        };
        gatemesh_crdt::ScanRecord::sign(body, mallory).unwrap()
    };
    let anchor = gatemesh_crdt::anchor(event_id);
    let mut out = vec![
        // mallory's record under a's actor with a's next sequence number and a missing dep.
        edit(
            &change::read(&change::build_bytes(&own(1, anchor, "HIJACK")).0).unwrap(),
            &|e| {
                e.actor_id = a_actor.clone();
                e.seq = u64::from(last.seq()) + 1;
                e.start_op = e.seq.try_into().unwrap();
                e.deps = vec![ChangeHash([0xee; 32])];
            },
        ),
        // A record claiming a's next position, signed by mallory.
        change::build_bytes(&{
            let mut r = own(last.seq() + 1, last.hash, "FORGED");
            r.body.device = last.chain().device;
            r.body.chain = last.chain().chain;
            gatemesh_crdt::ScanRecord::sign(r.body, mallory).unwrap()
        })
        .0,
        // a's record re-wrapped under mallory's actor.
        edit(last, &|e| e.actor_id = ActorId::from(vec![9u8; 8])),
        // Root write, delete, overwrite, unknown object, built around a's last record.
        edit(last, &|e| {
            e.operations[0].key = Key::Map("00".into());
            e.operations[0].action = OpType::Put(ScalarValue::Int(1));
        }),
        edit(last, &|e| {
            e.operations[0].key = Key::Map(recs[0].record.scan_id().into());
            e.operations[0].action = OpType::Delete;
            e.operations[0].pred = vec![OpId::new(1, &a_actor)].into();
        }),
        edit(last, &|e| {
            e.operations[0].key = Key::Map(recs[0].record.scan_id().into());
            e.operations[0].pred = vec![OpId::new(1, &a_actor)].into();
        }),
        edit(last, &|e| {
            e.operations[0].obj = ObjectId::Id(OpId::new(99, &a_actor))
        }),
    ];
    // A flood of mallory's changes whose first never comes.
    let mut link = [1u8; 32];
    for seq in 2..3000 {
        let (bytes, hash) = change::build_bytes(&own(seq, link, &format!("FLOOD{seq}")));
        link = hash;
        out.push(bytes);
    }
    out
}

/// mallory's chain forked at its first position: two different changes, both signed.
fn forked_pair(mallory: &ed25519_dalek::SigningKey, event_id: &str) -> (Vec<u8>, Vec<u8>) {
    let me = gatemesh_crdt::DeviceId::from_public_key(&mallory.verifying_key());
    let make = |ticket: &str| {
        let body = gatemesh_crdt::ScanBody {
            version: gatemesh_crdt::record::RECORD_VERSION,
            device: me,
            chain: gatemesh_crdt::ChainId(77),
            seq: 1,
            link: gatemesh_crdt::anchor(event_id),
            ticket_id: ticket.into(),
            tier: "general".into(),
            gate: "north".into(),
            zone: "main".into(),
            direction: gatemesh_crdt::Direction::In,
            verdict: gatemesh_crdt::Verdict::Admit,
            reason: "ok".into(),
            hlc: gatemesh_crdt::Hlc::new(gatemesh_node::now_ms(), 0).0,
            wall_ms: gatemesh_node::now_ms(),
            seen: vec![],
            annuls: None,
            origin: None,
        };
        let r = gatemesh_crdt::ScanRecord::sign(body, mallory).unwrap();
        gatemesh_crdt::record::change::build_bytes(&r).0
    };
    (make("FORK-A"), make("FORK-B"))
}

#[test]
fn crafted_changes_over_gossip_and_sync_are_refused_and_restarted_nodes_still_agree() {
    let tmp = tempfile::tempdir().unwrap();
    let ev = tmp.path().join("event");
    let codes = make_event(&ev, 6, &["a", "b", "c", "mallory"], false);
    let start = |n: &str| {
        NodeProc::start(
            &ev,
            &format!("device-{n}"),
            &tmp.path().join(n),
            "north",
            &[],
        )
    };
    let mut nodes = vec![start("a"), start("b"), start("c")];
    for n in nodes.iter_mut() {
        n.wait_peers(2);
    }
    let mut admitted = Vec::new();
    for (i, code) in codes.iter().take(3).enumerate() {
        let d = nodes[i].scan(&code.1);
        assert_eq!(d["reason"], "ok", "{d}");
        admitted.push(d["scan_id"].as_str().unwrap().to_string());
    }
    let status = nodes[0].status();
    let event_id = status["event_id"].as_str().unwrap().to_string();
    let listening = nodes[0]
        .seen
        .iter()
        .find(|v| v["event"] == "listening")
        .unwrap()
        .clone();
    let started = nodes[0]
        .seen
        .iter()
        .find(|v| v["event"] == "started")
        .unwrap()
        .clone();
    let addr: Multiaddr = format!(
        "{}/p2p/{}",
        listening["addr"].as_str().unwrap(),
        started["peer_id"].as_str().unwrap()
    )
    .parse()
    .unwrap();
    let secret = std::fs::read_to_string(ev.join("device-mallory/device.key")).unwrap();
    let secret: [u8; 32] = hex::decode(secret.trim()).unwrap().try_into().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(attack_with_changes(secret, addr, event_id, hello(&ev)));
    // a refused and counted everything crafted; mallory's fork is proven and its chain dropped.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let ledger = loop {
        let s = nodes[0].status();
        if s["ledger"]["forks_proven"] == 1 {
            break s["ledger"].clone();
        }
        assert!(std::time::Instant::now() < deadline, "no fork proven: {s}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        ledger["rejected_malformed"].as_u64().unwrap() >= 5,
        "{ledger}"
    );
    assert!(
        ledger["rejected_bad_signature"].as_u64().unwrap() >= 1,
        "{ledger}"
    );
    assert!(ledger["held_dropped"].as_u64().unwrap() >= 1, "{ledger}");

    // Every honest node, SIGKILLed and restarted from its store, still agrees, holds every
    // acknowledged admit and indexes nothing crafted (three records: the three admits).
    let names = ["a", "b", "c"];
    for n in nodes.iter_mut() {
        n.kill();
    }
    drop(nodes);
    let mut nodes: Vec<NodeProc> = names.iter().map(|n| start(n)).collect();
    for n in nodes.iter_mut() {
        n.wait_peers(2);
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let s: Vec<serde_json::Value> = nodes.iter_mut().map(|n| n.status()).collect();
        let same = s
            .windows(2)
            .all(|w| w[0]["heads"] == w[1]["heads"] && w[0]["conflicts"] == w[1]["conflicts"]);
        if same && s.iter().all(|v| v["records"] == 3) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "restarted nodes disagree: {s:#?}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    for n in nodes.iter_mut() {
        for (i, code) in codes.iter().take(3).enumerate() {
            let d = n.scan(&code.1);
            assert_eq!(d["reason"], "already_redeemed", "{}: {d}", n.name);
            assert_eq!(d["previous"][0]["scan_id"], admitted[i].as_str());
        }
    }
}

async fn attack_with_changes(secret: [u8; 32], addr: Multiaddr, event_id: String, hello: Vec<u8>) {
    let keypair = libp2p::identity::Keypair::ed25519_from_bytes(secret).unwrap();
    let mallory = ed25519_dalek::SigningKey::from_bytes(&secret);
    let gossip_config = gossipsub::ConfigBuilder::default()
        .validation_mode(gossipsub::ValidationMode::Anonymous)
        .message_id_fn(content_id)
        .heartbeat_interval(Duration::from_millis(100))
        .build()
        .unwrap();
    let mut swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_quic()
        .with_behaviour(|_| {
            Ok(Attacker {
                gossip: gossipsub::Behaviour::new(
                    gossipsub::MessageAuthenticity::Anonymous,
                    gossip_config,
                )
                .unwrap(),
                sync: request_response::Behaviour::with_codec(
                    RawCodec,
                    [(
                        StreamProtocol::new("/gatemesh/sync/2"),
                        request_response::ProtocolSupport::Outbound,
                    )],
                    request_response::Config::default()
                        .with_request_timeout(Duration::from_secs(10)),
                ),
            })
        })
        .unwrap()
        .build();
    let topic = gossipsub::IdentTopic::new(format!("gatemesh/{event_id}/ledger"));
    swarm.behaviour_mut().gossip.subscribe(&topic).unwrap();
    swarm.dial(addr).unwrap();
    let peer = loop {
        if let SwarmEvent::ConnectionEstablished { peer_id, .. } = swarm.select_next_some().await {
            break peer_id;
        }
    };
    // The hello any member sends: the event configuration, public in event.json.
    swarm.behaviour_mut().sync.send_request(&peer, hello);
    // A sync request as any member may send: it brings a's changes back.
    let ask = gatemesh_crdt::SyncMessage {
        version: 1,
        ..Default::default()
    }
    .encode();
    swarm
        .behaviour_mut()
        .sync
        .send_request(&peer, framed(Some(0), &ask));
    let real = loop {
        if let SwarmEvent::Behaviour(AttackerEvent::Sync(request_response::Event::Message {
            message: request_response::Message::Response { response, .. },
            ..
        })) = swarm.select_next_some().await
        {
            // The hello's answer is empty; the sync answer carries a's changes.
            if let Some(m) = answer(&response) {
                break m.changes;
            }
        }
    };
    assert!(!real.is_empty(), "a answered with its changes");
    let crafted = crafted_changes(&real, &mallory, &event_id);
    let (fork_a, fork_b) = forked_pair(&mallory, &event_id);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(6);
    let mut sent = false;
    loop {
        tokio::select! {
            _ = swarm.select_next_some() => {}
            _ = tokio::time::sleep_until(deadline) => break,
            _ = tokio::time::sleep(Duration::from_millis(1500)), if !sent => {
                sent = true;
                let g = &mut swarm.behaviour_mut().gossip;
                for c in crafted.iter().take(7) {
                    let _ = g.publish(topic.clone(), c.clone());
                }
                let _ = g.publish(topic.clone(), fork_a.clone());
                // The same, and the rest, inside sync messages.
                for batch in crafted.chunks(1000) {
                    let msg = gatemesh_crdt::SyncMessage {
                        version: 1,
                        changes: batch.to_vec(),
                        forks: vec![(vec![1, 2, 3], vec![4, 5, 6])],
                        ..Default::default()
                    };
                    swarm.behaviour_mut().sync.send_request(&peer, framed(Some(0), &msg.encode()));
                }
                let fork = gatemesh_crdt::SyncMessage { version: 1, changes: vec![fork_b.clone()], ..Default::default() };
                swarm.behaviour_mut().sync.send_request(&peer, framed(Some(0), &fork.encode()));
            }
        }
    }
}
