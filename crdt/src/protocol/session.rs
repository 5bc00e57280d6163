//! The network side of a [`Replica`]: peers coming and going, gossip of changes and bulletins,
//! sync sessions (tips exchanged, bounded batches both ways, [`SYNC_SESSIONS_MAX`] of our own
//! at once), bulletin hand-over to every peer that connects (retried when it fails), and the
//! periodic round that repairs what gossip missed.

use crate::ledger::pending::PeerTag;
use crate::ledger::sync::SyncMessage;
use crate::ledger::{Admitted, Single, Tip};
use crate::protocol::bundle;
use crate::protocol::replica::{Replica, SYNC_INTERVAL_MS, SYNC_SESSIONS_MAX};
use crate::protocol::{
    Acceptance, Asked, Event, Input, Output, Reply, Token, Topic, KIND_BULLETIN, KIND_HELLO,
    KIND_ROOM, KIND_SYNC,
};
use crate::record::DeviceId;
use crate::Rejection;

/// The ledger's tag for a peer (bounds on changes held per peer).
fn tag(peer: DeviceId) -> PeerTag {
    u64::from(peer.0) + 1
}

impl Replica {
    pub(crate) fn network(&mut self, input: Input) {
        match input {
            Input::PeerUp { peer } => self.peer_up(peer),
            Input::PeerDown { peer } => self.peer_down(peer),
            Input::PeerListening { peer } => self.peer_listening(peer),
            Input::Gossip {
                from,
                token,
                topic,
                data,
            } => self.gossip(from, token, topic, &data),
            Input::SyncRequest { from, token, data } => self.sync_request(from, token, &data),
            Input::SyncAnswer { from, data } => self.sync_answer(from, &data),
            Input::RoomAnswer { from, data } => self.room_answer(from, &data),
            Input::SyncFailed { from, asked } => self.sync_failed(from, asked),
            Input::FrameRefused { .. } => self.counters.sync_frames_refused += 1,
            Input::Tick => self.tick(),
            _ => {}
        }
    }

    fn peer_up(&mut self, peer: DeviceId) {
        if !self.peers.admissible(peer, self.now_ms) {
            self.out.push(Output::Deny { peer });
            self.out.push(Output::Disconnect { peer });
            return;
        }
        let Some(p) = self.peers.get_mut(peer) else {
            return;
        };
        // A connection replacing an older one may be a peer that restarted with another event
        // file: its gossip counts again only after its hello on this connection.
        p.connection(true, self.now_ms);
        self.event(Event::PeerConnected(peer));
        self.send_hello(peer);
        self.send_bulletins(peer);
        self.start_sync(peer, true);
    }

    fn peer_down(&mut self, peer: DeviceId) {
        let now = self.now_ms;
        let Some(p) = self.peers.get_mut(peer) else {
            return;
        };
        let was_online = p.online;
        p.connection(false, now);
        if was_online {
            self.event(Event::PeerDisconnected(peer));
            self.sync_needy();
        }
    }

    /// Gossip we published before the peer listened never reached it (a peer that just
    /// connected, or we that just started): a session now, or as soon as the one on its way
    /// ends, carries it.
    /// Once per connection: a peer that subscribes again and again gets no extra sessions.
    fn peer_listening(&mut self, peer: DeviceId) {
        let Some(p) = self
            .peers
            .get_mut(peer)
            .filter(|p| p.online && !p.listening)
        else {
            return;
        };
        p.listening = true;
        p.sync_owed = true;
        self.start_sync(peer, true);
    }

    fn gossip(&mut self, from: DeviceId, token: Token, topic: Topic, data: &[u8]) {
        self.counters.gossip_bytes_in += data.len() as u64;
        let acceptance = match topic {
            Topic::Control if self.take_bulletin(data, Some(from)) => Acceptance::Accept,
            Topic::Control => Acceptance::Reject,
            // Not before its hello named our configuration: sync fetches it then.
            Topic::Ledger if !self.same_config(from) => Acceptance::Ignore,
            Topic::Ledger => self.ledger_message(from, data),
        };
        if acceptance == Acceptance::Accept {
            self.counters.gossip_accepted += 1;
        }
        self.out.push(Output::Validate { token, acceptance });
    }

    /// A ledger message: one change or a bundle, its changes admitted as one batch (one
    /// verification pass, one write, one event). A message that is not a bundle or whose
    /// changes include one refused is refused whole, and counts against its sender.
    fn ledger_message(&mut self, from: DeviceId, data: &[u8]) -> Acceptance {
        let changes: Vec<Vec<u8>> = match bundle::decode(data) {
            Ok(changes) => changes.into_iter().map(<[u8]>::to_vec).collect(),
            Err(e) => {
                self.counters.gossip_rejected += 1;
                self.counters.rejected_messages += 1;
                let reason = e.code().to_string();
                self.event(Event::Rejected {
                    from: Some(from),
                    reason,
                });
                return Acceptance::Reject;
            }
        };
        let outcome = self.admit(from, &changes, "gossip");
        self.acceptance(outcome, from)
    }

