//! The signed scan record: what one device saw and decided for one ticket at one moment.
//!
//! Encoding: `postcard(ScanBody) || ed25519 signature (64 bytes)`, the signature made by the
//! device key over the body bytes. A record is the value of one entry of the ledger document; it
//! names its own place in its device's chain (`device`, `chain`, `seq`) and the hash of the
//! chain's previous change (`link`), so the signature binds the whole Automerge change that
//! carries it (see [`crate::record::change`]): nobody can move, replay or re-wrap a record.
//!
//! Every field is checked on decode, with limits in bytes: a record that decodes is one the
//! rest of the system can store, index, print and send to PostgreSQL.

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;

/// Encoding version written in every record.
pub const RECORD_VERSION: u8 = 2;
/// Largest encoded record accepted (body + signature).
pub const RECORD_BYTES_MAX: usize = 1024;
/// Longest ticket id, gate, zone, tier, origin or scan reference inside a record, in bytes.
pub const FIELD_BYTES_MAX: usize = 128;
/// Longest reason code, in bytes (`[a-z_]`).
pub const REASON_BYTES_MAX: usize = 32;
/// Most earlier-scan references one record may carry.
pub const SEEN_REFS_MAX: usize = 16;
/// The origin a hand check-in's record carries: `manual:<its own device>@<ms>`. Never merged
/// with another record's (unlike an offline scan's origin): two hand check-ins of one ticket are
/// two entries, and a record naming another device's hand check-in is refused.
pub const MANUAL_ORIGIN_PREFIX: &str = "manual:";
/// The origin a paired phone's online scan carries: `live:<phone>@<ms its clock read>`. Never
/// merged with another record's (a phone posting one scan to two nodes in a split lets two
/// people in, and both count); the phone's reconcile of the same scan (it never got the answer)
/// is recognised by it and is a duplicate when that record is an admit.
pub const LIVE_ORIGIN_PREFIX: &str = "live:";
/// Earliest time a record may carry (2000-01-01T00:00:00Z): a device clock before it is broken.
pub const TIME_MIN_MS: u64 = 946_684_800_000;
/// Latest time a record may carry (9999-12-31T23:59:59.999Z): later ones cannot be printed as
/// dates, by us or by PostgreSQL.
pub const TIME_MAX_MS: u64 = 253_402_300_799_999;
const SIGNATURE_LEN: usize = 64;

/// Short device id: the first four bytes of SHA-256 of the device's public key, shown as 8 hex
/// digits. Enrollment refuses a second device with the same short id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct DeviceId(pub u32);

impl DeviceId {
    pub fn from_public_key(key: &VerifyingKey) -> DeviceId {
        let digest = Sha256::digest(key.as_bytes());
        DeviceId(u32::from_be_bytes([
            digest[0], digest[1], digest[2], digest[3],
        ]))
    }
    pub fn parse(s: &str) -> Option<DeviceId> {
        parse_hex8(s).map(DeviceId)
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08x}", self.0)
    }
}

/// One chain of a device: drawn at random when a store is created, so a device whose store was
/// wiped starts a new chain instead of rewriting its old one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ChainId(pub u32);

impl fmt::Display for ChainId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08x}", self.0)
    }
}

/// A device's chain: the Automerge actor of its changes is `device || chain` (8 bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ChainKey {
    pub device: DeviceId,
    pub chain: ChainId,
}

impl ChainKey {
    pub fn actor_bytes(self) -> [u8; 8] {
        let mut a = [0u8; 8];
        a[..4].copy_from_slice(&self.device.0.to_be_bytes());
        a[4..].copy_from_slice(&self.chain.0.to_be_bytes());
        a
    }

    pub fn from_actor_bytes(bytes: &[u8]) -> Option<ChainKey> {
        let b: [u8; 8] = bytes.try_into().ok()?;
        Some(ChainKey {
            device: DeviceId(u32::from_be_bytes([b[0], b[1], b[2], b[3]])),
            chain: ChainId(u32::from_be_bytes([b[4], b[5], b[6], b[7]])),
        })
    }
}

