//! The export file HQ imports (`gatemesh export`, `gatemesh bridge import`): a format line
//! `GATEMESH-EXPORT/2`, one JSON header line (event, counts, length and SHA-256 of the ledger
//! bytes), then the ledger's canonical changes back to back.
//!
//! Reading is pure and checks everything before any change is handed on: the format line, the
//! header (a strict JSON object of known fields), the event, the length and checksum of the
//! ledger bytes, and, while the changes are cut out, each change's framing. What the changes
//! say is the ledger's admission's business, as for changes from a peer.

use crate::record::change::CHANGE_BYTES_MAX;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The format line.
pub const EXPORT_MAGIC: &str = "GATEMESH-EXPORT/2";
/// Longest header line.
pub const EXPORT_HEADER_BYTES_MAX: usize = 64 * 1024;
/// Most ledger bytes an export may claim.
pub const EXPORT_LEDGER_BYTES_MAX: u64 = 16 * 1024 * 1024 * 1024;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportHeader {
    pub event_id: String,
    pub event_name: String,
    pub exported_at: String,
    pub records: u64,
    pub changes: u64,
    pub ledger_bytes: u64,
    pub ledger_sha256: String,
}

/// Why an export was refused; each has a stable code.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ExportError {
    #[error("not a gatemesh export: {0}")]
    NotGatemesh(String),
    #[error("the export is of event {0}, not {1}")]
    WrongEvent(String, String),
    #[error("the export is damaged: {0}")]
    Corrupt(String),
}

impl ExportError {
    pub fn code(&self) -> &'static str {
        match self {
            ExportError::NotGatemesh(_) => "export_not_gatemesh",
            ExportError::WrongEvent(..) => "export_wrong_event",
            ExportError::Corrupt(_) => "export_corrupt",
        }
    }
}

/// The start of an export: its header and the bytes of its header lines.
pub struct Head {
    pub header: ExportHeader,
    /// Bytes of the format and header lines (the ledger bytes start here).
    pub len: usize,
}

/// Read the format and header lines at the start of `bytes` (at least the first
/// [`EXPORT_HEADER_BYTES_MAX`] bytes of the file, or all of it) and check the event.
pub fn read_head(bytes: &[u8], event_id: &str) -> Result<Head, ExportError> {
    let (magic, rest) = line(bytes, "format")?;
    if magic != EXPORT_MAGIC.as_bytes() {
        return Err(ExportError::NotGatemesh("no GATEMESH-EXPORT/2 line".into()));
    }
    let (header_line, _) = line(rest, "header")?;
    let text = std::str::from_utf8(header_line)
        .map_err(|_| ExportError::NotGatemesh("the header is not text".into()))?;
    let header: ExportHeader = crate::json::parse(text)
        .and_then(crate::json::from_value)
        .map_err(|e| ExportError::NotGatemesh(format!("header: {e}")))?;
    if header.event_id != event_id {
        return Err(ExportError::WrongEvent(
            header.event_id,
            event_id.to_string(),
        ));
    }
    if header.ledger_bytes > EXPORT_LEDGER_BYTES_MAX {
        return Err(ExportError::Corrupt(format!(
            "the header claims {} ledger bytes, over the limit",
            header.ledger_bytes
        )));
    }
    Ok(Head {
        header,
        len: magic.len() + header_line.len() + 2,
    })
}

/// One line (without its `\n`), at most [`EXPORT_HEADER_BYTES_MAX`] bytes, and what follows.
fn line<'a>(bytes: &'a [u8], what: &str) -> Result<(&'a [u8], &'a [u8]), ExportError> {
    let window = &bytes[..bytes.len().min(EXPORT_HEADER_BYTES_MAX + 1)];
    let end = memchr::memchr(b'\n', window)
        .ok_or_else(|| ExportError::NotGatemesh(format!("no {what} line")))?;
    Ok((&bytes[..end], &bytes[end + 1..]))
}

/// Check the ledger bytes against the header: their length and SHA-256.
pub fn check_ledger(header: &ExportHeader, ledger: &[u8]) -> Result<(), ExportError> {
    if header.ledger_bytes > ledger.len() as u64 {
        return Err(ExportError::Corrupt(format!(
            "the header claims {} ledger bytes; the file holds {}",
            header.ledger_bytes,
            ledger.len()
        )));
    }
    if ledger.len() as u64 != header.ledger_bytes
        || hex::encode(Sha256::digest(ledger)) != header.ledger_sha256
    {
        return Err(ExportError::Corrupt(
            "the ledger bytes do not match the export's length and SHA-256; the file was \
             changed or cut short"
                .into(),
        ));
    }
    Ok(())
}

/// A whole export file in memory: its header and its checked ledger bytes.
pub fn read<'a>(bytes: &'a [u8], event_id: &str) -> Result<(ExportHeader, &'a [u8]), ExportError> {
    let head = read_head(bytes, event_id)?;
    let ledger = &bytes[head.len..];
    check_ledger(&head.header, ledger)?;
    Ok((head.header, ledger))
}

