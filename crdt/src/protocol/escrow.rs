//! The network side of strict zones' room (`crate::gate::escrow`): a replica short of room in a
//! zone asks the gates it knows to hold some (`KIND_ROOM`, at most every
//! [`ROOM_ASK_EVERY_MS`] per zone, once a scan in the zone is written and published, and at
//! every tick); a replica asked gives, by a room record made durable and then published like
//! any record of its own.
//! The room arrives as a record, by two paths: the answer to the ask, once the record is
//! durable, and its gossip (and sync, if both were lost).

use crate::protocol::replica::Replica;
use crate::protocol::{Asked, Event, Output, Token, KIND_ROOM};
use crate::record::DeviceId;

/// How often a replica asks for room of one zone, at most.
pub const ROOM_ASK_EVERY_MS: u64 = 250;
/// A gate is busy in a zone (it asks for room, and gives only what it holds above its own
/// need) for this long after a scan into the zone: an idle gate neither asks nor hoards, and
/// room stops moving once the queues are gone.
pub const ROOM_BUSY_MS: u64 = 5_000;
/// Gates asked at once.
const ROOM_ASK_FANOUT: usize = 2;
/// Own changes an ask carries: the asker's latest, so that a giver judges it by the admits
/// that made it short even when their gossip is late or lost (a giver that has not seen them
/// believes the asker holds its low water and gives nothing).
pub const ROOM_ASK_TAIL: u32 = 4;
/// Largest ask read.
pub const ROOM_ASK_BYTES_MAX: usize = 4_096;
/// Most times a replica gives room of one zone to one gate in a minute: ten a second, as fast
/// as a busy lane spends what one gift brings. Room itself needs no such bound (a gate gets
/// room only while it is known to hold less than its low water, so it must spend room, in
/// admits everyone sees, to get more); this bounds the records a gate that asks and asks makes
/// its peers write.
pub const ROOM_GIFTS_PER_MINUTE: u32 = 600;

/// An ask: the zone, the units wanted, and the asker's latest own changes.
#[derive(serde::Serialize, serde::Deserialize)]
struct Ask {
    zone: String,
    want: u32,
    tail: Vec<Vec<u8>>,
}

/// The bytes of an ask (`KIND_ROOM` first) for `want` units of `zone`, carrying `tail`, the
/// asker's latest own changes (trimmed, oldest first, to fit [`ROOM_ASK_BYTES_MAX`]).
pub fn room_ask(zone: &str, want: u32, tail: Vec<Vec<u8>>) -> Vec<u8> {
    let zone = zone.to_string();
    Ask { zone, want, tail }.encode()
}

impl Ask {
    /// The ask's bytes, its tail trimmed (oldest first) to fit [`ROOM_ASK_BYTES_MAX`].
    fn encode(mut self) -> Vec<u8> {
        loop {
            let mut data = vec![KIND_ROOM];
            data.extend(postcard::to_allocvec(&self).unwrap_or_default());
            if data.len() <= ROOM_ASK_BYTES_MAX || self.tail.is_empty() {
                return data;
            }
            self.tail.remove(0);
        }
    }

    fn decode(msg: &[u8]) -> Option<Ask> {
        if msg.len() >= ROOM_ASK_BYTES_MAX {
            return None;
        }
        let ask: Ask = postcard::from_bytes(msg).ok()?;
        (ask.tail.len() <= ROOM_ASK_TAIL as usize).then_some(ask)
    }
}

impl Replica {
    /// Ask for room where this gate is short, of gates connected and known to hold some.
    pub(crate) fn ask_room(&mut self) {
        for (zone, want, donors) in self.gate.room_wanted() {
            if !self.room_busy(&zone) {
                continue;
            }
            let last = self.room_asked.get(&zone).copied().unwrap_or(0);
            if self.now_ms < last.saturating_add(ROOM_ASK_EVERY_MS) {
                continue;
            }
            let asked: Vec<DeviceId> = (donors.into_iter())
                .filter(|d| self.peers.get(*d).is_some_and(|p| p.online) && self.same_config(*d))
                .take(ROOM_ASK_FANOUT)
                .collect();
            if asked.is_empty() {
                continue;
            }
            self.room_asked.insert(zone.clone(), self.now_ms);
            let data = room_ask(&zone, want, self.gate.ledger().own_tail(ROOM_ASK_TAIL));
            for to in &asked {
                self.out.push(Output::Send {
                    to: *to,
                    data: data.clone(),
                    asked: Asked::Room,
                });
            }
            self.event(Event::RoomAsked { zone, want, asked });
        }
    }

