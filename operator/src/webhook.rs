//! The admission webhooks, served over HTTPS by every replica:
//!
//! * `POST /mutate/pods`: injects the proxy into opted-in pods ([`crate::inject::inject`] decides;
//!   `mutate` only decodes, looks up the namespace and the policy, and diffs the result into a patch);
//! * `POST /validate/mcpguardpolicies`: refuses a policy that does not compile, listing every error
//!   with its field path (`validate`);
//! * `GET /healthz`.
//!
//! `register` keeps both webhook configurations pointing at this server with the current CA, and
//! `rotation` keeps the serving certificate current.

mod mutate;
pub mod register;
pub mod rotation;
mod validate;

use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::Router;
use axum::http::StatusCode;
use axum::routing::{get, post};
use k8s_openapi::api::core::v1::Namespace;
use kube::Client;
use kube::api::DynamicObject;
use kube::core::admission::{AdmissionResponse, AdmissionReview};
use kube::runtime::reflector::Store;

use crate::inject::InjectConfig;
use crate::metrics::{AdmissionResult, Metrics};

/// Path of the pod-mutating webhook.
pub const MUTATE_PODS: &str = "/mutate/pods";
/// Path of the policy-validating webhook.
pub const VALIDATE_POLICIES: &str = "/validate/mcpguardpolicies";

/// What the handlers share.
pub struct State {
    pub client: Client,
    pub inject: InjectConfig,
    pub metrics: Arc<Metrics>,
    /// Namespaces (labels and annotations opt pods in); a miss falls back to a GET.
    pub namespaces: Store<Namespace>,
    /// Policies (a pod must name one that exists); a miss falls back to a GET.
    pub policies: Store<DynamicObject>,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("inject", &self.inject)
            .finish_non_exhaustive()
    }
}

/// The webhook routes.
pub fn router(state: Arc<State>) -> Router {
    let s1 = state.clone();
    Router::new()
        .route(
            MUTATE_PODS,
            post(move |body: axum::body::Bytes| {
                let state = s1.clone();
                async move {
                    let started = Instant::now();
                    let out = mutate::review(&state, &body).await;
                    answer(&state, "mutate-pods", out, started)
                }
            }),
        )
        .route(
            VALIDATE_POLICIES,
            post(move |body: axum::body::Bytes| {
                let state = state.clone();
                async move {
                    let started = Instant::now();
                    let out = validate::review(&body);
                    answer(&state, "validate-policies", out, started)
                }
            }),
        )
        .route("/healthz", get(|| async { "ok\n" }))
}

/// A handler's outcome: the response and how to count it, or why the request could not be read.
type Reviewed = Result<(AdmissionResponse, AdmissionResult), String>;

/// Counts the outcome and wraps it: an `AdmissionReview`, or a 400 for a request that is not one
/// (the API server then applies the webhook's failurePolicy).
fn answer(
    state: &State,
    webhook: &'static str,
    out: Reviewed,
    started: Instant,
) -> (StatusCode, Json<serde_json::Value>) {
    match out {
        Ok((resp, result)) => {
            state.metrics.admission(webhook, result, started.elapsed());
            let review: AdmissionReview<DynamicObject> = resp.into_review();
            match serde_json::to_value(&review) {
                Ok(v) => (StatusCode::OK, Json(v)),
                Err(e) => (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    Json(serde_json::json!({"error": e.to_string()})),
                ),
            }
        }
        Err(message) => {
            state
                .metrics
                .admission(webhook, AdmissionResult::Error, started.elapsed());
            tracing::warn!(webhook, %message, "unreadable admission request");
            (
                StatusCode::BAD_REQUEST,
                Json(serde_json::json!({"error": message})),
            )
        }
    }
}
