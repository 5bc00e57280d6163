//! The node's HTTP API (axum). Handlers do not touch the ledger: they send a request to the
//! node's loop on a bounded queue and wait for its answer, so the HTTP side stays I/O only and
//! the gate logic keeps a single owner.
//!
//! Errors are `{"error": CODE, "message": text}` with a 4xx status. Bodies over
//! [`BODY_BYTES_MAX`] are refused. Scanning and reading need the staff or admin token
//! (`Authorization: Bearer`); bulletins need the admin token.

use axum::body::Bytes;
use axum::extract::{Path, Query as UrlQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::Duration;

use crate::apierror::{ErrorBody, OfflineErrorBody};
use crate::conns::ConnHandle;
use gatemesh_crdt::protocol::Reconciler;
use tokio::sync::{mpsc, oneshot};

/// Largest request body.
pub const BODY_BYTES_MAX: usize = 16 * 1024;
/// Requests waiting for the node's loop.
pub const API_QUEUE_MAX: usize = 1024;
/// Most requests the node's loop takes at once (their scans share one durable write).
pub const API_BATCH_MAX: usize = 64;
/// Longest a request waits for the node's loop.
pub const API_WAIT_MAX: Duration = Duration::from_secs(10);

/// What the HTTP side asks of the node's loop. Answers are JSON values the loop made from the
/// replica's typed answers.
#[derive(Debug)]
pub enum ApiCall {
    Scan {
        code: String,
        gate: Option<String>,
        direction: Option<gatemesh_crdt::Direction>,
        /// `code` is a ticket id found by search (`POST /api/checkin`).
        manual: bool,
        /// A paired phone's scan, `<phone>@<ms>` (the record keeps it as its origin).
        origin: Option<String>,
        reply: oneshot::Sender<Result<Value, ApiError>>,
    },
    /// Undo an admit this node made (`POST /api/annul`).
    Annul {
        ticket_id: String,
        scan_id: String,
        /// Asked by a paired phone: it undoes its own online admits only.
        phone: Option<String>,
        reply: oneshot::Sender<Result<Value, ApiError>>,
    },
    /// A supervisor pauses a gate, or resumes it (`POST /api/gate-pause`).
    PauseGate {
        gate: Option<String>,
        paused: bool,
        reply: oneshot::Sender<Result<Value, ApiError>>,
    },
    /// A read-only question.
    Query {
        query: Query,
        reply: oneshot::Sender<Result<Value, ApiError>>,
    },
    Bulletin {
        bytes: Vec<u8>,
        reply: oneshot::Sender<Result<Value, ApiError>>,
    },
    Reconcile {
        request: gatemesh_crdt::gate::offline::ReconcileRequest,
        /// Who asks (the token or pass it showed).
        by: Reconciler,
        reply: oneshot::Sender<Result<Value, ApiError>>,
    },
    /// Bytes for a phone: the offline pack or the snapshot.
    Offline {
        ask: OfflineAsk,
        reply: oneshot::Sender<Result<Bytes, ApiError>>,
    },
}

/// What a phone downloads to decide on its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OfflineAsk {
    /// `GET /offline/pack`: the event's rules and the signed manifest (JSON).
    Pack,
    /// `GET /offline/snapshot`: who has come in (binary, `crdt::gate::snapshot`).
    Snapshot,
}

/// The read-only questions.
#[derive(Clone, Debug)]
pub enum Query {
    Ticket(String),
    /// Tickets by attendee name, order or id (`GET /api/search?q=`).
    Search(String),
    /// The pauses in force (`GET /api/pauses`).
    Pauses,
    /// The latest supervisors' actions (`GET /api/audit`), at most this many.
    Audit(usize),
    Conflicts,
    Status,
    Stats,
    Peers,
    /// Prometheus text, as a JSON string.
    Metrics,
    OfflineManifest(String),
    /// Pair a phone (`POST /api/phones`, admin): a pass signed by this node.
    PairPhone(String),
    /// Records `from..from + max` of the node's journal (the bridge; not an HTTP route).
    Journal {
        from: usize,
        max: usize,
    },
}

/// A refused request: status, stable code, sentence.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(json!({"error": self.code, "message": self.message})),
        )
            .into_response()
    }
}