impl fmt::Display for ChainKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.device, self.chain)
    }
}

/// Where one record sits: its chain and its 1-based position in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ScanRef {
    pub chain: ChainKey,
    pub seq: u32,
}

impl fmt::Display for ScanRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.chain, self.seq)
    }
}

impl ScanRef {
    /// The least reference (a bound for ranges ordered by reference).
    pub const MIN: ScanRef = ScanRef {
        chain: ChainKey {
            device: DeviceId(0),
            chain: ChainId(0),
        },
        seq: 0,
    };

    /// Parse `<device 8 hex>-<chain 8 hex>-<seq>`.
    pub fn parse(s: &str) -> Option<ScanRef> {
        let mut parts = s.splitn(3, '-');
        let device = DeviceId(parse_hex8(parts.next()?)?);
        let chain = ChainId(parse_hex8(parts.next()?)?);
        let seq_text = parts.next()?;
        // One spelling per scan: no sign, no leading zero, lowercase hex.
        let digits = !seq_text.is_empty() && seq_text.len() <= 10 && !seq_text.starts_with('0');
        if !digits || !seq_text.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let seq: u32 = seq_text.parse().ok().filter(|s| *s > 0)?;
        Some(ScanRef {
            chain: ChainKey { device, chain },
            seq,
        })
    }
}

fn parse_hex8(s: &str) -> Option<u32> {
    let lower_hex = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
    if s.len() != 8 || !s.bytes().all(lower_hex) {
        return None;
    }
    u32::from_str_radix(s, 16).ok()
}

/// Which way the holder walks through the gate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    In,
    Out,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::In => "in",
            Direction::Out => "out",
        }
    }
}

/// The answer the gate gave.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Admit,
    Deny,
    /// Not a scan: cancels the admit named in `annuls` (undo by a supervisor).
    Annul,
    /// Not a scan: hands room of a strict zone to another device ([`room_move`]): ticket
    /// `room:<zone>`, `gate` the receiving device's id, `tier` the units.
    Room,
    /// Not a scan: a supervisor pauses (`in`) or resumes (`out`) a gate for
    /// [`GATE_PAUSE_MS`] ([`gate_pause`]): ticket `pause:<gate>`, reason `paused` or
    /// `resumed`.
    Pause,
}

/// What a [`Verdict::Pause`] record's ticket id starts with (the gate follows).
pub const PAUSE_TICKET_PREFIX: &str = "pause:";
/// How long a supervisor's gate pause lasts, from its record's clock (a new pause extends it, a
/// resume ends it).
pub const GATE_PAUSE_MS: u64 = 5 * 60 * 1000;

/// A gate pause record's order: (gate, paused), when it is well formed.
pub fn gate_pause(b: &ScanBody) -> Option<(&str, bool)> {
    let gate = b.ticket_id.strip_prefix(PAUSE_TICKET_PREFIX)?;
    let reason_ok = match b.direction {
        Direction::In => b.reason == "paused",
        Direction::Out => b.reason == "resumed",
    };
    let ok = b.verdict == Verdict::Pause
        && !gate.is_empty()
        && gate == b.gate
        && reason_ok
        && b.tier.is_empty()
        && b.seen.is_empty()
        && b.origin.is_none();
    ok.then_some((gate, b.direction == Direction::In))
}

/// What a [`Verdict::Room`] record's ticket id starts with (the zone follows).
pub const ROOM_TICKET_PREFIX: &str = "room:";
/// Most units one room record moves.
pub const ROOM_UNITS_MAX: u32 = 1_000_000;

