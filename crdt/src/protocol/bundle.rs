//! A ledger gossip message: one change as it is, or a bundle of the changes one write made
//! durable, so the mesh pays its per-message cost (transport, gossipsub's copies and ids, the
//! validation round trip, the receiver's write and event) once for several scans.
//!
//! Encoding of a bundle: `BUNDLE_TAG`, the number of changes (1 byte, 2..=`BUNDLE_CHANGES_MAX`),
//! then each change as a 2-byte little-endian length and its bytes, nothing after. A message
//! that does not start with `BUNDLE_TAG` is one change (an Automerge change starts with its
//! magic bytes `85 6f 4a 83`, so the two cannot be confused). The changes inside are untrusted
//! like any other: each one goes through the ledger's admission.

use thiserror::Error;

/// First byte of a bundle.
pub const BUNDLE_TAG: u8 = 0xB7;
/// Most changes in one bundle.
pub const BUNDLE_CHANGES_MAX: usize = 64;
/// Largest bundle in bytes (under the transport's gossip message limit).
pub const BUNDLE_BYTES_MAX: usize = 48 * 1024;
/// Bytes a bundle spends besides its changes: the tag, the count and one length per change.
const fn overhead(n: usize) -> usize {
    2 + 2 * n
}

#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
pub enum BundleError {
    #[error("empty gossip message")]
    Empty,
    #[error("bundle larger than {BUNDLE_BYTES_MAX} bytes")]
    TooLarge,
    #[error("bundle of {0} changes (2 to {BUNDLE_CHANGES_MAX})")]
    Count(usize),
    #[error("bundle cut short")]
    Truncated,
    #[error("bytes after the bundle's last change")]
    Trailing,
}

impl BundleError {
    /// The stable code, for counters and events.
    pub fn code(self) -> &'static str {
        match self {
            BundleError::Empty => "bundle_empty",
            BundleError::TooLarge => "bundle_too_large",
            BundleError::Count(_) => "bundle_count",
            BundleError::Truncated => "bundle_truncated",
            BundleError::Trailing => "bundle_trailing",
        }
    }
}

/// Whether one more change of `len` bytes fits a bundle already holding `n` changes of `bytes`.
pub fn fits(n: usize, bytes: usize, len: usize) -> bool {
    n < BUNDLE_CHANGES_MAX && bytes + len + overhead(n + 1) <= BUNDLE_BYTES_MAX
}

/// The message for these changes: the change itself when there is one, else a bundle. The
/// caller keeps to [`fits`].
pub fn encode(changes: &[Vec<u8>]) -> Vec<u8> {
    if let [one] = changes {
        return one.clone();
    }
    debug_assert!((2..=BUNDLE_CHANGES_MAX).contains(&changes.len()));
    let bytes: usize = changes.iter().map(Vec::len).sum();
    let mut out = Vec::with_capacity(bytes + overhead(changes.len()));
    out.push(BUNDLE_TAG);
    out.push(changes.len() as u8);
    for c in changes {
        out.extend_from_slice(&(c.len() as u16).to_le_bytes());
        out.extend_from_slice(c);
    }
    out
}

/// The changes a message carries, in the order they were written.
pub fn decode(data: &[u8]) -> Result<Vec<&[u8]>, BundleError> {
    match data.first() {
        None => return Err(BundleError::Empty),
        Some(&BUNDLE_TAG) => {}
        Some(_) => return Ok(vec![data]),
    }
    if data.len() > BUNDLE_BYTES_MAX {
        return Err(BundleError::TooLarge);
    }
    let n = usize::from(*data.get(1).ok_or(BundleError::Truncated)?);
    if !(2..=BUNDLE_CHANGES_MAX).contains(&n) {
        return Err(BundleError::Count(n));
    }
    let mut rest = &data[2..];
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let [a, b, tail @ ..] = rest else {
            return Err(BundleError::Truncated);
        };
        let len = usize::from(u16::from_le_bytes([*a, *b]));
        if len == 0 || tail.len() < len {
            return Err(BundleError::Truncated);
        }
        out.push(&tail[..len]);
        rest = &tail[len..];
    }
    if !rest.is_empty() {
        return Err(BundleError::Trailing);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(i: u8, len: usize) -> Vec<u8> {
        let mut c = vec![0x85, 0x6f, 0x4a, 0x83];
        c.resize(len, i);
        c
    }

    #[test]
    fn one_change_travels_as_itself_and_several_as_a_bundle() {
        let one = vec![change(1, 200)];
        assert_eq!(encode(&one), one[0]);
        assert_eq!(decode(&one[0]).unwrap(), vec![&one[0][..]]);
        let many: Vec<Vec<u8>> = (0..BUNDLE_CHANGES_MAX as u8)
            .map(|i| change(i, 300))
            .collect();
        let msg = encode(&many);
        assert_eq!(msg.len(), 300 * many.len() + overhead(many.len()));
        let back = decode(&msg).unwrap();
        assert_eq!(back, many.iter().map(Vec::as_slice).collect::<Vec<_>>());
    }

    #[test]
    fn fits_keeps_a_bundle_within_its_limits() {
        assert!(fits(0, 0, 1000));
        assert!(!fits(BUNDLE_CHANGES_MAX, 0, 10));
        let big = BUNDLE_BYTES_MAX - overhead(2) - 1000;
        assert!(fits(1, big, 1000));
        assert!(!fits(1, big, 1001));
    }

    #[test]
    fn every_malformed_bundle_is_refused_with_its_code() {
        let two = encode(&[change(1, 10), change(2, 12)]);
        let cases: Vec<(Vec<u8>, BundleError)> = vec![
            (vec![], BundleError::Empty),
            (vec![BUNDLE_TAG], BundleError::Truncated),
            (vec![BUNDLE_TAG, 0], BundleError::Count(0)),
            (vec![BUNDLE_TAG, 1, 1, 0, 9], BundleError::Count(1)),
            (vec![BUNDLE_TAG, 65], BundleError::Count(65)),
            (two[..two.len() - 1].to_vec(), BundleError::Truncated),
            (two[..3].to_vec(), BundleError::Truncated),
            ([&two[..], &[0]].concat(), BundleError::Trailing),
            (vec![BUNDLE_TAG, 2, 0, 0, 0, 0], BundleError::Truncated),
            (
                [&[BUNDLE_TAG, 2][..], &vec![0xff; BUNDLE_BYTES_MAX]].concat(),
                BundleError::TooLarge,
            ),
        ];
        for (bytes, want) in cases {
            assert_eq!(decode(&bytes), Err(want), "{bytes:?}");
            assert!(want.code().starts_with("bundle_"));
        }
    }
}
