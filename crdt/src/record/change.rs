//! The one Automerge change that may carry a record, and the check that a change is exactly it.
//!
//! Automerge has no access control: any peer can write any operation under any actor. So the
//! ledger admits a change only if it is *canonical*: byte for byte the change [`build`] makes
//! from the record it carries. That change has the record's chain as actor (`device || chain`),
//! the record's position as sequence number and start op, the record's `link` as its only
//! dependency (none for the first), time 0, no message, no extra bytes, and one operation: a put
//! of the record's bytes under its scan id in the document's root map. Since the record is
//! signed and names all of that, the device's signature binds the whole change: a forged actor,
//! a hijacked sequence number, a delete, an overwrite, a write elsewhere in the document or a
//! record re-wrapped under another actor cannot be canonical.
//!
//! [`read`] never hands hostile op columns to Automerge's expansion (which trusts them): it
//! reads the header with `Change::from_bytes`, finds the record by its known prefix, rebuilds
//! the canonical change and compares bytes.

use crate::record::{ChainKey, RecordError, ScanRecord, RECORD_BYTES_MAX, RECORD_VERSION};
use automerge::legacy::{Key, ObjectId, Op, OpType};
use automerge::{ActorId, Change, ChangeHash, ExpandedChange, ScalarValue};
use sha2::{Digest, Sha256};
use std::num::NonZeroU64;

/// Largest change accepted: one record and the change's own header and columns.
pub const CHANGE_BYTES_MAX: usize = RECORD_BYTES_MAX + 256;
/// A change hash (SHA-256 of the chunk after its magic and checksum, as Automerge computes it).
pub type Hash = [u8; 32];
const MAGIC: [u8; 4] = [0x85, 0x6f, 0x4a, 0x83];
/// Automerge chunk type of an uncompressed change (1); compressed changes (2) are refused.
const CHUNK_TYPE_CHANGE: u8 = 1;
/// How many places holding the record's prefix are tried (a prefix may also occur by chance
/// inside the dependency hash).
const PREFIX_TRIES_MAX: usize = 4;

/// Why a change was refused. Each has a stable code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum Rejection {
    #[error("change is over {CHANGE_BYTES_MAX} bytes")]
    TooLarge,
    #[error("bytes are not an Automerge change")]
    Undecodable,
    #[error("change is not exactly the one its record describes")]
    NotCanonical,
    #[error("record: {0}")]
    BadRecord(&'static str),
    #[error("record's device is not enrolled")]
    UnknownDevice,
    #[error("record is past its device's revocation")]
    RevokedDevice,
    #[error("record is on a chain its device forked")]
    ForkedChain,
    #[error("record signature does not verify")]
    BadSignature,
    #[error("first record of a chain that does not belong to this event")]
    WrongEvent,
    #[error("device has too many chains; this one is not among those kept")]
    ChainLimit,
}

impl Rejection {
    pub fn code(&self) -> &'static str {
        match self {
            Rejection::TooLarge => "change_too_large",
            Rejection::Undecodable => "change_undecodable",
            Rejection::NotCanonical => "change_not_canonical",
            Rejection::BadRecord(code) => code,
            Rejection::UnknownDevice => "unknown_device",
            Rejection::RevokedDevice => "revoked_device",
            Rejection::ForkedChain => "forked_chain",
            Rejection::BadSignature => "bad_signature",
            Rejection::WrongEvent => "wrong_event",
            Rejection::ChainLimit => "chain_limit",
        }
    }
}

/// A change that is canonical for the record it carries; not yet checked against the roster,
/// the chain or the signature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub record: ScanRecord,
    pub hash: Hash,
    pub bytes: Vec<u8>,
}

impl Candidate {
    pub fn chain(&self) -> ChainKey {
        self.record.body.chain_key()
    }
    pub fn seq(&self) -> u32 {
        self.record.body.seq
    }
}