/// Automerge chunks back to back: magic (4), checksum (4), type (1), LEB128 length, data.
/// Each is cut out by its length (bounded by the change limit); what follows a chunk that does
/// not frame stops the reading and is reported by [`Chunks::error`].
pub struct Chunks<'a> {
    rest: &'a [u8],
    error: Option<ExportError>,
}

/// The changes of checked ledger bytes.
pub fn chunks(ledger: &[u8]) -> Chunks<'_> {
    Chunks {
        rest: ledger,
        error: None,
    }
}

impl Chunks<'_> {
    /// Why the reading stopped early, if it did.
    pub fn error(&self) -> Option<&ExportError> {
        self.error.as_ref()
    }

    fn stop(&mut self, why: String) {
        self.error = Some(ExportError::Corrupt(why));
    }
}

impl<'a> Iterator for Chunks<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.rest.is_empty() || self.error.is_some() {
            return None;
        }
        let mut len: u64 = 0;
        let mut at = 9;
        let mut shift = 0;
        loop {
            let Some(&b) = self.rest.get(at).filter(|_| shift < 63) else {
                self.stop("a change's length does not frame".into());
                return None;
            };
            len |= u64::from(b & 0x7f) << shift;
            at += 1;
            shift += 7;
            if b & 0x80 == 0 {
                break;
            }
        }
        let end = (at as u64).saturating_add(len);
        if end > CHANGE_BYTES_MAX as u64 || end > self.rest.len() as u64 {
            self.stop(format!(
                "a change of {end} bytes does not fit the limit or the file"
            ));
            return None;
        }
        let rest = self.rest;
        let (chunk, tail) = rest.split_at(end as usize);
        self.rest = tail;
        Some(chunk)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(ledger: &[u8]) -> ExportHeader {
        ExportHeader {
            event_id: "ev".into(),
            event_name: "Fest \"2026\"".into(),
            exported_at: "2026-11-22T00:00:00.000Z".into(),
            records: 0,
            changes: 0,
            ledger_bytes: ledger.len() as u64,
            ledger_sha256: hex::encode(Sha256::digest(ledger)),
        }
    }

    fn head_bytes(h: &ExportHeader) -> Vec<u8> {
        format!(
            "{EXPORT_MAGIC}\n{{\"event_id\":\"{}\",\"event_name\":\"Fest \\\"2026\\\"\",\
             \"exported_at\":\"{}\",\"records\":0,\"changes\":0,\"ledger_bytes\":{},\
             \"ledger_sha256\":\"{}\"}}\n",
            h.event_id, h.exported_at, h.ledger_bytes, h.ledger_sha256
        )
        .into_bytes()
    }

    #[test]
    fn an_export_reads_back_and_every_damage_has_its_code() {
        let ledger = b"0123".to_vec();
        let h = header(&ledger);
        let mut file = head_bytes(&h);
        file.extend_from_slice(&ledger);
        let (back, bytes) = read(&file, "ev").unwrap();
        assert_eq!((back, bytes), (h.clone(), &ledger[..]));
        assert_eq!(
            read(&file, "other").unwrap_err().code(),
            "export_wrong_event"
        );
        let mut longer = file.clone();
        longer.push(0);
        assert_eq!(read(&longer, "ev").unwrap_err().code(), "export_corrupt");
        assert_eq!(
            read(b"hello\n{}\n", "ev").unwrap_err().code(),
            "export_not_gatemesh"
        );
        for cut in 0..file.len() {
            let _ = read(&file[..cut], "ev");
        }
        let extra = String::from_utf8(file.clone())
            .unwrap()
            .replace("\"records\"", "\"admin\":true,\"records\"");
        assert_eq!(
            read(extra.as_bytes(), "ev").unwrap_err().code(),
            "export_not_gatemesh"
        );
    }

    #[test]
    fn chunks_stop_at_the_first_that_does_not_frame() {
        let mut c = vec![0x85, 0x6f, 0x4a, 0x83, 0, 0, 0, 0, 1, 3, 7, 8, 9];
        c.extend_from_slice(&c.clone());
        let mut it = chunks(&c);
        assert_eq!(it.next().map(<[u8]>::len), Some(13));
        assert_eq!(it.next().map(<[u8]>::len), Some(13));
        assert_eq!(it.next(), None);
        assert!(it.error().is_none());
        let cut = &c[..20];
        let mut it = chunks(cut);
        assert!(it.next().is_some());
        assert!(it.next().is_none());
        assert_eq!(it.error().map(ExportError::code), Some("export_corrupt"));
        let huge = [
            0x85, 0x6f, 0x4a, 0x83, 0, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff, 0x0f,
        ];
        let mut it = chunks(&huge);
        assert!(it.next().is_none() && it.error().is_some());
    }
}
