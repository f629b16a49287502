//! The rotation rules: [`plan`] decides what the Secret should hold, [`next_check`] when to look
//! again (see the parent module's docs for the rules themselves).

use std::time::Duration;

use jiff::Timestamp;

use super::inspect::{CaState, Serving};
use super::*;

/// What to do with the Secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// It is fine as it is.
    Keep,
    /// Write this material; `reason` is one of [`reason`]'s constants.
    Write {
        material: Material,
        reason: &'static str,
    },
}

/// Decides what the Secret should hold at `now` (see the module docs for the rules). `current` is
/// the Secret's content, `None` when there is none. Fails only on settings that cannot produce a
/// certificate, or when key generation fails; never on what the Secret holds.
pub fn plan(
    now: Timestamp,
    current: Option<&Material>,
    settings: &CertSettings,
) -> Result<Plan, CertError> {
    settings.check()?;
    let now_s = now.as_second();
    match decide(now, current, settings) {
        Action::Keep(_) => Ok(Plan::Keep),
        Action::Fresh(reason) => {
            let ca = issue::ca(now_s, settings.ca_validity)?;
            let serving = issue::serving(now_s, settings, &ca.der, ca.not_after_s, &ca.key)?;
            Ok(Plan::Write {
                material: Material {
                    ca_bundle_pem: ca.cert_pem,
                    ca_key_pem: ca.key.serialize_pem(),
                    cert_pem: serving.cert_pem,
                    key_pem: serving.key_pem,
                    ca_published_at: Some(now),
                },
                reason,
            })
        }
        Action::RotateCa {
            state,
            reissue_serving,
        } => {
            let m = state.material;
            let (cert_pem, key_pem) = if reissue_serving {
                // From the old CA: the API server trusts it now; we hold its key only until the
                // new CA replaces it below.
                let old = state.ca.current();
                let s =
                    issue::serving(now_s, settings, &old.der, old.not_after_s(), &state.ca.key)?;
                (s.cert_pem, s.key_pem)
            } else {
                (m.cert_pem.clone(), m.key_pem.clone())
            };
            let ca = issue::ca(now_s, settings.ca_validity)?;
            let now_ns = now.as_nanosecond();
            let mut bundle = ca.cert_pem;
            for entry in state.ca.bundle.iter().filter(|e| now_ns < e.info.not_after) {
                bundle.push_str(&entry.pem);
            }
            Ok(Plan::Write {
                material: Material {
                    ca_bundle_pem: bundle,
                    ca_key_pem: ca.key.serialize_pem(),
                    cert_pem,
                    key_pem,
                    ca_published_at: Some(now),
                },
                reason: reason::CA_EXPIRES_SOON,
            })
        }
        Action::Update {
            state,
            reissue_serving,
            keep_previous,
            reason,
        } => {
            let m = state.material;
            let (cert_pem, key_pem) = if reissue_serving {
                let ca = state.ca.current();
                let s = issue::serving(now_s, settings, &ca.der, ca.not_after_s(), &state.ca.key)?;
                (s.cert_pem, s.key_pem)
            } else {
                (m.cert_pem.clone(), m.key_pem.clone())
            };
            let ca_bundle_pem = if keep_previous.iter().all(|k| *k) {
                m.ca_bundle_pem.clone()
            } else {
                let mut bundle = state.ca.bundle[0].pem.clone();
                for (entry, keep) in state.ca.bundle[1..].iter().zip(&keep_previous) {
                    if *keep {
                        bundle.push_str(&entry.pem);
                    }
                }
                bundle
            };
            Ok(Plan::Write {
                material: Material {
                    ca_bundle_pem,
                    ca_key_pem: m.ca_key_pem.clone(),
                    cert_pem,
                    key_pem,
                    ca_published_at: Some(ns_to_timestamp(state.ca.published_at)),
                },
                reason,
            })
        }
    }
}

/// How long until [`plan`] may decide something new for `current`, assuming `current` is what
/// [`plan`] just kept or wrote: the earliest future moment at which a certificate becomes due or
/// expires, a new CA becomes propagated, or a previous CA may be retired; at most
/// [`MAX_CHECK_INTERVAL`]. Zero when `current` needs a write right now (e.g. unreadable).
pub fn next_check(now: Timestamp, current: &Material, settings: &CertSettings) -> Duration {
    let Action::Keep(state) = decide(now, Some(current), settings) else {
        return Duration::ZERO;
    };
    let now_ns = now.as_nanosecond();
    let p = duration_ns(settings.propagation);
    let ca = state.ca.current();
    let mut events = vec![
        ca.renew_at(),
        ca.not_after,
        state.ca.published_at.saturating_add(p),
    ];
    if let Ok(s) = &state.serving {
        events.extend([
            s.info.renew_at(),
            s.info.not_after,
            s.info.issued().saturating_add(p),
        ]);
    }
    events.extend(state.ca.bundle[1..].iter().map(|e| e.info.not_after));
    let max = duration_ns(MAX_CHECK_INTERVAL);
    let wait = events
        .into_iter()
        .filter(|t| *t > now_ns)
        .map(|t| t - now_ns)
        .min()
        .map_or(max, |d| d.min(max));
    Duration::from_nanos(u64::try_from(wait).unwrap_or(u64::MAX))
}