#[derive(Clone, Debug)]
pub struct ApiState {
    pub calls: mpsc::Sender<ApiCall>,
    pub staff_token: String,
    pub admin_token: String,
    /// What `GET /api/stream` forwards: scans, stats, conflicts, peers (JSON with an `event`).
    pub stream: tokio::sync::broadcast::Sender<std::sync::Arc<Value>>,
    /// Open streams, bounded by [`STREAM_CLIENTS_MAX`].
    pub streams_open: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    /// Set by the node's loop while it runs.
    pub ready: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Set by the node's loop once it has caught up with its peers since the start.
    pub synced: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// The event CA's certificate, offered at `/ca.pem` for phones to trust.
    pub ca_pem: Option<std::sync::Arc<Vec<u8>>>,
    /// Makes the OpenAPI document `GET /api/openapi.json` serves (`crate::openapi::document`:
    /// the document names the handlers, so the handlers are handed it rather than import it).
    pub openapi: fn() -> String,
    /// What phones' passes are checked against; the node's loop renews it when a bulletin
    /// changes it (a phone unpaired, a scanner revoked or added).
    pub passes: std::sync::Arc<std::sync::RwLock<gatemesh_crdt::event::pass::PassCheck>>,
    /// Who may act as a supervisor here ([`crate::supervisor`]).
    pub supervisor: std::sync::Arc<crate::supervisor::Guard>,
}

/// Most `GET /api/stream` clients at once.
pub const STREAM_CLIENTS_MAX: usize = 64;
/// Events buffered for a slow stream client before it skips ahead.
pub const STREAM_BUFFER_MAX: usize = 1024;

/// What a request showed: the staff or admin token, or a paired phone's pass.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Access {
    Staff,
    Admin,
    /// A phone's pass checked ([`gatemesh_crdt::event::pass`]): the scanner page's routes,
    /// as this device, paired since `since_ms`.
    Phone {
        device: String,
        since_ms: u64,
    },
}

/// What a route needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Need {
    /// A scanner page's route: the staff token, the admin token or a phone's pass.
    Phone,
    /// The staff or the admin token (figures, the stream, tickets' histories).
    Staff,
    Admin,
}

/// The routes `GET /api/openapi.json` documents (the pages and the document itself aside).
pub const API_ROUTES: &[&str] = &[
    "/api/scan",
    "/api/checkin",
    "/api/annul",
    "/api/search",
    "/api/gate-pause",
    "/api/audit",
    "/api/pauses",
    "/api/tickets/{id}",
    "/api/conflicts",
    "/api/status",
    "/api/stats",
    "/api/peers",
    "/api/stream",
    "/api/bulletins",
    "/metrics",
    "/offline/manifest/{event_id}",
    "/offline/reconcile",
    "/offline/pack",
    "/offline/snapshot",
    "/api/phones",
    "/health/live",
    "/health/ready",
];

/// The API's routes, with `more` (the phone's routes, `crate::phone::routes`, handed in so
/// that module and this one do not import each other) under the same token and size checks.
pub fn router(state: ApiState, more: Router<ApiState>) -> Router {
    Router::new()
        .route("/api/scan", post(scan))
        .route("/api/checkin", post(checkin))
        .route("/api/annul", post(annul))
        .route("/api/search", get(search))
        .route("/api/pauses", get(pauses))
        .route("/api/tickets/{id}", get(ticket))
        .route("/api/conflicts", get(conflicts))
        .route("/api/status", get(status))
        .route("/api/bulletins", post(bulletin))
        .route("/api/stats", get(stats))
        .route("/api/peers", get(peers))
        .route("/api/stream", get(stream))
        .route("/metrics", get(metrics))
        .route("/offline/manifest/{event_id}", get(offline_manifest))
        .route("/offline/reconcile", post(reconcile))
        .merge(more)
        .merge(crate::web::routes())
        .route("/ca.pem", get(ca_pem))
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
        .route("/api/openapi.json", get(openapi))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route") })
        // The limit is checked by the handlers (to answer with a JSON error); this layer stops
        // anything much larger before it is read.
        .layer(axum::extract::DefaultBodyLimit::max(BODY_BYTES_MAX + 1))
        .layer(axum::middleware::from_fn_with_state(state.clone(), vouch))
        .with_state(state)
}

