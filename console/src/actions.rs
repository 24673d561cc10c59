//! The operators' actions: each one checked (operator access, CSRF token), made through
//! the same requests as the `factum` command line ([`factum::store::operator`]), and
//! audited: a line in the service's log and an event in the store's.

use std::sync::Arc;

use axum::extract::rejection::FormRejection;
use axum::extract::{Path, State};
use axum::http::header::LOCATION;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Form};
use chrono::Utc;
use factum::store::operator::{self, OperatorError};
use factum::store::EventLog;
use factum::{ExpectedVersion, Metadata, NewEvent, StreamId};
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use crate::auth::{may_act, Principal};
use crate::page;
use crate::streams::encode;
use crate::Shared;

/// The aggregate type of the audit trail's streams (one per day).
pub(crate) const AUDIT_TYPE: &str = "ConsoleAudit";

#[derive(Debug, Default, Deserialize)]
pub(crate) struct ActionForm {
    #[serde(default)]
    csrf: String,
    /// `reset`: the position to go on after.
    to: Option<String>,
    /// `switch`, `retire`: the build, `VERSION` or `VERSION.BUILD`.
    build: Option<String>,
}

/// `POST {path}/projections/{name}/{action}`.
pub(crate) async fn projection(
    State(shared): State<Arc<Shared>>,
    Extension(principal): Extension<Principal>,
    Path((name, action)): Path<(String, String)>,
    form: Result<Form<ActionForm>, FormRejection>,
) -> Response {
    // A body that is not a form has no CSRF token either: refused as such below.
    let form = form.map(|f| f.0).unwrap_or_default();
    if let Err(refused) = may_act(&shared, &principal, &form.csrf) {
        audit(&shared, &principal, &action, &name, None, Err("refused")).await;
        return *refused;
    }
    let store = &shared.store;
    let (outcome, detail, done) = match action.as_str() {
        "rebuild" => (operator::rebuild(store, &name).await.map(drop), None, "rebuild"),
        "resume" => (operator::resume(store, &name).await.map(drop), None, "resume"),
        "retry" => (operator::retry(store, &name).await.map(drop), None, "retry"),
        "reset" => {
            let to = form.to.as_deref().unwrap_or("").trim().to_owned();
            let outcome = match to.parse::<u64>() {
                Ok(p) => operator::reset_to(store, &name, p).await.map(drop),
                Err(_) => Err(OperatorError::Invalid(factum::store::InvalidInput::OutOfRange {
                    field: "position",
                    reason: "a position is a whole number (0: the start)",
                })),
            };
            (outcome, Some(to), "reset")
        }
        "switch" | "retire" => {
            let spec = form.build.as_deref().unwrap_or("").trim().to_owned();
            let mut done = if action == "switch" { "switch" } else { "retire" };
            let outcome = match operator::parse_build(&name, &spec) {
                Ok(target) if action == "switch" => operator::switch(store, &target).await.map(|live| {
                    if live {
                        done = "switched";
                    }
                }),
                Ok(target) => operator::retire(store, &target).await,
                Err(e) => Err(e),
            };
            (outcome, Some(spec), done)
        }
        _ => return page::refusal(&shared, StatusCode::NOT_FOUND, "No such action."),
    };
    finish(&shared, &principal, &action, &name, detail, outcome, done).await
}

/// `POST {path}/projections/{name}/failures/{event_id}/skip`: forgets a recorded failure.
pub(crate) async fn skip(
    State(shared): State<Arc<Shared>>,
    Extension(principal): Extension<Principal>,
    Path((name, event_id)): Path<(String, Uuid)>,
    form: Result<Form<ActionForm>, FormRejection>,
) -> Response {
    let form = form.map(|f| f.0).unwrap_or_default();
    if let Err(refused) = may_act(&shared, &principal, &form.csrf) {
        audit(&shared, &principal, "skip", &name, Some(event_id.to_string()), Err("refused")).await;
        return *refused;
    }
    let outcome = operator::skip(&shared.store, &name, event_id).await;
    finish(&shared, &principal, "skip", &name, Some(event_id.to_string()), outcome, "skip").await
}

async fn finish(
    shared: &Shared,
    principal: &Principal,
    action: &str,
    name: &str,
    detail: Option<String>,
    outcome: Result<(), OperatorError>,
    done: &str,
) -> Response {
    match outcome {
        Ok(()) => {
            audit(shared, principal, action, name, detail, Ok(())).await;
            let to = format!("{}/projections/{}?done={done}", shared.config.path, encode(name));
            (StatusCode::SEE_OTHER, [(LOCATION, to)]).into_response()
        }
        Err(e) => {
            let status = match &e {
                OperatorError::NotFound(_) => StatusCode::NOT_FOUND,
                OperatorError::Invalid(_) => StatusCode::BAD_REQUEST,
                OperatorError::Refused(_) => StatusCode::CONFLICT,
                _ => StatusCode::SERVICE_UNAVAILABLE,
            };
            audit(shared, principal, action, name, detail, Err("failed")).await;
            page::refusal(shared, status, &e.to_string())
        }
    }
}

/// Writes an action to the service's log and, unless turned off, to the store's log: one
/// stream per day, `ConsoleAudit/<YYYY-MM-DD>`, event type `OperatorAction`.
async fn audit(
    shared: &Shared,
    principal: &Principal,
    action: &str,
    projection: &str,
    detail: Option<String>,
    outcome: Result<(), &str>,
) {
    let outcome = outcome.err().unwrap_or("done");
    let peer = principal.peer.map(|p| p.to_string());
    tracing::info!(
        target: "factum_console::audit",
        action,
        projection,
        detail = detail.as_deref(),
        outcome,
        access = ?principal.access,
        who = %principal.who,
        peer = peer.as_deref(),
        "console action"
    );
    if !shared.config.audit_in_log {
        return;
    }
    let day = Utc::now().format("%Y-%m-%d").to_string();
    let Ok(stream) = StreamId::new(AUDIT_TYPE, day) else { return };
    let payload = json!({
        "action": action,
        "projection": projection,
        "detail": detail,
        "outcome": outcome,
        "access": format!("{:?}", principal.access).to_lowercase(),
        "who": principal.who,
        "peer": peer,
    });
    let metadata = Metadata { user_id: Some("console".to_owned()), ..Metadata::default() };
    let event = NewEvent::new("OperatorAction", payload).with_metadata(metadata);
    if let Err(e) = shared.store.append(&stream, ExpectedVersion::Any, vec![event]).await {
        tracing::error!(target: "factum_console::audit", error = %e, action, projection, "the console action could not be written to the audit trail");
    }
}