    /// What gossip does with a ledger message: forward what we admitted; drop quietly what
    /// we had, what waits for its predecessor (sync fetches it) and records of devices we do not
    /// know yet (a bulletin may enroll them); refuse, and count against the sender, the rest.
    fn acceptance(&mut self, outcome: Single, from: DeviceId) -> Acceptance {
        match outcome {
            Single::Admitted => Acceptance::Accept,
            Single::Duplicate | Single::Held | Single::Unvouched => Acceptance::Ignore,
            Single::Rejected(r) => {
                self.counters.gossip_rejected += 1;
                self.counters.rejected_messages += 1;
                self.event(Event::Rejected {
                    from: Some(from),
                    reason: r.code().to_string(),
                });
                Acceptance::Reject
            }
        }
    }

    /// Admit changes from a peer, write what is new, report it. What became of them as one
    /// message.
    pub(crate) fn admit(
        &mut self,
        from: DeviceId,
        changes: &[Vec<u8>],
        via: &'static str,
    ) -> Single {
        let own_before = self.own_len();
        let admitted = self
            .gate
            .ledger_mut()
            .admit(self.now_ms, tag(from), changes);
        let outcome = admitted.of_message();
        let own_back = self.own_len() > own_before;
        self.after_admit(admitted, from, via, own_back);
        outcome
    }

    /// How many changes of our own chain this replica holds.
    pub(crate) fn own_len(&self) -> u32 {
        let ledger = self.gate.ledger();
        ledger
            .local_chain()
            .map_or(0, |c| ledger.chains().len_of(c))
    }

    fn after_admit(&mut self, a: Admitted, from: DeviceId, via: &'static str, own_back: bool) {
        if !a.persist.is_empty() {
            // Our own chain's changes handed back by a peer (a store that lost its tail): written
            // durably, and shown to peers once written, as a restart would show them.
            self.persist(a.persist, own_back);
            if own_back {
                self.answer_after_writes(None, Reply::BulletinAccepted, Vec::new(), None);
            }
        }
        if !a.records.is_empty() {
            if let Some(j) = &mut self.journal {
                j.extend(a.records.iter().cloned());
            }
            self.room_received(&a.records);
            self.event(Event::Applied {
                via,
                from,
                records: a.records,
            });
            self.records_changed();
        }
        if !a.rejected.is_empty() {
            self.counters.rejected_messages += 1;
            let reasons = a.rejected.iter().map(Rejection::code).collect();
            self.event(Event::RejectedChanges { from, via, reasons });
        }
        if !a.forks.is_empty() {
            self.keep_forks();
            self.records_changed();
        }
        if a.held > 0 {
            self.start_sync(from, true);
        }
    }

    fn sync_request(&mut self, from: DeviceId, token: Token, data: &[u8]) {
        let reply = match data.split_first() {
            // Not before its hello named our configuration (it will ask again).
            Some((&KIND_SYNC, _)) if !self.same_config(from) => Vec::new(),
            Some((&KIND_SYNC, msg)) => match self.receive_sync(from, msg) {
                Some((theirs, _)) => {
                    SyncMessage::from_ledger(self.gate.ledger(), Some(&theirs)).encode()
                }
                None => Vec::new(),
            },
            Some((&KIND_BULLETIN, b)) => {
                self.take_bulletin(b, Some(from));
                Vec::new()
            }
            // Room is given to a peer that judges by our configuration only; the answer waits
            // for the room record's write.
            Some((&KIND_ROOM, ask)) if self.same_config(from) => {
                return self.room_asked_by(from, token, ask);
            }
            Some((&KIND_ROOM, _)) => Vec::new(),
            // The answer is our own hello: each side learns the other's from one exchange.
            Some((&KIND_HELLO, fp)) => {
                self.hello(from, fp);
                self.hello_bytes()
            }
            _ => {
                self.counters.sync_failures += 1;
                self.rejected(from, "sync: unknown frame kind".into());
                Vec::new()
            }
        };
        self.counters.sync_bytes_out += reply.len() as u64;
        self.out.push(Output::Respond { token, data: reply });
    }

    /// A peer sent what is not a protocol message: count it and drop its connections (it may
    /// reconnect, and start a fresh session).
    pub(crate) fn rejected(&mut self, from: DeviceId, reason: String) {
        self.counters.rejected_messages += 1;
        self.counters.peers_penalized += 1;
        self.event(Event::Rejected {
            from: Some(from),
            reason,
        });
        self.out.push(Output::Disconnect { peer: from });
    }