/// A request that shows a valid token (header, or the stream's `token` parameter) vouches for
/// its connection: no longer a stranger, it is never closed to make room
/// ([`crate::conns`]).
async fn vouch(
    State(state): State<ApiState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    use axum::extract::ConnectInfo;
    if let Some(ConnectInfo(conn)) = req.extensions().get::<ConnectInfo<ConnHandle>>() {
        let query_token = req.uri().query().and_then(|q| {
            q.split('&')
                .find_map(|kv| kv.strip_prefix("token="))
                .map(str::to_string)
        });
        let token = bearer(req.headers()).map(str::to_string).or(query_token);
        if !conn.vouched() && authorize_token(&state, token.as_deref(), Need::Phone).is_ok() {
            conn.vouch();
        }
    }
    next.run(req).await
}

pub(crate) fn authorize(
    state: &ApiState,
    headers: &HeaderMap,
    need: Need,
) -> Result<Access, ApiError> {
    authorize_token(state, bearer(headers), need)
}

pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
}

/// Check a token against what the route needs; returns the access it grants. Tokens are
/// compared in constant time; a phone's pass is checked by its signature.
pub(crate) fn authorize_token(
    state: &ApiState,
    token: Option<&str>,
    need: Need,
) -> Result<Access, ApiError> {
    let same = |t: &str, want: &str| -> bool {
        use subtle::ConstantTimeEq;
        bool::from(t.as_bytes().ct_eq(want.as_bytes()))
    };
    let unauthorized =
        |code, message: String| ApiError::new(StatusCode::UNAUTHORIZED, code, message);
    let granted = match token {
        Some(t) if same(t, &state.admin_token) => Access::Admin,
        Some(t) if same(t, &state.staff_token) => Access::Staff,
        Some(t) if t.starts_with(gatemesh_crdt::event::pass::PASS_PREFIX) => {
            let check = state.passes.read().unwrap_or_else(|e| e.into_inner());
            match check.check(t, crate::now_ms()) {
                Ok(body) => Access::Phone {
                    device: body.device_id,
                    since_ms: body.issued_ms,
                },
                Err(e) => return Err(unauthorized(e.code(), e.to_string())),
            }
        }
        _ => {
            let message = "a valid Authorization: Bearer token is needed".to_string();
            return Err(unauthorized("unauthorized", message));
        }
    };
    match (&granted, need) {
        (Access::Admin, _) | (_, Need::Phone) | (Access::Staff, Need::Staff) => Ok(granted),
        (Access::Phone { .. }, Need::Staff) => Err(unauthorized(
            "unauthorized",
            "a phone's pass opens the scanner page's routes only".to_string(),
        )),
        _ => Err(unauthorized(
            "unauthorized",
            "this needs the admin token".to_string(),
        )),
    }
}

/// A supervisor's action may go ahead ([`crate::supervisor::Guard`]): the token or pass that
/// asks, and the PIN header if any.
pub(crate) async fn supervisor(
    state: &ApiState,
    access: &Access,
    headers: &HeaderMap,
) -> Result<(), ApiError> {
    use crate::supervisor::{Asker, PIN_HEADER};
    let asker = match access {
        Access::Admin => Asker::Operator,
        Access::Staff => Asker::Staff,
        Access::Phone { .. } => Asker::Phone,
    };
    let pin = headers.get(PIN_HEADER).and_then(|v| v.to_str().ok());
    state.supervisor.check(asker, pin).await.map_err(|r| {
        let status = StatusCode::from_u16(r.status()).unwrap_or(StatusCode::FORBIDDEN);
        ApiError::new(status, r.code(), r.message())
    })
}

pub(crate) async fn query(state: &ApiState, query: Query) -> Result<Json<Value>, ApiError> {
    call(state, |reply| ApiCall::Query { query, reply }).await
}

pub(crate) async fn call(
    state: &ApiState,
    make: impl FnOnce(oneshot::Sender<Result<Value, ApiError>>) -> ApiCall,
) -> Result<Json<Value>, ApiError> {
    let (tx, rx) = oneshot::channel();
    let busy = || {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            "the node is busy; try again",
        )
    };
    state.calls.try_send(make(tx)).map_err(|_| busy())?;
    match tokio::time::timeout(API_WAIT_MAX, rx).await {
        Ok(Ok(r)) => r.map(Json),
        _ => Err(busy()),
    }
}

