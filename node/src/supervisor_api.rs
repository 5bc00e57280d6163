//! The supervisor's routes: pause or resume a gate (`POST /api/gate-pause`), and the audit of
//! every undo, hand check-in and gate pause with its device (`GET /api/audit`). Who may act as
//! a supervisor is [`crate::supervisor`]'s to say.

use axum::body::Bytes;
use axum::extract::{Query as UrlQuery, State};
use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::Value;
use std::collections::HashMap;

use crate::api::{authorize, body_json, call, query, supervisor, ApiCall, ApiError, ApiState};
use crate::api::{Need, Query};
use crate::apierror::ErrorBody;

/// The supervisor's routes, handed to `api::router` (which does not import this file).
pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/api/gate-pause", post(gate_pause))
        .route("/api/audit", get(audit))
}

/// Most actions one `GET /api/audit` returns.
pub const AUDIT_ROWS_MAX: usize = 500;

/// `POST /api/gate-pause` body.
#[derive(Clone, Debug, utoipa::ToSchema)]
pub struct GatePauseBody {
    /// The gate (default: the node's own).
    pub gate: Option<String>,
    /// `true` pauses the gate for five minutes from now (again: five minutes from then),
    /// `false` resumes it.
    pub paused: bool,
}

/// Pause a gate for five minutes (a supervisor's): every node of the mesh denies its entries
/// `paused` (exits go through) until the pause runs out or a supervisor resumes it. Signed by
/// this device; it spreads like any record and shows on every dashboard with who did it.
#[utoipa::path(post, path = "/api/gate-pause", request_body = GatePauseBody,
    params(("X-Supervisor-Pin" = Option<String>, Header, description = "The supervisor's PIN, when this device has one (and from a phone)")),
    responses(
        (status = 200, description = "`{\"gate\", \"paused\", \"until_ms\"}`", body = Object),
        (status = 400, description = "`malformed_json`, `missing_field`, `invalid_field`, `unknown_gate`", body = ErrorBody),
        (status = 401, description = "No valid token, or `pin_required`", body = ErrorBody),
        (status = 403, description = "`supervisor_only` (a steward's device or phone), `pin_wrong`", body = ErrorBody),
        (status = 429, description = "`pin_locked`: too many wrong PINs", body = ErrorBody),
        (status = 503, description = "`busy`", body = ErrorBody)),
    security(("token" = [])))]
pub(crate) async fn gate_pause(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let access = authorize(&state, &headers, Need::Phone)?;
    supervisor(&state, &access, &headers).await?;
    let v = body_json(body)?;
    let paused = v["paused"].as_bool().ok_or_else(|| {
        ApiError::bad_request("missing_field", "`paused` (true or false) is required")
    })?;
    let gate = match &v["gate"] {
        Value::Null => None,
        Value::String(g) => Some(g.clone()),
        _ => {
            return Err(ApiError::bad_request(
                "invalid_field",
                "`gate` must be a string",
            ))
        }
    };
    call(&state, |reply| ApiCall::PauseGate {
        gate,
        paused,
        reply,
    })
    .await
}

/// The latest supervisors' actions, newest first: undos, hand check-ins, gate pauses and
/// resumes, each with the device that signed it, its name and its role (a steward's device's
/// gate pause is listed as such: it stopped nothing).
#[utoipa::path(get, path = "/api/audit",
    params(("limit" = Option<usize>, Query, description = "At most this many (default and most: 500)")),
    responses(
        (status = 200, description = "`{\"actions\": [{\"action\", \"at_ms\", \"scan_id\", \"ticket_id\"?, \"gate\", \"device\", \"device_name\", \"role\"}]}`", body = Object),
        (status = 400, description = "`invalid_query`", body = ErrorBody),
        (status = 401, description = "No valid token (staff or admin)", body = ErrorBody),
        (status = 503, description = "`busy`", body = ErrorBody)),
    security(("token" = [])))]
pub(crate) async fn audit(
    State(state): State<ApiState>,
    headers: HeaderMap,
    UrlQuery(params): UrlQuery<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    authorize(&state, &headers, Need::Staff)?;
    let limit = match params.get("limit") {
        None => AUDIT_ROWS_MAX,
        Some(l) => l.parse::<usize>().ok().filter(|n| *n > 0).ok_or_else(|| {
            ApiError::bad_request("invalid_query", "`limit` is a whole number from 1")
        })?,
    };
    query(&state, Query::Audit(limit.min(AUDIT_ROWS_MAX))).await
}
