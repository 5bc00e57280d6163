//! The bodies of the API's refusals, as the OpenAPI document describes them: the handlers
//! ([`crate::api`]) answer with them and the document ([`crate::openapi`]) names them, so
//! neither imports the other for them.

use serde::Serialize;
use utoipa::ToSchema;

/// Every error code the API answers with, in `{"error": CODE, "message": ...}`. Lower case codes
/// are gatemesh's; upper case ones are the seed's offline contract.
#[derive(Clone, Copy, Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    Unauthorized,
    MalformedJson,
    MissingField,
    InvalidField,
    BodyTooLarge,
    UnknownGate,
    UnknownTicket,
    NotFound,
    BulletinRejected,
    TooManyBulletins,
    Busy,
    NotReady,
    TooManyStreams,
    StoreError,
    LedgerError,
    EventPackage,
    OutsideEvent,
    NotAnnullable,
    InvalidQuery,
    /// A phone's pass: not a pass, signature, issuer, event, validity.
    PassMalformed,
    PassBadSignature,
    PassUnknownIssuer,
    PassWrongEvent,
    PassExpired,
    /// The phone was unpaired by the organizer (its pass is refused everywhere).
    Unpaired,
    TicketMismatch,
    /// Undo, hand check-in and gate pause are a supervisor's (a steward's device or phone).
    SupervisorOnly,
    /// This device asks for the supervisor's PIN (`X-Supervisor-Pin`).
    PinRequired,
    PinWrong,
    /// Too many wrong PINs in a row: shut for a minute.
    PinLocked,
    #[serde(rename = "UNPAIRED")]
    UnpairedDevice,
    #[serde(rename = "WRONG_DEVICE")]
    WrongDevice,
    #[serde(rename = "UNKNOWN_DEVICE")]
    UnknownDevice,
    #[serde(rename = "EVENT_NOT_FOUND")]
    EventNotFound,
    #[serde(rename = "NO_MANIFEST")]
    NoManifest,
}

/// An error of the offline routes' request checks (the seed's codes).
#[derive(Clone, Copy, Debug, Serialize, ToSchema)]
pub enum OfflineErrorCode {
    #[serde(rename = "MISSING_DEVICE_ID")]
    MissingDeviceId,
    #[serde(rename = "INVALID_DEVICE_ID")]
    InvalidDeviceId,
    #[serde(rename = "INVALID_REQUEST")]
    InvalidRequest,
    #[serde(rename = "TOO_MANY_SCANS")]
    TooManyScans,
}

/// A refused request.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorCode,
    /// A sentence for people; not stable.
    pub message: String,
}

/// A refused offline request, in the seed's shape.
#[derive(Debug, Serialize, ToSchema)]
pub struct OfflineErrorBody {
    /// Always `false`.
    pub success: bool,
    pub error: OfflineErrorCode,
    pub message: String,
}