/// The request body, refused above [`BODY_BYTES_MAX`].
fn body_bytes(
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("bodies are limited to {BODY_BYTES_MAX} bytes"),
        )
    };
    let body = body.map_err(|_| too_large())?;
    if body.len() > BODY_BYTES_MAX {
        return Err(too_large());
    }
    Ok(body)
}

pub(crate) fn body_json(
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Value, ApiError> {
    serde_json::from_slice(&body_bytes(body)?)
        .map_err(|e| ApiError::bad_request("malformed_json", e.to_string()))
}

/// `POST /api/scan` body.
#[derive(Clone, Debug, utoipa::ToSchema)]
pub struct ScanBody {
    /// The code as scanned (GM1, legacy JSON, a manifest code or NFC UID); at most 2,048 bytes
    /// count, more reads as `malformed`.
    pub code: String,
    /// The gate the steward stands at; the node's own when absent.
    pub gate: Option<String>,
    /// `in` or `out`; the node's own when absent.
    pub direction: Option<gatemesh_crdt::Direction>,
    /// A paired phone's clock when it read the code (ms since 1970): the record keeps
    /// `<phone>@<ms>` as its origin, so the phone reconciling the same scan later (it never got
    /// this answer) is `DUPLICATE`. Ignored for tokens.
    pub scanned_at_ms: Option<u64>,
}

/// `POST /api/checkin` body: a ticket the steward found by search, checked in by hand.
#[derive(Clone, Debug, utoipa::ToSchema)]
pub struct CheckinBody {
    /// The ticket id, as `GET /api/search` gave it.
    pub ticket_id: String,
    /// The gate the steward stands at; the node's own when absent.
    pub gate: Option<String>,
    /// `in` or `out`; the node's own when absent.
    pub direction: Option<gatemesh_crdt::Direction>,
}

/// Read a scan body: `code` a string, `gate` and `direction` strings when present.
fn scan_body(v: &Value) -> Result<ScanBody, ApiError> {
    scan_body_with(v, "code")
}

/// A scan body whose code is under `key` (`code`, or `ticket_id` for a hand check-in).
fn scan_body_with(v: &Value, key: &str) -> Result<ScanBody, ApiError> {
    let code = v[key]
        .as_str()
        .ok_or_else(|| {
            ApiError::bad_request("missing_field", format!("`{key}` (a string) is required"))
        })?
        .to_string();
    let text = |k: &str| -> Result<Option<String>, ApiError> {
        match &v[k] {
            Value::Null => Ok(None),
            Value::String(s) => Ok(Some(s.clone())),
            _ => Err(ApiError::bad_request(
                "invalid_field",
                format!("`{k}` must be a string"),
            )),
        }
    };
    let (gate, direction) = (text("gate")?, text("direction")?);
    let direction = match direction.as_deref() {
        None => None,
        Some("in") => Some(gatemesh_crdt::Direction::In),
        Some("out") => Some(gatemesh_crdt::Direction::Out),
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid_field",
                "`direction` is \"in\" or \"out\"",
            ))
        }
    };
    let scanned_at_ms = match &v["scanned_at_ms"] {
        Value::Null => None,
        n => Some(n.as_u64().ok_or_else(|| {
            ApiError::bad_request("invalid_field", "`scanned_at_ms` must be a whole number")
        })?),
    };
    Ok(ScanBody {
        code,
        gate,
        direction,
        scanned_at_ms,
    })
}

/// Decide on a code: the decision, durable before it is answered.
#[utoipa::path(post, path = "/api/scan", request_body = ScanBody,
    responses(
        (status = 200, description = "The decision (`verdict`, `reason`, `words`, `ticket`, `previous`, `scan_id`)", body = Object),
        (status = 400, description = "`malformed_json`, `missing_field`, `invalid_field`, `unknown_gate`", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 413, description = "`body_too_large`", body = ErrorBody),
        (status = 500, description = "`store_error`: the decision could not be made durable", body = ErrorBody),
        (status = 503, description = "`busy`", body = ErrorBody)),
    security(("token" = [])))]
pub(crate) async fn scan(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let access = authorize(&state, &headers, Need::Phone)?;
    let b = scan_body(&body_json(body)?)?;
    let origin = match (access, b.scanned_at_ms) {
        (Access::Phone { device, .. }, Some(ms)) => Some(format!(
            "{}{device}@{ms}",
            gatemesh_crdt::record::LIVE_ORIGIN_PREFIX
        )),
        _ => None,
    };
    call(&state, |reply| ApiCall::Scan {
        code: b.code,
        gate: b.gate,
        direction: b.direction,
        manual: false,
        origin,
        reply,
    })
    .await
}