    /// Take a sync message in: its fork proofs, its changes, the sender's tips. The tips and
    /// whether the sender had more, or `None` (the peer is penalized) when it does not decode.
    fn receive_sync(&mut self, from: DeviceId, bytes: &[u8]) -> Option<(Vec<Tip>, bool)> {
        self.counters.sync_bytes_in += bytes.len() as u64;
        let msg = match SyncMessage::decode(bytes) {
            Ok(m) => m,
            Err(e) => {
                self.counters.sync_failures += 1;
                self.rejected(from, format!("sync: {}", e.code()));
                return None;
            }
        };
        let mut new_forks = false;
        for (a, b) in &msg.forks {
            new_forks |= self.gate.ledger_mut().accept_fork(a, b).unwrap_or(false);
        }
        if new_forks {
            self.keep_forks();
            self.records_changed();
        }
        if !msg.changes.is_empty() {
            self.admit(from, &msg.changes, "sync");
        }
        if let Some(p) = self.peers.get_mut(from) {
            p.tips = Some(msg.tips.clone());
            p.last_seen_ms = self.now_ms;
        }
        Some((msg.tips, msg.more))
    }

    /// The answer to our sync message: take it in, then go on while either side has something
    /// for the other; else the session ends and waiting peers get the slot.
    fn sync_answer(&mut self, from: DeviceId, bytes: &[u8]) {
        // The answer to our hello is the peer's: not a sync session's.
        if let Some(fp) = bytes.strip_prefix(&[KIND_HELLO]).filter(|f| f.len() == 32) {
            return self.hello(from, fp);
        }
        if let Some(p) = self.peers.get_mut(from) {
            p.in_flight = false;
        }
        // A refusal: the peer has not had our hello. Offering it sessions again at once would
        // be refused as fast; our hello goes again, and its answer lets the sessions resume.
        if bytes.is_empty() {
            if let Some(p) = self.peers.get_mut(from) {
                p.refused = true;
            }
            self.send_hello(from);
            return self.session_ended(from);
        }
        if !self.same_config(from) {
            return self.session_ended(from);
        }
        let Some((theirs, more)) = self.receive_sync(from, bytes) else {
            return self.session_ended(from);
        };
        let next = SyncMessage::from_ledger(self.gate.ledger(), Some(&theirs));
        if more || next.carries_changes() {
            self.send_sync(from, &next);
        } else {
            self.catch_up.session_done(from);
            self.session_ended(from);
        }
    }

    /// A session with `peer` ended: one its hello asked for meanwhile starts now; then peers
    /// waiting for a slot get it.
    fn session_ended(&mut self, peer: DeviceId) {
        let owed = (self.peers.get_mut(peer)).is_some_and(|p| std::mem::take(&mut p.sync_owed));
        if owed {
            self.start_sync(peer, true);
        }
        self.sync_needy();
    }

    fn sync_failed(&mut self, from: DeviceId, asked: Asked) {
        let Some(p) = self.peers.get_mut(from) else {
            return;
        };
        match asked {
            Asked::Bulletin => return p.bulletin_retry = true,
            // The next ask goes when due ([`crate::protocol::escrow::ROOM_ASK_EVERY_MS`]).
            Asked::Room => return,
            Asked::Sync => {}
        }
        // What the peer holds is unknown again: the next session starts from its tips.
        p.in_flight = false;
        p.tips = None;
        self.counters.sync_failures += 1;
        self.event(Event::Error {
            code: "sync_failure",
            message: format!("a sync message to {} got no answer", self.peers.name(from)),
        });
        self.session_ended(from);
    }

    /// Open a sync session with `peer`, unless one is on its way or the cap is reached. Unless
    /// `always`, only when we know it lacks something or we wait for a predecessor.
    pub(crate) fn start_sync(&mut self, peer: DeviceId, always: bool) {
        let Some(p) = self.peers.get(peer) else {
            return;
        };
        if !p.online || p.in_flight || p.refused || self.peers.in_flight() >= SYNC_SESSIONS_MAX {
            return;
        }
        let ledger = self.gate.ledger();
        let msg = SyncMessage::from_ledger(ledger, p.tips.as_deref());
        if !always && !msg.carries_changes() && ledger.held() == 0 {
            return;
        }
        self.send_sync(peer, &msg);
    }

    fn send_sync(&mut self, peer: DeviceId, msg: &SyncMessage) {
        let mut data = vec![KIND_SYNC];
        data.extend_from_slice(&msg.encode());
        self.counters.sync_bytes_out += data.len() as u64;
        if let Some(p) = self.peers.get_mut(peer) {
            p.in_flight = true;
            p.sync_owed = false;
        }
        self.out.push(Output::Send {
            to: peer,
            data,
            asked: Asked::Sync,
        });
    }

