//! The one standard-input reader, for `gatemesh scan` and `gatemesh node run`: one code (or `!`
//! command) per line, as keyboard-wedge scanners type them. A line over [`LINE_BYTES_MAX`] is
//! cut there (what is kept reads as `malformed`) and the rest of it dropped; blank lines are
//! skipped; `\r\n` endings are fine.

use std::io::{BufRead, Read};

/// Longest input line kept (a code is at most 2,048 bytes).
pub const LINE_BYTES_MAX: usize = gatemesh_crdt::credential::CODE_BYTES_MAX + 2;
/// Lines buffered before the reader thread waits (`node run`).
pub const INPUT_QUEUE_MAX: usize = 1024;

/// The next non-blank line, or `None` at the end of the input.
pub fn next_line(input: &mut impl BufRead) -> std::io::Result<Option<Vec<u8>>> {
    loop {
        let mut line = Vec::new();
        let n = input
            .by_ref()
            .take(LINE_BYTES_MAX as u64 + 1)
            .read_until(b'\n', &mut line)?;
        if n == 0 {
            return Ok(None);
        }
        if line.last() != Some(&b'\n') && n > LINE_BYTES_MAX {
            let mut rest = Vec::new();
            input.read_until(b'\n', &mut rest)?;
        }
        while matches!(line.last(), Some(b'\n' | b'\r')) {
            line.pop();
        }
        if !line.is_empty() {
            return Ok(Some(line));
        }
    }
}

/// Standard input, line by line, on a thread (stdin reads block), into a bounded queue.
pub fn spawn_reader() -> tokio::sync::mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = tokio::sync::mpsc::channel(INPUT_QUEUE_MAX);
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        while let Ok(Some(line)) = next_line(&mut stdin) {
            if tx.blocking_send(line).is_err() {
                return;
            }
        }
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_cut_blank_ones_skipped_and_crlf_trimmed() {
        let long = "x".repeat(LINE_BYTES_MAX + 10);
        let text = format!("a\r\n\n{long}\nb");
        let mut r = std::io::Cursor::new(text.into_bytes());
        assert_eq!(next_line(&mut r).unwrap(), Some(b"a".to_vec()));
        assert_eq!(
            next_line(&mut r).unwrap().map(|l| l.len()),
            Some(LINE_BYTES_MAX + 1)
        );
        assert_eq!(next_line(&mut r).unwrap(), Some(b"b".to_vec()));
        assert_eq!(next_line(&mut r).unwrap(), None);
    }
}
