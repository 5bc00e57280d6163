//! Who may undo, check in by hand and pause a gate at this node: a supervisor. A steward scans
//! and searches.
//!
//! The device's certificate says whether it is a supervisor's (`device enroll --role
//! supervisor`); the gate logic refuses those actions to a steward's device whatever asks
//! (`supervisor_only`), and the mesh counts no steward's gate pause. On a supervisor's device
//! the page acts as a supervisor, unless the organizer gave the device a PIN (`gatemesh device
//! pin`, a shared gate scanner): then each of those actions needs the PIN
//! (`X-Supervisor-Pin`), and [`PIN_TRIES_MAX`] wrong PINs in a row shut it for
//! [`PIN_LOCKOUT`], twice as long at each shutting after (up to [`PIN_LOCKOUT_MAX`]) until a
//! right PIN. A try counts from when it arrives, before its PIN is hashed, and one PIN is
//! hashed at a time: guesses sent together wait their turn and are shut out as soon as the
//! wrong ones reach the limit. A paired phone is a steward's: it needs the PIN too. The admin
//! token is the operator's and needs none. (The HTTP side says who asks and turns a refusal
//! into its answer: `api::supervisor`.)
//!
//! The PIN is kept as PBKDF2-HMAC-SHA256 of it, salted, in the device's directory
//! ([`PIN_FILE`]), never in the event package: it is as secret as the device's key.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The PIN file in a device's directory.
pub const PIN_FILE: &str = "supervisor.pin";
/// The header a page sends the PIN in.
pub const PIN_HEADER: &str = "x-supervisor-pin";
/// Wrong PINs in a row before the PIN is shut.
pub const PIN_TRIES_MAX: u32 = 5;
/// How long the PIN stays shut after [`PIN_TRIES_MAX`] wrong ones, the first time.
pub const PIN_LOCKOUT: Duration = Duration::from_secs(60);
/// The longest it stays shut (each shutting doubles it): ten minutes, so a steward's phone
/// cannot keep a supervisor out for long, and a four-digit PIN still takes weeks to guess.
pub const PIN_LOCKOUT_MAX: Duration = Duration::from_secs(600);
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

/// Who asks for a supervisor's action.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Asker {
    /// The admin token: the operator.
    Operator,
    /// The staff token: whoever holds the device's page.
    Staff,
    /// A paired phone's pass: a steward's.
    Phone,
}

/// Why a supervisor's action is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The device is a steward's.
    Steward,
    /// A phone asks, and the device has no PIN to lift it.
    PhoneWithoutPin,
    PinRequired,
    PinWrong,
    /// Shut for this long after too many wrong PINs.
    PinLocked(Duration),
}

impl Refusal {
    /// The stable code.
    pub fn code(self) -> &'static str {
        match self {
            Refusal::Steward | Refusal::PhoneWithoutPin => "supervisor_only",
            Refusal::PinRequired => "pin_required",
            Refusal::PinWrong => "pin_wrong",
            Refusal::PinLocked(_) => "pin_locked",
        }
    }

    /// The HTTP status it is answered with.
    pub fn status(self) -> u16 {
        match self {
            Refusal::PinRequired => 401,
            Refusal::PinLocked(_) => 429,
            _ => 403,
        }
    }

    pub fn message(self) -> String {
        match self {
            Refusal::Steward => "this device is a steward's: undo, hand check-in and gate pause \
                                 need a supervisor's device"
                .to_string(),
            Refusal::PhoneWithoutPin => {
                "a phone is a steward's, and this device has no supervisor PIN to lift it".into()
            }
            Refusal::PinRequired => "a supervisor's PIN is needed".into(),
            Refusal::PinWrong => "that is not the supervisor's PIN".into(),
            Refusal::PinLocked(left) => format!(
                "{PIN_TRIES_MAX} wrong PINs: try again in {} s",
                left.as_secs() + 1
            ),
        }
    }
}

/// Tries of the PIN: counted as they arrive, before they are hashed.
#[derive(Debug, Default)]
struct Tries {
    /// Wrong PINs and PINs being checked since the last right one or shutting.
    counted: u32,
    /// Shut until then.
    shut_until: Option<Instant>,
    /// Shuttings since the last right PIN (each doubles the next).
    shuttings: u32,
}

impl Tries {
    /// Count a try, or say how long the PIN is shut for. The try that reaches
    /// [`PIN_TRIES_MAX`] shuts it (it is checked all the same: a right PIN opens it again).
    fn start(&mut self, now: Instant) -> Result<(), Duration> {
        match self.shut_until {
            Some(until) if until > now => return Err(until - now),
            Some(_) => {
                self.shut_until = None;
                self.counted = 0;
            }
            None => {}
        }
        self.counted += 1;
        if self.counted >= PIN_TRIES_MAX {
            let lockout = PIN_LOCKOUT.saturating_mul(1 << self.shuttings.min(6));
            self.shut_until = Some(now + lockout.min(PIN_LOCKOUT_MAX));
            self.shuttings = self.shuttings.saturating_add(1);
        }
        Ok(())
    }
}