/// What [`plan`] decided, before any key is generated.
enum Action<'a> {
    Keep(State<'a>),
    /// New CA and serving certificate.
    Fresh(&'static str),
    /// A new CA in front of the bundle; the serving certificate re-issued from the old CA if true.
    RotateCa {
        state: State<'a>,
        reissue_serving: bool,
    },
    /// Same CA; the serving certificate re-issued from it if true; previous CAs (bundle[1..])
    /// kept where true.
    Update {
        state: State<'a>,
        reissue_serving: bool,
        keep_previous: Vec<bool>,
        reason: &'static str,
    },
}

/// The Secret, read.
struct State<'a> {
    material: &'a Material,
    ca: CaState,
    serving: Result<Serving, CertError>,
}

/// A reason to re-issue the serving certificate; `urgent` when it cannot work as it is.
struct Problem {
    reason: &'static str,
    urgent: bool,
}

fn decide<'a>(
    now: Timestamp,
    current: Option<&'a Material>,
    settings: &CertSettings,
) -> Action<'a> {
    let Some(material) = current else {
        return Action::Fresh(reason::CREATED);
    };
    let Ok(ca) = CaState::read(material) else {
        return Action::Fresh(reason::UNREADABLE);
    };
    let now_ns = now.as_nanosecond();
    if now_ns >= ca.current().not_after {
        return Action::Fresh(reason::CA_EXPIRED);
    }
    let serving = Serving::read(material, &ca.bundle);
    let state = State {
        material,
        ca,
        serving,
    };
    let p = duration_ns(settings.propagation);
    let propagated = now_ns >= state.ca.published_at.saturating_add(p);
    let problem = serving_problem(now_ns, &state.serving, settings);

    // Rule 3: CA rotation.
    if now_ns >= state.ca.current().renew_at() {
        // Re-issue from the old CA now what would otherwise come due while the new one propagates.
        let due_soon = state
            .serving
            .as_ref()
            .is_ok_and(|s| s.info.renew_at() < now_ns.saturating_add(p));
        let reissue_serving = problem.is_some() || due_soon;
        return Action::RotateCa {
            state,
            reissue_serving,
        };
    }

    // Rule 4: the serving certificate.
    let served_signer = state.serving.as_ref().ok().and_then(|s| s.signer);
    let mut reason = None;
    let mut reissue_serving = false;
    if let Some(problem) = problem
        && (problem.urgent || propagated || served_signer == Some(0))
    {
        reissue_serving = true;
        reason = Some(problem.reason);
    }
    // After rule 4, the served certificate is signed by a CA of the bundle: either it was already
    // (only urgent problems leave it otherwise, and they re-issue), or it is re-issued now.
    let (signer, issued) = match (&state.serving, reissue_serving) {
        (Ok(s), false) => (s.signer, s.info.issued()),
        _ => (Some(0), now_ns),
    };

    // Rule 5: retire previous CAs.
    let keep_previous: Vec<bool> = state.ca.bundle[1..]
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let expired = now_ns >= e.info.not_after;
            let unused = signer.is_some_and(|s| s != i + 1) && now_ns >= issued.saturating_add(p);
            !(expired || unused)
        })
        .collect();
    if keep_previous.iter().any(|k| !k) {
        reason.get_or_insert(reason::PREVIOUS_CA_RETIRED);
    }

    match reason {
        None => Action::Keep(state),
        Some(reason) => Action::Update {
            state,
            reissue_serving,
            keep_previous,
            reason,
        },
    }
}

fn serving_problem(
    now_ns: i128,
    serving: &Result<Serving, CertError>,
    settings: &CertSettings,
) -> Option<Problem> {
    let s = match serving {
        Ok(s) => s,
        Err(_) => {
            return Some(Problem {
                reason: reason::UNREADABLE,
                urgent: true,
            });
        }
    };
    let urgent = |reason| {
        Some(Problem {
            reason,
            urgent: true,
        })
    };
    let patient = |reason| {
        Some(Problem {
            reason,
            urgent: false,
        })
    };
    if now_ns >= s.info.not_after {
        return urgent(reason::SERVING_EXPIRED);
    }
    if s.signer.is_none() {
        return urgent(reason::SERVING_UNTRUSTED);
    }
    if s.info.names != settings.names() {
        return patient(reason::NAMES_CHANGED);
    }
    if now_ns >= s.info.renew_at() {
        return patient(reason::SERVING_EXPIRES_SOON);
    }
    let longest = now_ns
        .saturating_add(duration_ns(settings.cert_validity))
        .saturating_add(duration_ns(BACKDATE));
    if s.info.not_after > longest {
        return patient(reason::VALIDITY_CHANGED);
    }
    if s.signer != Some(0) {
        return patient(reason::CA_ROTATED);
    }
    None
}
