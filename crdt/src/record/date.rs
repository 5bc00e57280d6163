//! Days and times as people read them: the festival day a time falls in, dates and RFC 3339
//! times for messages and documents. A leaf: it imports nothing of the crate but the latest
//! time a record may carry.

/// One day in ms.
pub const DAY_MS: u64 = 86_400_000;

/// The festival day a time falls in, as days since 1970-01-01: the local date the day started
/// on (`day_start_ms` as in `EntryRule`).
pub fn festival_day(ms: u64, day_start_ms: i64) -> u64 {
    let ms = i64::try_from(ms).unwrap_or(i64::MAX);
    ms.saturating_sub(day_start_ms)
        .div_euclid(DAY_MS as i64)
        .max(0) as u64
}

/// Milliseconds since the epoch as RFC 3339 (UTC, milliseconds).
pub fn iso(ms: u64) -> String {
    humantime::format_rfc3339_millis(clamped(ms)).to_string()
}

/// A festival day as its date (`2026-07-10`).
pub fn day_name(day: u64) -> String {
    fmt_ms(day.saturating_mul(DAY_MS))[..10].to_string()
}

/// RFC 3339 time for messages.
pub fn fmt_ms(ms: u64) -> String {
    humantime::format_rfc3339_seconds(clamped(ms)).to_string()
}

/// A time up to year 9999: past it there is no RFC 3339 date (humantime would panic).
fn clamped(ms: u64) -> std::time::SystemTime {
    let ms = ms.min(crate::record::TIME_MAX_MS);
    std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms)
}