/// A room record's move: (zone, receiving device, units), when it is well formed.
pub fn room_move(b: &ScanBody) -> Option<(&str, DeviceId, u32)> {
    let zone = b.ticket_id.strip_prefix(ROOM_TICKET_PREFIX)?;
    let to = DeviceId::parse(&b.gate)?;
    let units = b.tier.parse::<u32>().ok()?;
    let digits = !b.tier.is_empty() && b.tier.bytes().all(|c| c.is_ascii_digit());
    let ok = b.verdict == Verdict::Room
        && !zone.is_empty()
        && zone == b.zone
        && to != b.device
        && digits
        && (1..=ROOM_UNITS_MAX).contains(&units)
        && b.direction == Direction::In
        && b.seen.is_empty()
        && b.origin.is_none();
    ok.then_some((zone, to, units))
}

/// The signed content of a scan record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanBody {
    pub version: u8,
    pub device: DeviceId,
    pub chain: ChainId,
    /// Position in the chain, from 1 (the Automerge sequence number of its change).
    pub seq: u32,
    /// Hash of the chain's previous change; for `seq` 1, the event's anchor
    /// ([`crate::ledger::anchor`]), so a record belongs to one event only.
    pub link: [u8; 32],
    pub ticket_id: String,
    pub tier: String,
    pub gate: String,
    pub zone: String,
    pub direction: Direction,
    pub verdict: Verdict,
    pub reason: String,
    pub hlc: u64,
    /// Device wall time, for display only; ordering uses `hlc`.
    pub wall_ms: u64,
    /// Scan ids of the earlier entries of this ticket the device knew when it decided.
    pub seen: Vec<String>,
    /// For `Verdict::Annul`: the scan id being cancelled.
    pub annuls: Option<String>,
    /// For a scan reconciled from an offline device (not a mesh node):
    /// `<device>@<scanned-at ms>`. Records with the same origin on one ticket are one scan, so a
    /// reconciled scan is counted once however many nodes it was posted to.
    pub origin: Option<String>,
}

impl ScanBody {
    pub fn chain_key(&self) -> ChainKey {
        ChainKey {
            device: self.device,
            chain: self.chain,
        }
    }

    pub fn scan_ref(&self) -> ScanRef {
        ScanRef {
            chain: self.chain_key(),
            seq: self.seq,
        }
    }

    /// `<device>-<chain>-<seq>`: unique, so concurrent writers never collide.
    pub fn scan_id(&self) -> String {
        self.scan_ref().to_string()
    }
}

/// Bucket of a ticket: first byte of SHA-256 of its id (statistics and export order).
pub fn bucket_of(ticket_id: &str) -> u8 {
    Sha256::digest(ticket_id.as_bytes())[0]
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("record is {0} bytes, over the limit of {RECORD_BYTES_MAX}")]
    TooLarge(usize),
    #[error("record is too short to hold a signature")]
    Truncated,
    #[error("record body does not decode")]
    Undecodable,
    #[error("record version {0} is not supported")]
    Version(u8),
    #[error(
        "record field {0} is too long, empty where it must not be, or holds control characters"
    )]
    BadField(&'static str),
    #[error("record time {0} is outside {TIME_MIN_MS}..={TIME_MAX_MS}")]
    BadTime(u64),
    #[error("record signature does not verify")]
    BadSignature,
}

impl RecordError {
    /// Stable code (events, HTTP, counters).
    pub fn code(&self) -> &'static str {
        match self {
            RecordError::TooLarge(_) => "record_too_large",
            RecordError::Truncated | RecordError::Undecodable => "record_undecodable",
            RecordError::Version(_) => "record_version",
            RecordError::BadField(_) => "record_bad_field",
            RecordError::BadTime(_) => "record_bad_time",
            RecordError::BadSignature => "bad_signature",
        }
    }
}

/// A decoded record with its encoded form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScanRecord {
    pub body: ScanBody,
    pub bytes: Vec<u8>,
}

impl ScanRecord {
    /// Encode and sign `body` with the device key.
    pub fn sign(body: ScanBody, key: &SigningKey) -> Result<ScanRecord, RecordError> {
        check_body(&body)?;
        let mut bytes = postcard::to_allocvec(&body).map_err(|_| RecordError::Undecodable)?;
        let signature = key.sign(&bytes);
        bytes.extend_from_slice(&signature.to_bytes());
        if bytes.len() > RECORD_BYTES_MAX {
            return Err(RecordError::TooLarge(bytes.len()));
        }
        Ok(ScanRecord { body, bytes })
    }

