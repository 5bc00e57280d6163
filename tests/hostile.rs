//! Hostile input on both protocols from an enrolled device (admission lets it in): garbage,
//! truncated and oversized gossip; garbage, unknown-kind, truncated and oversized sync frames.
//! The node rejects each, counts it, and keeps serving.

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
    rt.block_on(attack(secret, addr, event_id));
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

async fn attack(secret: [u8; 32], addr: Multiaddr, event_id: String) {
    let keypair = libp2p::identity::Keypair::ed25519_from_bytes(secret).unwrap();
    let gossip_config = gossipsub::ConfigBuilder::default()
        .validation_mode(gossipsub::ValidationMode::Strict)
        .max_transmit_size(1 << 20) // bigger than the node accepts
        .heartbeat_interval(Duration::from_millis(100))
        .build()
        .unwrap();
    let mut swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_quic()
        .with_behaviour(|key| {
            Ok(Attacker {
                gossip: gossipsub::Behaviour::new(
                    gossipsub::MessageAuthenticity::Signed(key.clone()),
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