/// Check in by hand a ticket found by search: the same policy and reasons as a scan, the
/// record marked `manual`.
#[utoipa::path(post, path = "/api/checkin", request_body = CheckinBody,
    responses(
        (status = 200, description = "The decision, as for a scan, with `manual: true`", body = Object),
        (status = 400, description = "`malformed_json`, `missing_field`, `invalid_field`, `unknown_gate`", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 413, description = "`body_too_large`", body = ErrorBody),
        (status = 503, description = "`busy`", body = ErrorBody)),
    security(("token" = [])))]
pub(crate) async fn checkin(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let access = authorize(&state, &headers, Need::Phone)?;
    supervisor(&state, &access, &headers).await?;
    let b = scan_body_with(&body_json(body)?, "ticket_id")?;
    call(&state, |reply| ApiCall::Scan {
        code: b.code,
        gate: b.gate,
        direction: b.direction,
        manual: true,
        origin: None,
        reply,
    })
    .await
}

/// The gates, zones or whole event the organizer paused (the scanner page asks every few
/// seconds and covers itself while its gate is stopped).
#[utoipa::path(get, path = "/api/pauses",
    responses(
        (status = 200, description = "`{\"paused\": [{\"scope\": \"event\"|\"zone\"|\"gate\", \"name\", \"since_ms\"}]}`", body = Object),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 503, description = "`busy`", body = ErrorBody)),
    security(("token" = [])))]
pub(crate) async fn pauses(
    State(state): State<ApiState>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    authorize(&state, &headers, Need::Phone)?;
    query(&state, Query::Pauses).await
}

/// `POST /api/annul` body: the admit to undo.
#[derive(Clone, Debug, utoipa::ToSchema)]
pub struct AnnulBody {
    pub ticket_id: String,
    /// The admit's `scan_id`, as its decision gave it.
    pub scan_id: String,
}

/// Undo an admit this node made, within two minutes (the holder did not walk through): the
/// ticket has its entry back on every node.
#[utoipa::path(post, path = "/api/annul", request_body = AnnulBody,
    responses(
        (status = 200, description = "`{\"annulled\": scan_id}`", body = Object),
        (status = 400, description = "`malformed_json`, `missing_field`, `not_annullable`", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 413, description = "`body_too_large`", body = ErrorBody),
        (status = 503, description = "`busy`", body = ErrorBody)),
    security(("token" = [])))]
pub(crate) async fn annul(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let access = authorize(&state, &headers, Need::Phone)?;
    supervisor(&state, &access, &headers).await?;
    let v = body_json(body)?;
    let text = |k: &str| {
        v[k].as_str().map(str::to_string).ok_or_else(|| {
            ApiError::bad_request("missing_field", format!("`{k}` (a string) is required"))
        })
    };
    let (ticket_id, scan_id) = (text("ticket_id")?, text("scan_id")?);
    let phone = match access {
        Access::Phone { device, .. } => Some(device),
        _ => None,
    };
    call(&state, |reply| ApiCall::Annul {
        ticket_id,
        scan_id,
        phone,
        reply,
    })
    .await
}

/// The event CA's certificate (public), to install on stewards' phones; `not_found` when the
/// event has none. Not in the OpenAPI document: a file for people, like the pages.
async fn ca_pem(State(state): State<ApiState>) -> Response {
    match &state.ca_pem {
        Some(pem) => (
            [(axum::http::header::CONTENT_TYPE, "application/x-pem-file")],
            pem.as_ref().clone(),
        )
            .into_response(),
        None => ApiError::new(StatusCode::NOT_FOUND, "not_found", "this event has no CA")
            .into_response(),
    }
}

/// Find tickets when a code will not scan: attendee name, order or ticket id, by word prefix,
/// accents and case ignored, at most 20.
#[utoipa::path(get, path = "/api/search",
    params(("q" = String, Query, description = "2 to 64 bytes: words of a name, an order reference or a ticket id")),
    responses(
        (status = 200, description = "`{\"tickets\": [...]}`: id, tier, name, order, notes, cancelled, inside, entries, entries_left", body = Object),
        (status = 400, description = "`missing_field`, `invalid_query`", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 503, description = "`busy`", body = ErrorBody)),
    security(("token" = [])))]