    /// Whether people came to this gate for `zone` just now ([`ROOM_BUSY_MS`]).
    fn room_busy(&self, zone: &str) -> bool {
        (self.room_scanned.get(zone)).is_some_and(|t| self.now_ms < t.saturating_add(ROOM_BUSY_MS))
    }

    /// A scan at a gate of `zone` (a strict one): this gate is busy there; it may be short.
    /// It asks once the scan's record is written and published
    /// ([`Replica::asks_after_writes`]): a giver that has not seen the admit yet would judge
    /// this gate by its room before it.
    pub(crate) fn room_scan(&mut self, zone: &str) {
        if self.gate.config().is_strict(zone) {
            self.room_scanned.insert(zone.to_string(), self.now_ms);
        }
    }

    /// Writes are done and their records published: ask for room where this gate is short
    /// (with a write still out, its end asks; under a steady stream of writes, the tick does).
    pub(crate) fn asks_after_writes(&mut self) {
        if !self.room_scanned.is_empty() && self.writes_done() {
            self.ask_room();
        }
    }

    /// Room records among `records` that move room to this gate.
    pub(crate) fn room_received(&mut self, records: &[crate::RecordRef]) {
        let Some(me) = self.gate.ledger().local_device() else {
            return;
        };
        let me = me.to_string();
        for r in records {
            if r.verdict != crate::record::Verdict::Room || r.gate != me {
                continue;
            }
            let (Some(from), Ok(units)) = (DeviceId::parse(&r.device), r.tier.parse()) else {
                continue;
            };
            self.event(Event::RoomReceived {
                zone: r.zone.clone(),
                from,
                units,
            });
        }
    }

    /// A peer asks for room: take in the changes it carries (as any change from the peer), then
    /// give what the gate logic gives. The room record is durable before it is published, and
    /// before the answer carries it too (a second path, should the gossip be lost).
    pub(crate) fn room_asked_by(&mut self, from: DeviceId, token: Token, msg: &[u8]) {
        let Some(mut ask) = Ask::decode(msg) else {
            self.out.push(Output::Respond {
                token,
                data: Vec::new(),
            });
            return self.rejected(from, "room: not an ask".into());
        };
        let tail = std::mem::take(&mut ask.tail);
        if !tail.is_empty() {
            self.admit(from, &tail, "room");
        }
        let Some((change, event)) = self.room_gift(from, ask) else {
            let data = Vec::new();
            return self.out.push(Output::Respond { token, data });
        };
        self.persist(vec![change.clone()], true);
        self.records_changed();
        let answer = [&[KIND_ROOM][..], &change].concat();
        self.respond_after_writes(token, answer, vec![change], event);
    }

    /// The room record given for `ask`, if any, and its event.
    fn room_gift(&mut self, from: DeviceId, ask: Ask) -> Option<(Vec<u8>, Event)> {
        let minute = self.now_ms / 60_000;
        let key = (from, ask.zone.clone());
        let gifts = (self.room_gifts.get(&key))
            .filter(|(m, _)| *m == minute)
            .map_or(0, |g| g.1);
        if gifts >= ROOM_GIFTS_PER_MINUTE {
            return None;
        }
        let busy = self.room_busy(&ask.zone);
        let asked = (ask.zone.as_str(), ask.want);
        let (change, units) = self.gate.give_room(self.now_ms, from, asked, busy)?;
        self.room_gifts.insert(key, (minute, gifts + 1));
        let event = Event::RoomGiven {
            zone: ask.zone,
            to: from,
            units,
        };
        Some((change, event))
    }

    /// The answer to our ask: the room record given, taken in as any change from the peer.
    pub(crate) fn room_answer(&mut self, from: DeviceId, data: &[u8]) {
        match data.split_first() {
            None => {}
            Some((&KIND_ROOM, change)) if self.same_config(from) => {
                self.admit(from, &[change.to_vec()], "room");
            }
            Some((&KIND_ROOM, _)) => {}
            Some(_) => self.rejected(from, "room: not an answer".into()),
        }
    }
}