    /// Decode and check every field, without checking the signature.
    pub fn decode(bytes: &[u8]) -> Result<ScanRecord, RecordError> {
        let (body_bytes, _) = split(bytes)?;
        let (body, rest) = postcard::take_from_bytes::<ScanBody>(body_bytes)
            .map_err(|_| RecordError::Undecodable)?;
        if !rest.is_empty() {
            return Err(RecordError::Undecodable);
        }
        check_body(&body)?;
        Ok(ScanRecord {
            body,
            bytes: bytes.to_vec(),
        })
    }

    /// Decode the record that starts at the front of `bytes` (a record inside a larger
    /// message): its body is self-delimiting, the signature follows it.
    pub fn decode_prefix(bytes: &[u8]) -> Result<ScanRecord, RecordError> {
        let window = &bytes[..bytes.len().min(RECORD_BYTES_MAX)];
        let (_, rest) =
            postcard::take_from_bytes::<ScanBody>(window).map_err(|_| RecordError::Undecodable)?;
        let body_len = window.len() - rest.len();
        let end = body_len + SIGNATURE_LEN;
        if end > window.len() {
            return Err(RecordError::Truncated);
        }
        ScanRecord::decode(&window[..end])
    }

    /// Check the device signature over the body.
    pub fn verify(&self, key: &VerifyingKey) -> Result<(), RecordError> {
        let (body_bytes, sig) = self.signed_parts()?;
        key.verify(body_bytes, &sig)
            .map_err(|_| RecordError::BadSignature)
    }

    pub fn scan_id(&self) -> String {
        self.body.scan_id()
    }

    /// The signed bytes and the signature, for batch verification.
    pub fn signed_parts(&self) -> Result<(&[u8], Signature), RecordError> {
        let (body_bytes, sig) = split(&self.bytes)?;
        let sig = Signature::from_slice(sig).map_err(|_| RecordError::BadSignature)?;
        Ok((body_bytes, sig))
    }
}

/// Check many records' signatures at once (ed25519 batch verification, about three times as
/// fast per record as one by one here); when a batch fails, each of its records is checked
/// alone. Returns, per record, whether its signature verifies.
pub fn verify_many(items: &[(&ScanRecord, VerifyingKey)]) -> Vec<bool> {
    const BATCH: usize = 64;
    let mut out = Vec::with_capacity(items.len());
    for chunk in items.chunks(BATCH) {
        if chunk.len() == 1 {
            out.push(chunk[0].0.verify(&chunk[0].1).is_ok());
            continue;
        }
        let parts: Vec<Option<(&[u8], Signature)>> =
            chunk.iter().map(|(r, _)| r.signed_parts().ok()).collect();
        let all_parts = parts.iter().all(Option::is_some);
        let batch_ok = all_parts && {
            let messages: Vec<&[u8]> = parts.iter().flatten().map(|(m, _)| *m).collect();
            let signatures: Vec<Signature> = parts.iter().flatten().map(|(_, s)| *s).collect();
            let keys: Vec<VerifyingKey> = chunk.iter().map(|(_, k)| *k).collect();
            ed25519_dalek::verify_batch(&messages, &signatures, &keys).is_ok()
        };
        if batch_ok {
            out.extend(std::iter::repeat_n(true, chunk.len()));
        } else {
            out.extend(chunk.iter().map(|(r, k)| r.verify(k).is_ok()));
        }
    }
    out
}

fn split(bytes: &[u8]) -> Result<(&[u8], &[u8]), RecordError> {
    if bytes.len() > RECORD_BYTES_MAX {
        return Err(RecordError::TooLarge(bytes.len()));
    }
    if bytes.len() <= SIGNATURE_LEN {
        return Err(RecordError::Truncated);
    }
    Ok(bytes.split_at(bytes.len() - SIGNATURE_LEN))
}