pub(crate) async fn search(
    State(state): State<ApiState>,
    headers: HeaderMap,
    params: Result<UrlQuery<HashMap<String, String>>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    authorize(&state, &headers, Need::Phone)?;
    let UrlQuery(mut params) =
        params.map_err(|e| ApiError::bad_request("invalid_field", e.body_text()))?;
    let q = params
        .remove("q")
        .ok_or_else(|| ApiError::bad_request("missing_field", "`q` is required"))?;
    query(&state, Query::Search(q)).await
}

/// One ticket: its records, legitimate entries, double entries, entries left.
#[utoipa::path(get, path = "/api/tickets/{id}", params(("id" = String, Path, description = "Ticket id")),
    responses(
        (status = 200, description = "The ticket's records and replay", body = Object),
        (status = 400, description = "`invalid_field`: the id is not text", body = ErrorBody),
        (status = 404, description = "`unknown_ticket`: no record of it", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 503, description = "`busy`", body = ErrorBody)),
    security(("token" = [])))]
pub(crate) async fn ticket(
    State(state): State<ApiState>,
    headers: HeaderMap,
    id: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> Result<Json<Value>, ApiError> {
    authorize(&state, &headers, Need::Staff)?;
    let Path(id) = id.map_err(|e| ApiError::bad_request("invalid_field", e.body_text()))?;
    query(&state, Query::Ticket(id)).await
}

/// Every double entry (`conflicts`).
#[utoipa::path(get, path = "/api/conflicts",
    responses(
        (status = 200, description = "Every double entry (`conflicts`)", body = Object),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 503, description = "`busy`", body = ErrorBody)),
    security(("token" = [])))]
pub(crate) async fn conflicts(
    State(state): State<ApiState>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    authorize(&state, &headers, Need::Staff)?;
    query(&state, Query::Conflicts).await
}

/// Heads, chains, records, peers, counters, the event's gates.
#[utoipa::path(get, path = "/api/status",
    responses(
        (status = 200, description = "Heads, chains, records, peers, counters, the event's gates", body = Object),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 503, description = "`busy`", body = ErrorBody)),
    security(("token" = [])))]
pub(crate) async fn status(
    State(state): State<ApiState>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    authorize(&state, &headers, Need::Phone)?;
    query(&state, Query::Status).await
}

/// Apply an organizer-signed bulletin and spread it to the mesh (the bulletin file as body).
#[utoipa::path(post, path = "/api/bulletins", request_body(content = Object, description = "The bulletin file"),
    responses(
        (status = 200, description = "`{\"accepted\": true}`", body = Object),
        (status = 400, description = "`bulletin_rejected`, `too_many_bulletins`", body = ErrorBody),
        (status = 401, description = "No valid admin token", body = ErrorBody),
        (status = 413, description = "`body_too_large`", body = ErrorBody),
        (status = 503, description = "`busy`", body = ErrorBody)),
    security(("token" = [])))]
pub(crate) async fn bulletin(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    authorize(&state, &headers, Need::Admin)?;
    let body = body_bytes(body)?;
    call(&state, |reply| ApiCall::Bulletin {
        bytes: body.to_vec(),
        reply,
    })
    .await
}

/// Ready: the node's loop runs (store open, event loaded) and is not stopping; `synced` says
/// whether it has caught up with its peers since it started (`status` `catching_up` until
/// then: it serves, and its answers carry `"synced": false`). Answered from flags the loop
/// sets, so probes (which need no token) never queue work on the loop.
#[utoipa::path(get, path = "/health/ready",
    responses(
        (status = 200, description = "`{\"status\": \"ready\" | \"catching_up\", \"synced\": bool}`", body = Object),
        (status = 503, description = "`not_ready`", body = ErrorBody)))]
pub(crate) async fn ready(State(state): State<ApiState>) -> Result<Json<Value>, ApiError> {
    use std::sync::atomic::Ordering;
    if state.ready.load(Ordering::Relaxed) {
        // Serving while it catches up (answers say `synced: false`), or caught up.
        let synced = state.synced.load(Ordering::Relaxed);
        let status = if synced { "ready" } else { "catching_up" };
        Ok(Json(json!({"status": status, "synced": synced})))
    } else {
        Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            "the node is starting or stopping",
        ))
    }
}