    /// A session slot came free: peers we know to lack something get their turn.
    fn sync_needy(&mut self) {
        let online: Vec<DeviceId> = self.peers.online().collect();
        for p in online {
            let owed = self.peers.get(p).is_some_and(|x| x.sync_owed);
            self.start_sync(p, owed);
        }
    }

    /// Tell `peer` which event configuration we judge by (it checks, as we check its own).
    fn send_hello(&mut self, peer: DeviceId) {
        let data = self.hello_bytes();
        self.out.push(Output::Send {
            to: peer,
            data,
            asked: Asked::Bulletin,
        });
    }

    /// `KIND_HELLO` and our fingerprint (a SyncMessage never starts so: its version is 1).
    fn hello_bytes(&self) -> Vec<u8> {
        let mut data = vec![KIND_HELLO];
        data.extend_from_slice(&self.fingerprint);
        data
    }

    /// A peer's hello: the same configuration lets its gossip and sync in; another one
    /// refuses the peer (`event_mismatch`: counted, reported once per configuration it names,
    /// disconnected; it may come back with the right file), so two nodes that would judge the
    /// same records differently never pair silently.
    fn hello(&mut self, from: DeviceId, fingerprint: &[u8]) {
        let Some(p) = self.peers.get_mut(from) else {
            return;
        };
        if fingerprint == self.fingerprint {
            let first = !p.same_config;
            p.same_config = true;
            // A refusal is lifted by its hello once per round: a peer that refuses and says
            // hello again and again waits for the next round (it cannot hold the session slot).
            let lift = p.refused && !p.refusal_lifted;
            if lift {
                p.refused = false;
                p.refusal_lifted = true;
            }
            p.other_config = None;
            // What it gossiped before its first hello on this connection: sync fetches it now,
            // or as soon as the session on its way ends (its answer may be a refusal: it had
            // not had our hello). A hello again owes nothing (a peer sending one during every
            // session would keep the session slot from the others).
            if first || lift {
                p.sync_owed = true;
                self.start_sync(from, true);
            }
            return;
        }
        let theirs = &fingerprint[..fingerprint.len().min(32)];
        let new = p.other_config.as_deref() != Some(theirs);
        p.other_config = Some(theirs.to_vec());
        p.same_config = false;
        self.counters.event_mismatch += 1;
        if new {
            self.event(Event::EventMismatch {
                peer: from,
                theirs: hex::encode(theirs),
                ours: hex::encode(self.fingerprint),
            });
        }
        self.out.push(Output::Disconnect { peer: from });
    }

    /// Whether `peer`'s hello named our configuration since it connected.
    pub(crate) fn same_config(&self, peer: DeviceId) -> bool {
        self.peers.get(peer).is_some_and(|p| p.same_config)
    }

    /// Hand every bulletin we know to `peer` (it may have been off when they went out).
    fn send_bulletins(&mut self, peer: DeviceId) {
        let known: Vec<Vec<u8>> = self.gate.bulletins().map(|b| b.bytes().to_vec()).collect();
        for b in known {
            let mut data = vec![KIND_BULLETIN];
            data.extend_from_slice(&b);
            self.out.push(Output::Send {
                to: peer,
                data,
                asked: Asked::Bulletin,
            });
        }
    }

    /// Due rounds: bulletin hand-overs that failed, a session offered to every peer,
    /// certificates that expired.
    fn tick(&mut self) {
        self.ask_room();
        if self.now_ms < self.next_sync_ms {
            return;
        }
        self.next_sync_ms = self.now_ms + SYNC_INTERVAL_MS;
        let mut online: Vec<DeviceId> = self.peers.online().collect();
        if !online.is_empty() {
            let start = self.sync_cursor % online.len();
            online.rotate_left(start);
            self.sync_cursor = start + SYNC_SESSIONS_MAX;
        }
        for peer in online {
            if !self.peers.admissible(peer, self.now_ms) {
                self.out.push(Output::Deny { peer });
                self.out.push(Output::Disconnect { peer });
                continue;
            }
            let retry = self
                .peers
                .get_mut(peer)
                .is_some_and(|p| std::mem::take(&mut p.bulletin_retry));
            if retry {
                self.send_bulletins(peer);
            }
            let refused = self.peers.get_mut(peer).is_some_and(|p| {
                p.refusal_lifted = false;
                std::mem::take(&mut p.refused)
            });
            if retry || refused || !self.same_config(peer) {
                self.send_hello(peer);
            }
            self.start_sync(peer, true);
        }
    }
}