/// A text field as every part of the system can carry it: at most `max` bytes, no control
/// characters (PostgreSQL refuses NUL; terminals and logs misread the others).
pub fn field_ok(value: &str, max: usize) -> bool {
    value.len() <= max && !value.chars().any(char::is_control)
}

/// Whether a time can be printed as a date and stored in PostgreSQL.
pub fn time_ok(ms: u64) -> bool {
    (TIME_MIN_MS..=TIME_MAX_MS).contains(&ms)
}

/// Clamp a time into the printable range (clocks that are wildly wrong).
pub fn clamp_time(ms: u64) -> u64 {
    ms.clamp(TIME_MIN_MS, TIME_MAX_MS)
}

/// A `manual:` origin names the record's own device and a time: `manual:<device>@<digits>`.
fn manual_ok(b: &ScanBody, origin: &str) -> bool {
    let Some(rest) = origin.strip_prefix(MANUAL_ORIGIN_PREFIX) else {
        return true;
    };
    let Some((device, ms)) = rest.split_once('@') else {
        return false;
    };
    device == b.device.to_string()
        && !ms.is_empty()
        && ms.len() <= 20
        && ms.bytes().all(|c| c.is_ascii_digit())
}

fn check_body(b: &ScanBody) -> Result<(), RecordError> {
    if b.version != RECORD_VERSION {
        return Err(RecordError::Version(b.version));
    }
    if b.seq == 0 {
        return Err(RecordError::BadField("seq"));
    }
    let fields = [
        ("ticket_id", &b.ticket_id),
        ("tier", &b.tier),
        ("gate", &b.gate),
        ("zone", &b.zone),
    ];
    for (name, value) in fields {
        if !field_ok(value, FIELD_BYTES_MAX) {
            return Err(RecordError::BadField(name));
        }
    }
    if b.ticket_id.is_empty() || b.gate.is_empty() {
        return Err(RecordError::BadField("ticket_id"));
    }
    let reason_ok = !b.reason.is_empty()
        && b.reason.len() <= REASON_BYTES_MAX
        && b.reason
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c == b'_');
    if !reason_ok {
        return Err(RecordError::BadField("reason"));
    }
    if b.seen.len() > SEEN_REFS_MAX || b.seen.iter().any(|p| ScanRef::parse(p).is_none()) {
        return Err(RecordError::BadField("seen"));
    }
    let annul_ok = match (b.verdict, &b.annuls) {
        (Verdict::Annul, Some(a)) => ScanRef::parse(a).is_some(),
        (Verdict::Annul, None) => false,
        (_, annuls) => annuls.is_none(),
    };
    if !annul_ok {
        return Err(RecordError::BadField("annuls"));
    }
    let room_ok = match b.verdict {
        Verdict::Room => room_move(b).is_some(),
        _ => !b.ticket_id.starts_with(ROOM_TICKET_PREFIX) || b.verdict == Verdict::Deny,
    };
    if !room_ok {
        return Err(RecordError::BadField("room"));
    }
    let pause_ok = match b.verdict {
        Verdict::Pause => gate_pause(b).is_some(),
        _ => !b.ticket_id.starts_with(PAUSE_TICKET_PREFIX) || b.verdict == Verdict::Deny,
    };
    if !pause_ok {
        return Err(RecordError::BadField("pause"));
    }
    if b.origin
        .as_ref()
        .is_some_and(|o| o.is_empty() || !field_ok(o, FIELD_BYTES_MAX) || !manual_ok(b, o))
    {
        return Err(RecordError::BadField("origin"));
    }
    for t in [b.wall_ms, crate::record::hlc::Hlc(b.hlc).wall_ms()] {
        if !time_ok(t) {
            return Err(RecordError::BadTime(t));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn body() -> ScanBody {
        ScanBody {
            version: RECORD_VERSION,
            device: DeviceId(0xabcdef01),
            chain: ChainId(0x0102_0304),
            seq: 7,
            link: [9; 32],
            ticket_id: "T-1".into(),
            tier: "general".into(),
            gate: "north".into(),
            zone: "main".into(),
            direction: Direction::In,
            verdict: Verdict::Admit,
            reason: "ok".into(),
            hlc: crate::record::hlc::Hlc::new(1_780_000_000_000, 0).0,
            wall_ms: 1_780_000_000_000,
            seen: vec![],
            annuls: None,
            origin: None,
        }
    }

    #[test]
    fn sign_decode_verify_roundtrip() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let rec = ScanRecord::sign(body(), &key).unwrap();
        let back = ScanRecord::decode(&rec.bytes).unwrap();
        assert_eq!(back.body, body());
        back.verify(&key.verifying_key()).unwrap();
        assert_eq!(back.scan_id(), "abcdef01-01020304-7");
        assert_eq!(
            ScanRef::parse("abcdef01-01020304-7"),
            Some(body().scan_ref())
        );
        let mut framed = rec.bytes.clone();
        framed.extend_from_slice(b"trailing");
        assert_eq!(ScanRecord::decode_prefix(&framed).unwrap(), rec);
    }

    #[test]
    fn any_flipped_byte_fails_decode_or_verify() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let rec = ScanRecord::sign(body(), &key).unwrap();
        for i in 0..rec.bytes.len() {
            let mut bytes = rec.bytes.clone();
            bytes[i] ^= 0x01;
            let ok = ScanRecord::decode(&bytes)
                .and_then(|r| r.verify(&key.verifying_key()))
                .is_ok();
            assert!(!ok, "flip at {i} was accepted");
        }
    }

    #[test]
    fn limits_are_in_bytes_and_refuse_control_characters_and_wild_times() {
        let key = SigningKey::from_bytes(&[7; 32]);
        type Edit = Box<dyn Fn(&mut ScanBody)>;
        let cases: Vec<(&str, Edit)> = vec![
            (
                "43 CJK characters",
                Box::new(|b| b.ticket_id = "票".repeat(43)),
            ),
            (
                "129 ASCII",
                Box::new(|b| b.ticket_id = "x".repeat(FIELD_BYTES_MAX + 1)),
            ),
            ("NUL in id", Box::new(|b| b.ticket_id = "T\0".into())),
            ("newline in gate", Box::new(|b| b.gate = "a\nb".into())),
            ("empty id", Box::new(|b| b.ticket_id = String::new())),
            (
                "reason with space",
                Box::new(|b| b.reason = "al ready".into()),
            ),
            ("year 10000", Box::new(|b| b.wall_ms = TIME_MAX_MS + 1)),
            ("hlc year 1970", Box::new(|b| b.hlc = 5)),
            ("seq 0", Box::new(|b| b.seq = 0)),
            (
                "annul without target",
                Box::new(|b| b.verdict = Verdict::Annul),
            ),
            ("bad seen ref", Box::new(|b| b.seen = vec!["x".into()])),
        ];
        for (what, edit) in cases {
            let mut b = body();
            edit(&mut b);
            assert!(ScanRecord::sign(b, &key).is_err(), "{what} was accepted");
        }
        let mut ok = body();
        ok.ticket_id = "票".repeat(42); // 126 bytes
        ScanRecord::sign(ok, &key).unwrap();
    }

    #[test]
    fn oversized_and_truncated_are_refused() {
        assert_eq!(ScanRecord::decode(&[0; 10]), Err(RecordError::Truncated));
        assert_eq!(
            ScanRecord::decode(&vec![0; RECORD_BYTES_MAX + 1]),
            Err(RecordError::TooLarge(RECORD_BYTES_MAX + 1))
        );
    }

    #[test]
    fn scan_refs_parse_strictly() {
        for bad in [
            "",
            "abcdef01-7",
            "abcdef01-01020304-0",
            "abcdef01-01020304-+7",
            "abcdef01-0102030-7",
            "abcdef01-01020304-99999999999",
            "ABCDEF01-01020304-1",
            "abcdef01-01020304-07",
        ] {
            assert_eq!(ScanRef::parse(bad), None, "{bad}");
        }
    }
}
