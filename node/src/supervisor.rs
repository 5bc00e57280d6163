//! Who may undo, check in by hand and pause a gate at this node: a supervisor. A steward scans
//! and searches.
//!
//! The device's certificate says whether it is a supervisor's (`device enroll --role
//! supervisor`); the gate logic refuses those actions to a steward's device whatever asks
//! (`supervisor_only`), and the mesh counts no steward's gate pause. On a supervisor's device
//! the page acts as a supervisor, unless the organizer gave the device a PIN (`gatemesh device
//! pin`, a shared gate scanner): then each of those actions needs the PIN
//! (`X-Supervisor-Pin`), and [`PIN_TRIES_MAX`] wrong PINs in a row shut it for
//! [`PIN_LOCKOUT`]. A paired phone is a steward's: it needs the PIN too. The admin token is the
//! operator's and needs none.
//!
//! The PIN is kept as PBKDF2-HMAC-SHA256 of it, salted, in the device's directory
//! ([`PIN_FILE`]), never in the event package: it is as secret as the device's key.

use crate::api::{Access, ApiError};
use axum::http::{HeaderMap, StatusCode};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The PIN file in a device's directory.
pub const PIN_FILE: &str = "supervisor.pin";
/// The header a page sends the PIN in.
pub const PIN_HEADER: &str = "x-supervisor-pin";
/// Wrong PINs in a row before the PIN is shut.
pub const PIN_TRIES_MAX: u32 = 5;
/// How long the PIN stays shut after [`PIN_TRIES_MAX`] wrong ones.
pub const PIN_LOCKOUT: Duration = Duration::from_secs(60);
/// PBKDF2 rounds of a new PIN file.
pub const PIN_ROUNDS: u32 = 100_000;
/// Shortest and longest PIN, in digits.
pub const PIN_DIGITS: std::ops::RangeInclusive<usize> = 4..=12;
/// Most rounds a PIN file may ask for (a corrupted file must not stall the node).
const PIN_ROUNDS_MAX: u32 = 1_000_000;
const PIN_PREFIX: &str = "gmpin1";

/// A PIN as stored: rounds, salt, PBKDF2 output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PinHash {
    rounds: u32,
    salt: [u8; 16],
    hash: [u8; 32],
}

impl PinHash {
    /// Hash a new PIN (4 to 12 digits) with a fresh salt.
    pub fn new(pin: &str) -> anyhow::Result<PinHash> {
        if !pin_ok(pin) {
            anyhow::bail!("a supervisor PIN is 4 to 12 digits");
        }
        let salt: [u8; 16] = rand::random();
        let hash = pbkdf2(pin.as_bytes(), &salt, PIN_ROUNDS);
        Ok(PinHash {
            rounds: PIN_ROUNDS,
            salt,
            hash,
        })
    }

    /// `gmpin1:<rounds>:<salt hex>:<hash hex>`.
    pub fn encode(&self) -> String {
        let (salt, hash) = (hex::encode(self.salt), hex::encode(self.hash));
        format!("{PIN_PREFIX}:{}:{salt}:{hash}", self.rounds)
    }

    pub fn decode(text: &str) -> Option<PinHash> {
        let mut parts = text.trim().split(':');
        if parts.next()? != PIN_PREFIX {
            return None;
        }
        let rounds: u32 = parts.next()?.parse().ok()?;
        let salt = hex::decode(parts.next()?).ok()?.try_into().ok()?;
        let hash = hex::decode(parts.next()?).ok()?.try_into().ok()?;
        let ok = parts.next().is_none() && (1..=PIN_ROUNDS_MAX).contains(&rounds);
        ok.then_some(PinHash { rounds, salt, hash })
    }

    /// Whether `pin` is this PIN (compared in constant time).
    pub fn matches(&self, pin: &str) -> bool {
        use subtle::ConstantTimeEq;
        let got = pbkdf2(pin.as_bytes(), &self.salt, self.rounds);
        pin_ok(pin) && bool::from(got.ct_eq(&self.hash))
    }
}