/// This node's supervisor rule: its device's role, its PIN if any, the tries.
#[derive(Debug)]
pub struct Guard {
    /// The device is a supervisor's, as the roster says (a bulletin may narrow it).
    supervisor: AtomicBool,
    pin: Option<PinHash>,
    tries: Mutex<Tries>,
    /// One PIN hashed at a time.
    hashing: tokio::sync::Semaphore,
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
            supervisor: AtomicBool::new(supervisor),
            pin,
            tries: Mutex::new(Tries::default()),
            hashing: tokio::sync::Semaphore::new(1),
        }
    }

    /// What the pages are told: `steward` or `supervisor`, and whether a PIN is asked.
    pub fn shown(&self) -> serde_json::Value {
        let supervisor = self.is_supervisor();
        let role = if supervisor { "supervisor" } else { "steward" };
        serde_json::json!({"role": role, "pin": supervisor && self.pin.is_some()})
    }

    fn is_supervisor(&self) -> bool {
        self.supervisor.load(Ordering::Relaxed)
    }

    /// The roster's word on this device, after a bulletin.
    pub fn set_supervisor(&self, supervisor: bool) {
        self.supervisor.store(supervisor, Ordering::Relaxed);
    }

    /// Whether `asker`, showing `pin` if any, may act as a supervisor here.
    pub async fn check(&self, asker: Asker, pin: Option<&str>) -> Result<(), Refusal> {
        if !self.is_supervisor() {
            return Err(Refusal::Steward);
        }
        let needs_pin = match asker {
            Asker::Operator => false,
            Asker::Staff => self.pin.is_some(),
            Asker::Phone => true,
        };
        if !needs_pin {
            return Ok(());
        }
        let hash = self.pin.clone().ok_or(Refusal::PhoneWithoutPin)?;
        let pin = pin.ok_or(Refusal::PinRequired)?.to_string();
        let counted = match self.tries.lock() {
            Ok(mut tries) => tries.start(Instant::now()),
            Err(_) => Err(PIN_LOCKOUT),
        };
        counted.map_err(Refusal::PinLocked)?;
        let right = match self.hashing.acquire().await {
            Ok(_turn) => {
                (tokio::task::spawn_blocking(move || hash.matches(&pin)).await).unwrap_or(false)
            }
            Err(_) => false,
        };
        match (right, self.tries.lock()) {
            (true, Ok(mut tries)) => *tries = Tries::default(),
            (true, Err(_)) => {}
            (false, _) => return Err(Refusal::PinWrong),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pbkdf2_matches_the_published_sha256_vectors() {
        // PBKDF2-HMAC-SHA256, "password" / "salt", 1 and 2 rounds.
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

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn wrong_pins_shut_the_pin_and_a_steward_never_acts_as_supervisor() {
        let guard = Guard::new(true, Some(PinHash::new("4821").unwrap()));
        let staff = Asker::Staff;
        let code = |r: Result<(), Refusal>| r.err().map(Refusal::code);
        assert_eq!(code(guard.check(staff, None).await), Some("pin_required"));
        assert_eq!(code(guard.check(staff, Some("4821")).await), None);
        for _ in 0..PIN_TRIES_MAX {
            assert_eq!(
                code(guard.check(staff, Some("0000")).await),
                Some("pin_wrong")
            );
        }
        // Shut: even the right PIN waits.
        assert_eq!(
            code(guard.check(staff, Some("4821")).await),
            Some("pin_locked")
        );
        assert_eq!(code(guard.check(Asker::Operator, None).await), None);
        let steward = Guard::new(false, None);
        assert_eq!(
            code(steward.check(Asker::Operator, None).await),
            Some("supervisor_only")
        );
        let no_pin = Guard::new(true, None);
        assert_eq!(code(no_pin.check(staff, None).await), None);
        assert_eq!(
            code(no_pin.check(Asker::Phone, None).await),
            Some("supervisor_only")
        );
        // Narrowed by a bulletin: a steward's from then on.
        no_pin.set_supervisor(false);
        assert_eq!(
            code(no_pin.check(staff, None).await),
            Some("supervisor_only")
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn guesses_sent_together_are_counted_as_they_arrive() {
        let guard = std::sync::Arc::new(Guard::new(true, Some(PinHash::new("4821").unwrap())));
        let guesses: Vec<_> = (0..20)
            .map(|i| {
                let (g, pin) = (guard.clone(), format!("{:04}", 1000 + i));
                tokio::spawn(async move { g.check(Asker::Staff, Some(&pin)).await })
            })
            .collect();
        let mut wrong = 0;
        for g in guesses {
            wrong += usize::from(g.await.unwrap() == Err(Refusal::PinWrong));
        }
        assert_eq!(wrong, PIN_TRIES_MAX as usize, "five checked, the rest shut");
    }

    #[test]
    fn each_shutting_is_twice_as_long_as_the_one_before() {
        let mut t = Tries::default();
        let now = Instant::now();
        for _ in 0..PIN_TRIES_MAX {
            t.start(now).unwrap();
        }
        assert_eq!(t.start(now), Err(PIN_LOCKOUT));
        let later = now + PIN_LOCKOUT;
        for _ in 0..PIN_TRIES_MAX {
            t.start(later).unwrap();
        }
        assert_eq!(t.start(later), Err(PIN_LOCKOUT * 2));
    }
}
