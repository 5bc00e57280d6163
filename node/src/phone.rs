//! The routes a steward's phone uses to keep scanning when its node stops answering, and the
//! one a supervisor pairs a phone with:
//! - `GET /offline/pack`: the event's rules as the gate policy reads them and the signed
//!   manifest, for the page's own decision (`node/web/gate.js`);
//! - `GET /offline/snapshot`: who has come in, compact and binary (`crdt::gate::snapshot`),
//!   refreshed by the page while it is online;
//! - `POST /api/phones` (admin): a pass for a new phone, signed by this node, with its pairing
//!   link and that link as a QR code.
//!
//! A phone shows its pass as its token; the offline scans it queued come back through the
//! seed's `POST /offline/reconcile` ([`crate::api`]).

use crate::api::{authorize, body_json, query, ApiCall, ApiError, ApiState, Need};
use crate::api::{OfflineAsk, Query};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

/// Longest page address a pairing link is built on.
pub const LINK_BASE_BYTES_MAX: usize = 256;

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/offline/pack", get(pack))
        .route("/offline/snapshot", get(snapshot))
        .route("/api/phones", post(pair))
}

async fn bytes(state: &ApiState, ask: OfflineAsk) -> Result<Bytes, ApiError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let busy = || {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            "the node is busy; try again",
        )
    };
    state
        .calls
        .try_send(ApiCall::Offline { ask, reply: tx })
        .map_err(|_| busy())?;
    match tokio::time::timeout(crate::api::API_WAIT_MAX, rx).await {
        Ok(Ok(r)) => r,
        _ => Err(busy()),
    }
}

/// What a phone decides by when its node does not answer: the event's gates, tiers and their
/// rules worked out (festival days as numbers), the credential readers' limits, and the
/// organizer-signed manifest as the organizer wrote it (the page checks its signature).
#[utoipa::path(get, path = "/offline/pack",
    responses(
        (status = 200, description = "`{\"pack\": {...}, \"manifest\": {\"key_id\", \"body\", \"signature\"} | null}`: the phone manifest (codes as hashes) as the organizer signed it", body = Object),
        (status = 401, description = "No valid token or pass (`unauthorized`, `unpaired`, `pass_*`)", body = crate::apierror::ErrorBody),
        (status = 503, description = "`busy`", body = crate::apierror::ErrorBody)),
    security(("token" = [])))]
pub(crate) async fn pack(
    State(state): State<ApiState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    serve(&state, &headers, OfflineAsk::Pack, "application/json").await
}

/// Who has come in, as the phone checks offline scans against it: `GMS1`, a postcard header
/// (rules in force, people inside each zone, pauses, gates), then 9 bytes per ticket
/// (`crdt::gate::snapshot`).
#[utoipa::path(get, path = "/offline/snapshot",
    responses(
        (status = 200, description = "The snapshot (binary)", body = Vec<u8>, content_type = "application/octet-stream"),
        (status = 401, description = "No valid token or pass", body = crate::apierror::ErrorBody),
        (status = 503, description = "`busy`", body = crate::apierror::ErrorBody)),
    security(("token" = [])))]
pub(crate) async fn snapshot(
    State(state): State<ApiState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    serve(
        &state,
        &headers,
        OfflineAsk::Snapshot,
        "application/octet-stream",
    )
    .await
}

/// A phone's download: its token or pass checked, the bytes never cached.
async fn serve(
    state: &ApiState,
    headers: &HeaderMap,
    ask: OfflineAsk,
    kind: &'static str,
) -> Result<Response, ApiError> {
    authorize(state, headers, Need::Phone)?;
    let body = bytes(state, ask).await?;
    let head = [
        (header::CONTENT_TYPE, kind),
        (header::CACHE_CONTROL, "no-store"),
    ];
    Ok((head, body).into_response())
}

/// `POST /api/phones` body.
#[derive(Clone, Debug, utoipa::ToSchema)]
pub struct PairBody {
    /// What the supervisor calls the phone (`phone-7`): its device id adds a dash and four
    /// hex digits.
    pub name: String,
    /// The scanner page's address the pairing link opens (`https://gate-a.local:8443`);
    /// without it, the answer has no link or QR code, only the pass.
    pub link_base: Option<String>,
}

/// Pair a phone: a pass signed by this node for a new phone device id, its pairing link and
/// the link as an SVG QR code. The phone opens the link (or scans the code) once.
#[utoipa::path(post, path = "/api/phones", request_body = PairBody,
    responses(
        (status = 200, description = "`{\"device_id\", \"pass\", \"link\"?, \"qr_svg\"?}`", body = Object),
        (status = 400, description = "`malformed_json`, `missing_field`, `invalid_field`", body = crate::apierror::ErrorBody),
        (status = 401, description = "No valid admin token", body = crate::apierror::ErrorBody),
        (status = 503, description = "`busy`", body = crate::apierror::ErrorBody)),
    security(("token" = [])))]
pub(crate) async fn pair(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    authorize(&state, &headers, Need::Admin)?;
    let v = body_json(body)?;
    let name = v["name"]
        .as_str()
        .ok_or_else(|| ApiError::bad_request("missing_field", "`name` (a string) is required"))?
        .to_string();
    let base = match &v["link_base"] {
        Value::Null => None,
        Value::String(b) => Some(link_base(b)?),
        _ => {
            return Err(ApiError::bad_request(
                "invalid_field",
                "`link_base` must be a string",
            ))
        }
    };
    let Json(mut paired) = query(&state, Query::PairPhone(name)).await?;
    if let Some(base) = base {
        let pass = paired["pass"].as_str().unwrap_or_default();
        let link = format!("{base}/#pair={pass}");
        let svg = crate::qr::svg(&link)
            .map_err(|e| ApiError::bad_request("invalid_field", e.to_string()))?;
        paired["link"] = json!(link);
        paired["qr_svg"] = json!(svg);
    }
    Ok(Json(paired))
}

/// A page address a pairing link may start with: `http://` or `https://`, a host, no path
/// beyond `/`, no spaces, at most [`LINK_BASE_BYTES_MAX`] bytes.
fn link_base(b: &str) -> Result<String, ApiError> {
    let b = b.trim_end_matches('/');
    let rest = b
        .strip_prefix("https://")
        .or_else(|| b.strip_prefix("http://"));
    let ok = b.len() <= LINK_BASE_BYTES_MAX
        && rest.is_some_and(|r| {
            !r.is_empty()
                && r.bytes()
                    .all(|c| c.is_ascii_alphanumeric() || b".-:[]".contains(&c))
        });
    if !ok {
        return Err(ApiError::bad_request(
            "invalid_field",
            "`link_base` is the page's address, http(s)://host[:port]",
        ));
    }
    Ok(b.to_string())
}