fn pin_ok(pin: &str) -> bool {
    PIN_DIGITS.contains(&pin.len()) && pin.bytes().all(|c| c.is_ascii_digit())
}

/// PBKDF2-HMAC-SHA256 with one output block (RFC 8018 §5.2).
fn pbkdf2(password: &[u8], salt: &[u8], rounds: u32) -> [u8; 32] {
    let prf = Hmac::<Sha256>::new_from_slice(password).expect("HMAC takes any key length");
    let mut u = {
        let mut m = prf.clone();
        m.update(salt);
        m.update(&1u32.to_be_bytes());
        m.finalize().into_bytes()
    };
    let mut out: [u8; 32] = u.into();
    for _ in 1..rounds {
        let mut m = prf.clone();
        m.update(&u);
        u = m.finalize().into_bytes();
        out.iter_mut().zip(u.iter()).for_each(|(o, x)| *o ^= x);
    }
    out
}

/// Write a device's PIN file.
pub fn write_pin(device_dir: &Path, pin: &str) -> anyhow::Result<()> {
    let text = PinHash::new(pin)?.encode() + "\n";
    crate::package::write_secret_file(&device_dir.join(PIN_FILE), text.as_bytes())
}

/// This node's supervisor rule: its device's role, its PIN if any, the wrong tries.
#[derive(Debug)]
pub struct Guard {
    supervisor: bool,
    pin: Option<PinHash>,
    /// Wrong PINs in a row, and when the last one came.
    wrong: Mutex<(u32, Option<Instant>)>,
}

impl Guard {
    /// The guard of the device in `device_dir`: a PIN file that does not read is an error (the
    /// organizer meant a PIN; a node without it would let every page act as a supervisor).
    pub fn load(device_dir: &Path, supervisor: bool) -> anyhow::Result<Guard> {
        let path = device_dir.join(PIN_FILE);
        let pin = match std::fs::read_to_string(&path) {
            Ok(text) => Some(PinHash::decode(&text).ok_or_else(|| {
                anyhow::anyhow!("{} is not a supervisor PIN file", path.display())
            })?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e.into()),
        };
        Ok(Guard::new(supervisor, pin))
    }

    pub fn new(supervisor: bool, pin: Option<PinHash>) -> Guard {
        Guard {
            supervisor,
            pin,
            wrong: Mutex::new((0, None)),
        }
    }

    /// What the pages are told: `steward` or `supervisor`, and whether a PIN is asked.
    pub fn shown(&self) -> serde_json::Value {
        let role = if self.supervisor {
            "supervisor"
        } else {
            "steward"
        };
        serde_json::json!({"role": role, "pin": self.supervisor && self.pin.is_some()})
    }

