//! Finding a ticket at the gate when its code will not scan: by attendee name, order reference
//! or ticket id, accent- and case-insensitive, by word prefix, with a bounded answer.
//!
//! The index is a sorted list of (folded word, ticket) pairs over one arena of words: a query's
//! longest word selects a range by binary search, and the candidates must then hold every other
//! query word as a word prefix too. It is built once from the manifest, when the node starts.

use unicode_normalization::UnicodeNormalization;

/// Most tickets one search answers with.
pub const SEARCH_RESULTS_MAX: usize = 20;
/// Longest query, in bytes.
pub const QUERY_BYTES_MAX: usize = 64;
/// Shortest query, in characters (one letter would list half the festival).
pub const QUERY_CHARS_MIN: usize = 2;
/// Most candidates one search looks at after the range lookup (a bound on its work).
const CANDIDATES_MAX: usize = 5_000;

/// Why a query is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error("the query is over {QUERY_BYTES_MAX} bytes")]
    TooLong,
    #[error("the query needs at least {QUERY_CHARS_MIN} letters or digits")]
    TooShort,
}

/// Lowercase, accents removed (`Éloïse` → `eloise`), ligatures spelled out; anything but
/// letters and digits separates words.
pub fn fold(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.nfd() {
        if unicode_normalization::char::is_combining_mark(c) {
            continue;
        }
        match c {
            'œ' | 'Œ' => out.push_str("oe"),
            'æ' | 'Æ' => out.push_str("ae"),
            'ß' => out.push_str("ss"),
            c if c.is_alphanumeric() => out.extend(c.to_lowercase()),
            _ => out.push(' '),
        }
    }
    out
}

/// The folded words of a text.
pub fn words(text: &str) -> Vec<String> {
    fold(text).split_whitespace().map(str::to_string).collect()
}

/// A query, checked and folded into words.
pub fn parse_query(q: &str) -> Result<Vec<String>, QueryError> {
    if q.len() > QUERY_BYTES_MAX {
        return Err(QueryError::TooLong);
    }
    let words = words(q);
    if words.iter().map(|w| w.chars().count()).sum::<usize>() < QUERY_CHARS_MIN {
        return Err(QueryError::TooShort);
    }
    Ok(words)
}

/// One word of one ticket: where it sits in the arena, and the ticket's position.
#[derive(Clone, Copy, Debug)]
struct Key {
    at: u32,
    len: u32,
    ticket: u32,
}

/// Word → ticket positions, sorted by word. The words live in one arena (a festival's half a
/// million guests make millions of words; one allocation each would cost more than the words).
#[derive(Clone, Debug, Default)]
pub struct SearchIndex {
    arena: String,
    keys: Vec<Key>,
}

impl SearchIndex {
    /// Index the texts of each ticket (its name, order reference, id...), in ticket order.
    pub fn build<'a, I, T>(tickets: I) -> SearchIndex
    where
        I: IntoIterator<Item = T>,
        T: IntoIterator<Item = &'a str>,
    {
        let mut arena = String::new();
        let mut keys = Vec::new();
        for (i, texts) in tickets.into_iter().enumerate() {
            let mut ws: Vec<String> = texts.into_iter().flat_map(words).collect();
            ws.sort();
            ws.dedup();
            for w in ws {
                keys.push(Key {
                    at: arena.len() as u32,
                    len: w.len() as u32,
                    ticket: i as u32,
                });
                arena.push_str(&w);
            }
        }
        keys.sort_unstable_by(|a, b| word_at(&arena, a).cmp(word_at(&arena, b)));
        arena.shrink_to_fit();
        keys.shrink_to_fit();
        SearchIndex { arena, keys }
    }

    /// Tickets (positions) holding every query word as a word prefix, at most `max`, in ticket
    /// order. The longest query word selects the candidates; `words_of` gives a candidate's
    /// folded words to check the others against.
    pub fn find(
        &self,
        query: &[String],
        max: usize,
        words_of: impl Fn(usize) -> Vec<String>,
    ) -> Vec<usize> {
        let Some(first) = query.iter().max_by_key(|w| w.len()) else {
            return Vec::new();
        };
        let start = self
            .keys
            .partition_point(|k| word_at(&self.arena, k) < first.as_str());
        let mut found: Vec<usize> = self.keys[start..]
            .iter()
            .take_while(|k| word_at(&self.arena, k).starts_with(first.as_str()))
            .take(CANDIDATES_MAX)
            .map(|k| k.ticket as usize)
            .collect();
        found.sort_unstable();
        found.dedup();
        if query.len() > 1 {
            found.retain(|&i| {
                let ws = words_of(i);
                query
                    .iter()
                    .all(|q| ws.iter().any(|w| w.starts_with(q.as_str())))
            });
        }
        found.truncate(max);
        found
    }
}

fn word_at<'a>(arena: &'a str, k: &Key) -> &'a str {
    &arena[k.at as usize..(k.at + k.len) as usize]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folding_ignores_case_accents_and_punctuation() {
        assert_eq!(fold("Éloïse Dupré-Lefèvre"), "eloise dupre lefevre");
        assert_eq!(words("  Cœur, ÆSIR  straße"), ["coeur", "aesir", "strasse"]);
    }

    #[test]
    fn every_query_word_must_prefix_a_word_of_the_ticket() {
        let tickets = [
            vec!["Éloïse Dupré", "ORD-12"],
            vec!["Eloi Martin", "ORD-13"],
            vec!["Zoé Dupont", "ORD-120"],
        ];
        let idx = SearchIndex::build(tickets.clone());
        let words_of = |i: usize| tickets[i].iter().flat_map(|t| words(t)).collect();
        let q = |s: &str| idx.find(&parse_query(s).unwrap(), 10, words_of);
        assert_eq!(q("elo"), [0, 1]);
        assert_eq!(q("ELOÏSE"), [0]);
        assert_eq!(q("dup"), [0, 2]);
        assert_eq!(q("dupre eloi"), [0]);
        assert_eq!(q("ord 12"), [0, 2]);
        assert_eq!(q("nobody"), Vec::<usize>::new());
        assert_eq!(idx.find(&parse_query("du").unwrap(), 1, words_of), [0]);
        assert_eq!(parse_query("a"), Err(QueryError::TooShort));
        assert_eq!(parse_query(" - "), Err(QueryError::TooShort));
        assert_eq!(parse_query(&"x".repeat(65)), Err(QueryError::TooLong));
    }
}