/// The canonical change carrying `record`.
pub fn build(record: &ScanRecord) -> Change {
    let b = &record.body;
    let seq = u64::from(b.seq);
    let deps = if b.seq == 1 {
        Vec::new()
    } else {
        vec![ChangeHash(b.link)]
    };
    let op = Op {
        action: OpType::Put(ScalarValue::Bytes(record.bytes.clone())),
        obj: ObjectId::Root,
        key: Key::Map(b.scan_id().into()),
        pred: Vec::new().into(),
        insert: false,
    };
    ExpandedChange {
        operations: vec![op],
        actor_id: ActorId::from(b.chain_key().actor_bytes().to_vec()),
        hash: None,
        seq,
        start_op: NonZeroU64::new(seq).unwrap_or(NonZeroU64::MIN),
        time: 0,
        message: None,
        deps,
        extra_bytes: Vec::new(),
        author: None,
    }
    .into()
}

/// The canonical change carrying `record`: its bytes and hash.
pub fn build_bytes(record: &ScanRecord) -> (Vec<u8>, Hash) {
    let change = build(record);
    (change.raw_bytes().to_vec(), change.hash().0)
}

/// Hash of change bytes already known to be a change (stored ones): what Automerge computes.
pub fn hash_of(bytes: &[u8]) -> Hash {
    Sha256::digest(bytes.get(8..).unwrap_or_default()).into()
}

/// Read untrusted bytes as a canonical change.
pub fn read(bytes: &[u8]) -> Result<Candidate, Rejection> {
    let (chain, seq) = header(bytes)?;
    find_record(bytes, chain, seq)
}

/// Read a change this replica stored itself, on restart (the candidate's `bytes` are left
/// empty): the header's shape and the record
/// found in it, without rebuilding the change to compare bytes. The caller checks that each
/// change links to the one before and reads the chain's tip with [`read`] and its signature:
/// the tip's record signs the hash of the change under it, and so on down, so every change
/// under a good tip is byte for byte the one its author linked to.
pub fn read_stored(bytes: &[u8]) -> Result<Candidate, Rejection> {
    let (chain, seq) = stored_header(bytes).ok_or(Rejection::NotCanonical)?;
    let prefix = record_prefix(chain, seq);
    let record = prefix_starts(bytes, &prefix)
        .find_map(|at| ScanRecord::decode_prefix(&bytes[at..]).ok())
        .ok_or(Rejection::NotCanonical)?;
    let hash = hash_of(bytes);
    // The hash covers everything after the checksum; the checksum (its first four bytes) must
    // match too, or bytes that differ from the canonical change only there would be taken.
    if bytes[4..8] != hash[..4] {
        return Err(Rejection::NotCanonical);
    }
    Ok(Candidate {
        record,
        hash,
        // The caller holds the bytes (a restart reads thousands of them a second).
        bytes: Vec::new(),
    })
}

/// The actor and sequence number of a stored change, read straight from the header (Automerge's
/// change chunk: magic, checksum, type, length, then the dependencies, the actor and the
/// sequence number), without parsing the rest.
fn stored_header(bytes: &[u8]) -> Option<(ChainKey, u32)> {
    if bytes.len() > CHANGE_BYTES_MAX
        || bytes.len() < 10
        || bytes[..4] != MAGIC
        || bytes[8] != CHUNK_TYPE_CHANGE
    {
        return None;
    }
    let mut at = 9;
    let _length = uleb(bytes, &mut at)?;
    let deps = usize::try_from(uleb(bytes, &mut at)?).ok()?;
    at = at.checked_add(deps.checked_mul(32)?)?;
    let actor_len = usize::try_from(uleb(bytes, &mut at)?).ok()?;
    let actor = bytes.get(at..at.checked_add(actor_len)?)?;
    at += actor_len;
    let chain = ChainKey::from_actor_bytes(actor)?;
    let seq = u32::try_from(uleb(bytes, &mut at)?)
        .ok()
        .filter(|s| *s > 0)?;
    Some((chain, seq))
}