/// Totals, rates, by tier, hour, minute, gate, scanner and reason, inside now per zone, conflicts, peers.
#[utoipa::path(get, path = "/api/stats",
    responses(
        (status = 200, description = "Totals, rates, by tier, hour, minute, gate, scanner and reason, inside now per zone, conflicts, peers", body = Object),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 503, description = "`busy`", body = ErrorBody)),
    security(("token" = [])))]
pub(crate) async fn stats(
    State(state): State<ApiState>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    authorize(&state, &headers, Need::Staff)?;
    query(&state, Query::Stats).await
}

/// Enrolled peers seen: online, last seen (`peers`).
#[utoipa::path(get, path = "/api/peers",
    responses(
        (status = 200, description = "Enrolled peers seen: online, last seen (`peers`)", body = Object),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 503, description = "`busy`", body = ErrorBody)),
    security(("token" = [])))]
pub(crate) async fn peers(
    State(state): State<ApiState>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    authorize(&state, &headers, Need::Staff)?;
    query(&state, Query::Peers).await
}

/// The node's figures in the Prometheus (OpenMetrics) text format.
#[utoipa::path(get, path = "/metrics",
    responses(
        (status = 200, description = "OpenMetrics text", body = String, content_type = "application/openmetrics-text"),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 503, description = "`busy`", body = ErrorBody)),
    security(("token" = [])))]
pub(crate) async fn metrics(
    State(state): State<ApiState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&state, &headers, Need::Staff)?;
    let Json(text) = query(&state, Query::Metrics).await?;
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text.as_str().unwrap_or_default().to_string(),
    )
        .into_response())
}

/// Parse and check a reconcile body.
fn parse_reconcile(
    body: &[u8],
) -> Result<
    gatemesh_crdt::gate::offline::ReconcileRequest,
    gatemesh_crdt::gate::offline::RequestError,
> {
    let req: gatemesh_crdt::gate::offline::ReconcileRequest = serde_json::from_slice(body)
        .map_err(|e| {
            gatemesh_crdt::gate::offline::refuse("INVALID_REQUEST", format!("reconcile body: {e}"))
        })?;
    gatemesh_crdt::gate::offline::check_request(&req)?;
    Ok(req)
}

/// Errors of the seed's offline routes carry its `success: false` beside our fields.
fn offline_error(status: StatusCode, e: gatemesh_crdt::gate::offline::RequestError) -> Response {
    (
        status,
        Json(json!({"success": false, "error": e.code, "message": e.message})),
    )
        .into_response()
}

/// The seed's offline manifest, with current scan counts.
#[utoipa::path(get, path = "/offline/manifest/{event_id}",
    params(("event_id" = String, Path, description = "The event's id"),
        ("device_id" = String, Query, description = "The offline device asking")),
    responses(
        (status = 200, description = "`{\"success\": true, \"manifest\": ...}`", body = Object),
        (status = 400, description = "The seed's request errors", body = OfflineErrorBody),
        (status = 404, description = "`EVENT_NOT_FOUND`, `NO_MANIFEST`", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 503, description = "`busy`", body = ErrorBody)),
    security(("token" = [])))]
pub(crate) async fn offline_manifest(
    State(state): State<ApiState>,
    headers: HeaderMap,
    event_id: Result<Path<String>, axum::extract::rejection::PathRejection>,
    params: Result<UrlQuery<HashMap<String, String>>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    authorize(&state, &headers, Need::Staff)?;
    let invalid = |e: String| {
        offline_error(
            StatusCode::BAD_REQUEST,
            gatemesh_crdt::gate::offline::refuse("INVALID_REQUEST", e),
        )
    };
    let (Path(event_id), UrlQuery(params)) = match (event_id, params) {
        (Ok(p), Ok(q)) => (p, q),
        (Err(e), _) => return Ok(invalid(e.body_text())),
        (_, Err(e)) => return Ok(invalid(e.body_text())),
    };
    if let Err(e) =
        gatemesh_crdt::gate::offline::check_device_id(params.get("device_id").map(String::as_str))
    {
        return Ok(offline_error(StatusCode::BAD_REQUEST, e));
    }
    let Json(manifest) = query(&state, Query::OfflineManifest(event_id)).await?;
    Ok(Json(json!({"success": true, "manifest": manifest})).into_response())
}