    /// Whether a request may act as a supervisor here.
    pub async fn check(&self, access: &Access, headers: &HeaderMap) -> Result<(), ApiError> {
        if !self.supervisor {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "supervisor_only",
                "this device is a steward's: undo, hand check-in and gate pause need a \
                 supervisor's device",
            ));
        }
        let needs_pin = match access {
            Access::Admin => false,
            Access::Staff => self.pin.is_some(),
            Access::Phone { .. } => true,
        };
        if !needs_pin {
            return Ok(());
        }
        let Some(hash) = self.pin.clone() else {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "supervisor_only",
                "a phone is a steward's, and this device has no supervisor PIN to lift it",
            ));
        };
        self.check_pin(hash, headers).await
    }

    async fn check_pin(&self, hash: PinHash, headers: &HeaderMap) -> Result<(), ApiError> {
        let pin = (headers.get(PIN_HEADER).and_then(|v| v.to_str().ok()))
            .map(str::to_string)
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "pin_required",
                    "a supervisor's PIN is needed",
                )
            })?;
        self.shut()?;
        let matched = tokio::task::spawn_blocking(move || hash.matches(&pin))
            .await
            .unwrap_or(false);
        let mut wrong = self.wrong.lock().unwrap_or_else(|e| e.into_inner());
        if matched {
            *wrong = (0, None);
            return Ok(());
        }
        *wrong = (wrong.0.saturating_add(1), Some(Instant::now()));
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "pin_wrong",
            "that is not the supervisor's PIN",
        ))
    }

    /// Refused while the PIN is shut after too many wrong ones.
    fn shut(&self) -> Result<(), ApiError> {
        let mut wrong = self.wrong.lock().unwrap_or_else(|e| e.into_inner());
        match *wrong {
            (n, Some(at)) if n >= PIN_TRIES_MAX && at.elapsed() < PIN_LOCKOUT => {
                Err(ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "pin_locked",
                    format!(
                        "{PIN_TRIES_MAX} wrong PINs: try again in {} s",
                        (PIN_LOCKOUT - at.elapsed()).as_secs() + 1
                    ),
                ))
            }
            (n, Some(_)) if n >= PIN_TRIES_MAX => {
                *wrong = (0, None);
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pbkdf2_matches_the_rfc_6070_style_vector() {
        // PBKDF2-HMAC-SHA256, "password" / "salt", 1 and 2 rounds (RFC 7914 §11 lineage).
        let one = pbkdf2(b"password", b"salt", 1);
        assert_eq!(
            hex::encode(one),
            "120fb6cffcf8b32c43e7225256c4f837a86548c92ccc35480805987cb70be17b"
        );
        let two = pbkdf2(b"password", b"salt", 2);
        assert_eq!(
            hex::encode(two),
            "ae4d0c95af6b46d32d0adff928f06dd02a303f8ef3c251dfd6e2d85a95474c43"
        );
    }

    #[test]
    fn a_pin_file_reads_back_and_refuses_what_is_not_one() {
        let h = PinHash::new("4821").unwrap();
        let back = PinHash::decode(&h.encode()).unwrap();
        assert!(back.matches("4821"));
        assert!(!back.matches("4822"));
        assert!(!back.matches(""));
        for bad in [
            "",
            "gmpin1",
            "gmpin1:0:00:00",
            "x:1:00:00",
            "gmpin1:99999999:aa:bb",
        ] {
            assert_eq!(PinHash::decode(bad), None, "{bad}");
        }
        assert!(PinHash::new("12").is_err());
        assert!(PinHash::new("12ab").is_err());
    }

    #[tokio::test]
    async fn wrong_pins_shut_the_pin_and_a_steward_never_acts_as_supervisor() {
        let guard = Guard::new(true, Some(PinHash::new("4821").unwrap()));
        let with = |pin: &str| {
            let mut h = HeaderMap::new();
            h.insert(PIN_HEADER, pin.parse().unwrap());
            h
        };
        let staff = Access::Staff;
        let code = |r: Result<(), ApiError>| r.err().map(|e| e.code);
        assert_eq!(
            code(guard.check(&staff, &HeaderMap::new()).await),
            Some("pin_required")
        );
        assert_eq!(code(guard.check(&staff, &with("4821")).await), None);
        for _ in 0..PIN_TRIES_MAX {
            assert_eq!(
                code(guard.check(&staff, &with("0000")).await),
                Some("pin_wrong")
            );
        }
        // Shut: even the right PIN waits.
        assert_eq!(
            code(guard.check(&staff, &with("4821")).await),
            Some("pin_locked")
        );
        assert_eq!(
            code(guard.check(&Access::Admin, &HeaderMap::new()).await),
            None
        );
        let steward = Guard::new(false, None);
        assert_eq!(
            code(steward.check(&Access::Admin, &HeaderMap::new()).await),
            Some("supervisor_only")
        );
        let no_pin = Guard::new(true, None);
        assert_eq!(code(no_pin.check(&staff, &HeaderMap::new()).await), None);
        let phone = Access::Phone {
            device: "p".into(),
            since_ms: 0,
        };
        assert_eq!(
            code(no_pin.check(&phone, &HeaderMap::new()).await),
            Some("supervisor_only")
        );
    }
}