/// An unsigned LEB128 number at `*at` (at most 10 bytes), moving `*at` past it.
fn uleb(bytes: &[u8], at: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..70).step_by(7) {
        let byte = *bytes.get(*at)?;
        *at += 1;
        value |= u64::from(byte & 0x7f).checked_shl(shift)?;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// The chain and position a change's header names, once its shape is the canonical one.
fn header(bytes: &[u8]) -> Result<(ChainKey, u32), Rejection> {
    if bytes.len() > CHANGE_BYTES_MAX {
        return Err(Rejection::TooLarge);
    }
    if bytes.len() < 10 || bytes[..4] != MAGIC || bytes[8] != CHUNK_TYPE_CHANGE {
        return Err(Rejection::Undecodable);
    }
    let change = Change::from_bytes(bytes.to_vec()).map_err(|_| Rejection::Undecodable)?;
    let chain =
        ChainKey::from_actor_bytes(change.actor_id().to_bytes()).ok_or(Rejection::NotCanonical)?;
    let seq = u32::try_from(change.seq())
        .ok()
        .filter(|s| *s > 0)
        .ok_or(Rejection::NotCanonical)?;
    let shape_ok = change.len() == 1
        && change.other_actor_ids().is_empty()
        && change.message().is_none()
        && change.timestamp() == 0
        && change.start_op().get() == u64::from(seq)
        && change.extra_bytes().is_empty()
        && change.deps().len() == usize::from(seq > 1);
    if !shape_ok {
        return Err(Rejection::NotCanonical);
    }
    Ok((chain, seq))
}

/// Rebuild a stored change's candidate when its chain and position are known (restart):
/// the same byte comparison as [`read`], without parsing the header.
pub fn read_at(bytes: &[u8], chain: ChainKey, seq: u32) -> Result<Candidate, Rejection> {
    if bytes.len() > CHANGE_BYTES_MAX {
        return Err(Rejection::TooLarge);
    }
    find_record(bytes, chain, seq)
}

fn find_record(bytes: &[u8], chain: ChainKey, seq: u32) -> Result<Candidate, Rejection> {
    let prefix = record_prefix(chain, seq);
    let mut record_error = None;
    let starts = prefix_starts(bytes, &prefix);
    for at in starts {
        let record = match ScanRecord::decode_prefix(&bytes[at..]) {
            Ok(r) => r,
            Err(e) => {
                record_error = Some(e);
                continue;
            }
        };
        let change = build(&record);
        if change.raw_bytes() == bytes {
            return Ok(Candidate {
                record,
                hash: change.hash().0,
                bytes: bytes.to_vec(),
            });
        }
    }
    Err(match record_error {
        Some(e) if !matches!(e, RecordError::Undecodable | RecordError::Truncated) => {
            Rejection::BadRecord(e.code())
        }
        _ => Rejection::NotCanonical,
    })
}

/// Where `prefix` occurs in `bytes` (overlapping matches included), the first
/// [`PREFIX_TRIES_MAX`].
fn prefix_starts<'a>(bytes: &'a [u8], prefix: &'a [u8]) -> impl Iterator<Item = usize> + 'a {
    let finder = memchr::memmem::Finder::new(prefix);
    let mut from = 0;
    std::iter::from_fn(move || {
        let at = from + finder.find(bytes.get(from..)?)?;
        from = at + 1;
        Some(at)
    })
    .take(PREFIX_TRIES_MAX)
}

/// The first bytes of any record of `chain` at `seq`: postcard writes the version byte, then
/// device, chain and sequence number as varints.
fn record_prefix(chain: ChainKey, seq: u32) -> Vec<u8> {
    let mut out = vec![RECORD_VERSION];
    for v in [chain.device.0, chain.chain.0, seq] {
        let mut v = v;
        loop {
            let byte = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(byte);
                break;
            }
            out.push(byte | 0x80);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{ChainId, DeviceId, Direction, ScanBody, Verdict};
    use ed25519_dalek::SigningKey;

    fn record(seq: u32, link: Hash) -> ScanRecord {
        let body = ScanBody {
            version: RECORD_VERSION,
            device: DeviceId(0x0a0b0c0d),
            chain: ChainId(300),
            seq,
            link,
            ticket_id: "T-9".into(),
            tier: "general".into(),
            gate: "north".into(),
            zone: "main".into(),
            direction: Direction::In,
            verdict: Verdict::Admit,
            reason: "ok".into(),
            hlc: crate::record::hlc::Hlc::new(1_780_000_000_000, 1).0,
            wall_ms: 1_780_000_000_000,
            seen: vec![],
            annuls: None,
            origin: None,
        };
        ScanRecord::sign(body, &SigningKey::from_bytes(&[3; 32])).unwrap()
    }

    #[test]
    fn canonical_changes_round_trip_and_hash_like_automerge() {
        let first = record(1, [1; 32]);
        let (bytes, hash) = build_bytes(&first);
        let c = read(&bytes).unwrap();
        assert_eq!(c.record, first);
        assert_eq!(c.hash, hash);
        assert_eq!(hash_of(&bytes), hash);
        let second = record(2, hash);
        let (bytes2, _) = build_bytes(&second);
        assert_eq!(read(&bytes2).unwrap().record, second);
        assert_eq!(
            read_at(&bytes2, second.body.chain_key(), 2).unwrap().record,
            second
        );
        // A stored change reads back the same without the rebuild.
        for (bytes, rec) in [(&bytes, &first), (&bytes2, &second)] {
            let stored = read_stored(bytes).unwrap();
            assert_eq!((&stored.record, stored.hash), (rec, hash_of(bytes)));
        }
        for cut in 0..bytes2.len() {
            let _ = read_stored(&bytes2[..cut]);
        }
        // Automerge itself loads the chain as a document holding both records.
        let mut doc = automerge::Automerge::new();
        doc.load_incremental(&[bytes, bytes2].concat()).unwrap();
        use automerge::ReadDoc;
        assert_eq!(doc.length(automerge::ROOT), 2);
    }

    #[test]
    fn any_other_change_around_the_same_record_is_refused() {
        let rec = record(2, [5; 32]);
        let canonical = build(&rec).decode();
        type Edit = Box<dyn Fn(&mut ExpandedChange)>;
        let variants: Vec<Edit> = vec![
            Box::new(|c| c.time = 1),
            Box::new(|c| c.message = Some("hi".into())),
            Box::new(|c| c.deps = vec![]),
            Box::new(|c| c.deps.push(ChangeHash([7; 32]))),
            Box::new(|c| c.extra_bytes = vec![1]),
            Box::new(|c| c.seq = 3),
            Box::new(|c| c.start_op = NonZeroU64::new(9).unwrap()),
            Box::new(|c| c.actor_id = ActorId::from(vec![1u8; 8])),
            Box::new(|c| c.operations[0].key = Key::Map("elsewhere".into())),
            Box::new(|c| c.operations[0].action = OpType::Delete),
            Box::new(|c| c.operations.push(c.operations[0].clone())),
            Box::new(|c| {
                c.operations[0].obj = ObjectId::Id(automerge::legacy::OpId::new(
                    1,
                    &ActorId::from(vec![9u8; 8]),
                ))
            }),
        ];
        for (i, edit) in variants.iter().enumerate() {
            let mut c = canonical.clone();
            edit(&mut c);
            let bytes = Change::from(c).raw_bytes().to_vec();
            assert!(read(&bytes).is_err(), "variant {i} was accepted");
        }
        assert_eq!(read(&[0u8; 20]), Err(Rejection::Undecodable));
        assert_eq!(
            read(&vec![0u8; CHANGE_BYTES_MAX + 1]),
            Err(Rejection::TooLarge)
        );
    }
}