/// The seed's reconcile: every scan through the gate's policy, each a record with its origin.
#[utoipa::path(post, path = "/offline/reconcile", request_body = gatemesh_crdt::gate::offline::ReconcileRequest,
    responses(
        (status = 200, description = "`success`, `reconciled`, `failed`, per scan `SUCCESS` / `DUPLICATE` / `ERROR`", body = Object),
        (status = 400, description = "The seed's request errors", body = OfflineErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "`UNKNOWN_DEVICE`: not one of the event's offline devices (the admin token may reconcile it)", body = ErrorBody),
        (status = 413, description = "`body_too_large`", body = ErrorBody),
        (status = 500, description = "`store_error`", body = ErrorBody),
        (status = 503, description = "`busy`", body = ErrorBody)),
    security(("token" = [])))]
pub(crate) async fn reconcile(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, ApiError> {
    let access = authorize(&state, &headers, Need::Phone)?;
    let body = body_bytes(body)?;
    let request = match parse_reconcile(&body) {
        Ok(r) => r,
        Err(e) => return Ok(offline_error(StatusCode::BAD_REQUEST, e)),
    };
    let by = match access {
        Access::Admin => Reconciler::Admin,
        Access::Staff => Reconciler::Staff,
        Access::Phone { device, since_ms } => Reconciler::Phone { device, since_ms },
    };
    let Json(v) = call(&state, |reply| ApiCall::Reconcile { request, by, reply }).await?;
    Ok(Json(v).into_response())
}

#[utoipa::path(get, path = "/api/stream",
    params(("token" = Option<String>, Query, description = "The staff token, for clients that cannot set headers")),
    responses(
        (status = 200, description = "Server-Sent Events: `scan`, `applied`, `stats`, `conflicts`, `peer_connected`, `peer_disconnected`, `lagged`", body = String, content_type = "text/event-stream"),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 503, description = "`too_many_streams`, `busy`", body = ErrorBody)),
    security(("token" = [])))]
/// Server-Sent Events: every scan, stats about every two seconds while they change, conflicts
/// when they change, peers coming and going. The token may come as `?token=` (a browser's
/// EventSource cannot set headers).
pub(crate) async fn stream(
    State(state): State<ApiState>,
    headers: HeaderMap,
    params: Result<UrlQuery<HashMap<String, String>>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let params = params.map(|UrlQuery(p)| p).unwrap_or_default();
    use axum::response::sse::{Event, KeepAlive, Sse};
    use std::sync::atomic::Ordering;
    let token = bearer(&headers).or(params.get("token").map(String::as_str));
    authorize_token(&state, token, Need::Staff)?;
    if state.streams_open.fetch_add(1, Ordering::SeqCst) >= STREAM_CLIENTS_MAX {
        state.streams_open.fetch_sub(1, Ordering::SeqCst);
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too_many_streams",
            format!("at most {STREAM_CLIENTS_MAX} streams at once"),
        ));
    }
    /// Gives the stream's slot back when the client goes away.
    struct Slot(std::sync::Arc<std::sync::atomic::AtomicUsize>);
    impl Drop for Slot {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::SeqCst);
        }
    }
    let slot = Slot(state.streams_open.clone());
    let rx = state.stream.subscribe();
    // A first stats event right away, so a fresh page has figures.
    let first = query(&state, Query::Stats).await.ok();
    let first = first.map(|Json(mut v)| {
        v["event"] = json!("stats");
        std::sync::Arc::new(v)
    });
    let events =
        futures::stream::unfold((rx, first, slot), |(mut rx, mut first, slot)| async move {
            let v = match first.take() {
                Some(v) => v,
                None => match rx.recv().await {
                    Ok(v) => v,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        std::sync::Arc::new(json!({"event": "lagged", "skipped": n}))
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                },
            };
            let kind = v["event"].as_str().unwrap_or("message").to_string();
            let event = Event::default().event(kind).data(v.to_string());
            Some((Ok::<_, std::convert::Infallible>(event), (rx, first, slot)))
        });
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}

#[utoipa::path(get, path = "/health/live",
    responses((status = 200, description = "`{\"status\": \"live\"}`", body = Object)))]
pub(crate) async fn live() -> Json<Value> {
    Json(json!({"status": "live"}))
}

/// The OpenAPI document of this API (no token: it holds no secret).
async fn openapi(State(s): State<ApiState>) -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        (s.openapi)(),
    )
        .into_response()
}
