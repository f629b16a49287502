//! The guard: what every transport calls for each frame. Transport-independent and synchronous; a
//! frame goes in, and out come what to forward and what to answer directly.
//!
//! Client -> server: `tools/call` is judged (tools, rules, credential leak, rate limit, sequences) and
//! either forwarded or answered with a JSON-RPC error carrying the request's id and the rule; other
//! requests are tracked so their answers can be recognised. Server -> client: `tools/list` answers
//! record the declared tools; `tools/call` answers may be scanned (credential leak in results) and
//! replaced by an error; everything else passes unchanged, byte for byte.

use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use mcp_guard_policy::Mode;
use std::time::Duration;

use mcp_guard_policy::spec::{AskFallback, AskVia};
use serde::Serialize;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::ask::{Answer, HeldCall};
use crate::audit::Audit;
use crate::decision::{Decision, Verdict};
use crate::engine::Engine;
use crate::jsonrpc::{self, Envelope, Frame, Kind, ToolCallParams, code};
use crate::metrics::{CallLabels, FindingLabels, Metrics};
use crate::session::{CallInFlight, MAX_PENDING, Pending, Phase, SessionState};
use crate::summary::Summary;

/// Longest argument text kept in an audit record.
pub const AUDIT_ARGS_MAX: usize = 2048;

/// What to do with a frame.
#[derive(Debug, PartialEq, Eq)]
pub enum Forward {
    /// Forward the frame exactly as received.
    Original,
    /// Forward this instead (a batch with some items removed, a result replaced by an error).
    Replaced(String),
    /// Forward nothing.
    Nothing,
}

/// The result of processing one frame.
#[derive(Debug, PartialEq, Eq)]
pub struct Outcome {
    pub forward: Forward,
    /// An answer to send back to the frame's sender (a blocked call's error, a parse error).
    pub reply: Option<String>,
}

impl Outcome {
    fn pass() -> Self {
        Self {
            forward: Forward::Original,
            reply: None,
        }
    }
}

/// Shared by every session of one proxy process.
#[derive(Debug)]
pub struct Guard {
    engine: ArcSwap<Engine>,
    mode_override: Option<Mode>,
    pub audit: Audit,
    pub metrics: Arc<Metrics>,
    pub summary: Summary,
    pub kill_switch: crate::killswitch::KillSwitch,
    epoch: Instant,
    /// OpenTelemetry spans and logs (off unless configured; see `otel`).
    pub otel: crate::otel::Otel,
}

/// What one message (a batch item or a single frame) becomes.
struct MessageOutcome {
    pass: Pass,
    reply: Option<String>,
}

/// What to forward for one message.
enum Pass {
    /// The message as received.
    Item,
    /// This instead (e.g. a held call, released by the client's approval).
    Instead(String),
    /// Nothing.
    Drop,
}

impl MessageOutcome {
    fn forward() -> Self {
        Self {
            pass: Pass::Item,
            reply: None,
        }
    }

    fn answer(reply: String) -> Self {
        Self {
            pass: Pass::Drop,
            reply: Some(reply),
        }
    }
}

impl Guard {
    pub fn new(
        engine: Engine,
        mode_override: Option<Mode>,
        audit: Audit,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            engine: ArcSwap::from_pointee(engine),
            mode_override,
            audit,
            metrics,
            summary: Summary::default(),
            kill_switch: Default::default(),
            epoch: Instant::now(),
            otel: Default::default(),
        }
    }

    /// OpenTelemetry export for the calls this guard judges.
    pub fn with_otel(mut self, otel: crate::otel::Otel) -> Self {
        self.otel = otel;
        self
    }

    /// Swaps in a new policy; sessions keep their state, and the next decision uses the new policy.
    pub fn set_engine(&self, engine: Engine) {
        self.engine.store(Arc::new(engine));
    }

    pub fn engine(&self) -> Arc<Engine> {
        self.engine.load_full()
    }

    fn mode(&self, engine: &Engine) -> Mode {
        self.mode_override.unwrap_or_else(|| engine.mode())
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    // === client -> server ===

    /// Processes one frame from the client.
    pub fn client_frame(&self, session: &mut SessionState, text: &str) -> Outcome {
        self.client_frame_traced(session, text, None)
    }

    /// [`Guard::client_frame`] for a frame that came with W3C trace context headers (HTTP), which
    /// the calls' spans continue unless a call carries its own in `params._meta`.
    pub fn client_frame_traced(
        &self,
        session: &mut SessionState,
        text: &str,
        remote: Option<&crate::otel::Remote<'_>>,
    ) -> Outcome {
        let started = Instant::now();
        self.metrics.frames.client_to_server.inc();
        self.summary.message_in();
        session.detect.usage.bytes_in += text.len() as u64;
        let outcome = match jsonrpc::parse_frame(text) {
            Err(e) => {
                self.metrics.frames.malformed_client_to_server.inc();
                Outcome {
                    forward: Forward::Nothing,
                    reply: Some(jsonrpc::error_response(
                        None,
                        code::PARSE_ERROR,
                        &e.to_string(),
                        None,
                    )),
                }
            }
            Ok(Frame::Single(env)) => {
                let m = self.client_message(session, &env, text, false, started, remote);
                Outcome {
                    forward: match m.pass {
                        Pass::Item => Forward::Original,
                        Pass::Instead(t) => Forward::Replaced(t),
                        Pass::Drop => Forward::Nothing,
                    },
                    reply: m.reply,
                }
            }
            Ok(Frame::Batch(items)) => {
                let mut forwarded = Vec::new();
                let mut replies = Vec::new();
                let mut changed = false;
                for (raw, env) in &items {
                    let m = self.client_message(session, env, raw.get(), true, started, remote);
                    match m.pass {
                        Pass::Item => forwarded.push(raw.get().to_owned()),
                        Pass::Instead(t) => {
                            changed = true;
                            forwarded.push(t);
                        }
                        Pass::Drop => changed = true,
                    }
                    replies.extend(m.reply);
                }
                let forward = match (changed, forwarded.is_empty()) {
                    (false, _) => Forward::Original,
                    (true, true) => Forward::Nothing,
                    (true, false) => Forward::Replaced(format!("[{}]", forwarded.join(","))),
                };
                Outcome {
                    forward,
                    reply: jsonrpc::join_batch(replies),
                }
            }
        };
        self.metrics
            .added_latency
            .observe(started.elapsed().as_secs_f64());
        outcome
    }

    /// One message from the client; `raw` is its text (the frame, or the batch item).
    /// `in_batch`: the message is an item of a batch; such calls are never held for asking (the
    /// answer to a held call must travel alone, and batches left MCP in 2025-06-18), so they get the
    /// fallback.
    fn client_message(
        &self,
        session: &mut SessionState,
        env: &Envelope<'_>,
        raw: &str,
        in_batch: bool,
        started: Instant,
        remote: Option<&crate::otel::Remote<'_>>,
    ) -> MessageOutcome {
        if env.kind() == Kind::Response
            && let Some(id) = env.id_text()
            && id.starts_with(&format!("\"{}", crate::ask::ID_PREFIX))
        {
            return self.ask_answered(session, id, env);
        }
        if env.kind() != Kind::Request {
            return MessageOutcome::forward();
        }
        let id = env.id_text().unwrap_or("null");
        let method = env.method.as_deref().unwrap_or_default();
        if method == "initialize" {
            session
                .asks
                .observe_initialize(env.params.map(RawValue::get));
            session.phase = Phase::Initializing;
        }
        let pending = match method {
            "initialize" => Pending::Initialize,
            "tools/call" => {
                return self.tools_call(session, env, id, raw, in_batch, started, remote);
            }
            "tools/list" => Pending::ToolsList {
                first_page: !env.params.is_some_and(|p| p.get().contains("\"cursor\"")),
            },
            _ => Pending::Other,
        };
        track(session, id, pending);
        MessageOutcome::forward()
    }

    #[allow(clippy::too_many_arguments)]
    fn tools_call(
        &self,
        session: &mut SessionState,
        env: &Envelope<'_>,
        id: &str,
        raw: &str,
        in_batch: bool,
        started: Instant,
        remote: Option<&crate::otel::Remote<'_>>,
    ) -> MessageOutcome {
        let params: ToolCallParams = match env.params.map(|p| serde_json::from_str(p.get())) {
            Some(Ok(p)) => p,
            Some(Err(e)) => {
                return self.invalid_call(id, &format!("invalid tools/call params: {e}"));
            }
            None => return self.invalid_call(id, "tools/call without params"),
        };
        let engine = self.engine();
        let mode = self.mode(&engine);
        let args = params.arguments.unwrap_or(Value::Null);
        let now = self.now_ms();
        let decision = engine.judge_call(
            &session.detect,
            &params.name,
            &args,
            session.declared.as_ref(),
            now,
        );
        let decision = match lifecycle_finding(session) {
            Some(f) => decision.with_finding(f),
            None => decision,
        };
        let (decision, mode) = self.apply_kill_switch(decision, mode);
        self.count_decision(&params.name, &decision, mode);
        // The redacted copy is for the audit log and for the question a user may be asked.
        let args_text = if self.audit.is_enabled() || decision.verdict == Verdict::Ask {
            audit_args(&engine, &args)
        } else {
            String::new()
        };
        let taint_source = engine.is_taint_source(&params.name, &args);
        // OpenTelemetry: the call's span from here to its end in `finish` (nothing when off).
        let span = self.otel.start_call(&crate::otel::CallStart {
            started,
            session: &session.id,
            id,
            tool: &params.name,
            decision: &decision,
            mode,
            engine: &engine,
            params: env.params,
            remote,
        });
        let mut call = CallInFlight {
            tool: params.name,
            args: args_text,
            decision,
            outcome: "",
            forwarded_at: started,
            decide_us: 0,
            taint_source,
            span,
        };
        if mode == Mode::Enforce && call.decision.verdict == Verdict::Ask {
            let policy = engine.policy();
            let digest = crate::ask::digest(&call.tool, &args);
            let generation = policy.source.generation;
            if session.asks.approved(&digest, generation, Instant::now()) {
                call.decide_us = micros(started);
                self.record_forwarded(session, &engine, id, call, "ask-approved", now);
                return MessageOutcome::forward();
            }
            if policy.ask.via == AskVia::Elicitation && session.asks.can_ask() && !in_batch {
                let message = ask_message(&engine, &call);
                let held = HeldCall {
                    id: id.to_owned(),
                    raw: raw.to_owned(),
                    tool: call.tool,
                    args_text: call.args,
                    decision: call.decision,
                    decide_us: micros(started),
                    digest,
                    generation,
                    deadline: Instant::now() + Duration::from_millis(policy.ask.timeout_ms),
                    taint_source: call.taint_source,
                    span: call.span,
                };
                return MessageOutcome::answer(session.asks.ask(held, &message));
            }
        }
        let (forward, outcome) = enforce(&call.decision, mode, engine.policy().ask.fallback);
        call.decide_us = micros(started);
        if forward {
            self.record_forwarded(session, &engine, id, call, outcome, now);
            MessageOutcome::forward()
        } else {
            MessageOutcome::answer(self.refuse(session, &engine, mode, id, call, outcome, None))
        }
    }

    /// A call on its way to the server: detector state advances, its answer is awaited.
    fn record_forwarded(
        &self,
        session: &mut SessionState,
        engine: &Engine,
        id: &str,
        mut call: CallInFlight,
        outcome: &'static str,
        now_ms: u64,
    ) {
        engine.record_call(&mut session.detect, &call.tool, now_ms);
        call.outcome = outcome;
        call.forwarded_at = Instant::now();
        track(session, id, Pending::ToolsCall(Box::new(call)));
    }

    /// A call that is not forwarded: summarised, audited, and answered with the error returned.
    #[allow(clippy::too_many_arguments)]
    fn refuse(
        &self,
        session: &SessionState,
        engine: &Engine,
        mode: Mode,
        id: &str,
        mut call: CallInFlight,
        outcome: &'static str,
        why: Option<&str>,
    ) -> String {
        self.finish(engine, mode, session, id, &mut call, outcome, None, None);
        blocked_response(engine, id, &call.decision, why)
    }

    /// The end of a call's story: counted in the summary and written to the audit log.
    #[allow(clippy::too_many_arguments)]
    fn finish(
        &self,
        engine: &Engine,
        mode: Mode,
        session: &SessionState,
        id: &str,
        call: &mut CallInFlight,
        outcome: &'static str,
        upstream_ms: Option<f64>,
        result: Option<&Decision>,
    ) {
        // OpenTelemetry: the span ends; blocks and asks become log records (nothing when off).
        self.otel.end_call(
            call,
            &crate::otel::CallEnd {
                engine,
                mode,
                session: &session.id,
                id,
                outcome,
                upstream_ms,
                result,
            },
        );
        self.summary
            .call(&call.tool, &call.decision, outcome, call.decide_us);
        self.audit.write(&CallRecord::new(
            engine,
            mode,
            session,
            id,
            &call.tool,
            &call.args,
            &call.decision,
            outcome,
            call.decide_us,
            upstream_ms,
            result,
        ));
    }

    /// The client's answer to our `elicitation/create`: release, refuse, or fall back.
    fn ask_answered(
        &self,
        session: &mut SessionState,
        id: &str,
        env: &Envelope<'_>,
    ) -> MessageOutcome {
        let engine = self.engine();
        let mode = self.mode(&engine);
        let result = env.result.map(RawValue::get);
        let Some((held, answer)) = session.asks.resolve(id, result, Instant::now()) else {
            // An answer to an ask that already timed out: it was ours, not the server's.
            return MessageOutcome {
                pass: Pass::Drop,
                reply: None,
            };
        };
        let fallback_allows = engine.policy().ask.fallback == AskFallback::Allow;
        let (forward, outcome, why) = match answer {
            Answer::Accept => (true, "ask-approved", None),
            Answer::Decline => (false, "ask-declined", Some("the user declined it")),
            Answer::Failed if fallback_allows => (true, "ask-failed-allowed", None),
            Answer::Failed => (
                false,
                "ask-failed-blocked",
                Some("the client could not ask the user"),
            ),
        };
        let (mut call, held_id, held_raw) = release(held);
        call.outcome = outcome;
        if forward {
            let now = self.now_ms();
            self.record_forwarded(session, &engine, &held_id, call, outcome, now);
            MessageOutcome {
                pass: Pass::Instead(held_raw),
                reply: None,
            }
        } else {
            MessageOutcome::answer(
                self.refuse(session, &engine, mode, &held_id, call, outcome, why),
            )
        }
    }

    /// Held calls whose `spec.ask.timeout` passed get `spec.ask.fallback`. Returns the answers for the
    /// client and the calls to forward to the server. Transports call this a few times a second.
    pub fn expire_asks(&self, session: &mut SessionState) -> (Vec<String>, Vec<String>) {
        let expired = session.asks.expire(Instant::now());
        let (mut to_client, mut to_server) = (Vec::new(), Vec::new());
        if expired.is_empty() {
            return (to_client, to_server);
        }
        let engine = self.engine();
        let mode = self.mode(&engine);
        let ask = engine.policy().ask;
        for held in expired {
            let (call, held_id, held_raw) = release(held);
            if ask.fallback == AskFallback::Allow {
                let now = self.now_ms();
                self.record_forwarded(session, &engine, &held_id, call, "ask-timeout-allowed", now);
                to_server.push(held_raw);
            } else {
                let why = format!("nobody answered within {} ms", ask.timeout_ms);
                to_client.push(self.refuse(
                    session,
                    &engine,
                    mode,
                    &held_id,
                    call,
                    "ask-timeout-blocked",
                    Some(&why),
                ));
            }
        }
        (to_client, to_server)
    }

    /// The held call `call_id` (the client's request id) whose client went away before answering:
    /// refused and audited as `ask-failed-blocked`; nobody is left to read the error.
    pub fn abandon_ask(&self, session: &mut SessionState, call_id: &str) {
        let Some(held) = session.asks.cancel(call_id) else {
            return;
        };
        let engine = self.engine();
        let mode = self.mode(&engine);
        let (call, held_id, _) = release(held);
        let why = "the client went away before the user answered";
        self.refuse(
            session,
            &engine,
            mode,
            &held_id,
            call,
            "ask-failed-blocked",
            Some(why),
        );
    }

    /// With the kill switch on, every call is blocked, in enforce mode whatever the policy's mode.
    fn apply_kill_switch(&self, mut decision: Decision, mode: Mode) -> (Decision, Mode) {
        if !self.kill_switch.is_on() {
            return (decision, mode);
        }
        decision.findings.insert(
            0,
            crate::decision::Finding {
                detector: crate::decision::Detector::KillSwitch,
                rule: "kill-switch".into(),
                action: mcp_guard_policy::Action::Block,
                risk: 1.0,
                reason: "the proxy's kill switch is on: every tool call is denied".into(),
            },
        );
        decision.verdict = Verdict::Block;
        decision.risk = 1.0;
        (decision, Mode::Enforce)
    }

    fn invalid_call(&self, id: &str, message: &str) -> MessageOutcome {
        self.metrics.frames.malformed_client_to_server.inc();
        MessageOutcome::answer(jsonrpc::error_response(Some(id), -32602, message, None))
    }

    /// Counts a call (once, when it is decided) and its findings.
    fn count_decision(&self, tool: &str, decision: &Decision, mode: Mode) {
        self.metrics
            .calls
            .get_or_create(&CallLabels {
                tool: self.metrics.tool_label(tool),
                decision: decision.verdict.as_str().to_owned(),
                mode: mode_str(mode).to_owned(),
            })
            .inc();
        self.count_findings(decision);
    }

    fn count_findings(&self, decision: &Decision) {
        for f in &decision.findings {
            self.metrics
                .findings
                .get_or_create(&FindingLabels {
                    detector: f.detector.as_str().to_owned(),
                    rule: f.rule.to_string(),
                })
                .inc();
        }
    }

    // === server -> client ===

    /// Processes one frame from the server. `Err` when it is not JSON-RPC at all (the caller decides
    /// whether to divert it, e.g. a server printing logs on stdout).
    pub fn server_frame(
        &self,
        session: &mut SessionState,
        text: &str,
    ) -> Result<Outcome, jsonrpc::FrameError> {
        let started = Instant::now();
        self.metrics.frames.server_to_client.inc();
        self.summary.message_out();
        session.detect.usage.bytes_out += text.len() as u64;
        let frame = jsonrpc::parse_frame(text).inspect_err(|_| {
            self.metrics.frames.malformed_server_to_client.inc();
        })?;
        let outcome = match frame {
            Frame::Single(env) => match self.server_message(session, &env) {
                None => Outcome::pass(),
                Some(replacement) => Outcome {
                    forward: Forward::Replaced(replacement),
                    reply: None,
                },
            },
            Frame::Batch(items) => {
                let mut changed = false;
                let out: Vec<String> = items
                    .iter()
                    .map(|(raw, env)| match self.server_message(session, env) {
                        None => raw.get().to_owned(),
                        Some(r) => {
                            changed = true;
                            r
                        }
                    })
                    .collect();
                if changed {
                    Outcome {
                        forward: Forward::Replaced(format!("[{}]", out.join(","))),
                        reply: None,
                    }
                } else {
                    Outcome::pass()
                }
            }
        };
        self.metrics
            .added_latency
            .observe(started.elapsed().as_secs_f64());
        Ok(outcome)
    }

    /// `Some(replacement)` when the message must be replaced.
    fn server_message(&self, session: &mut SessionState, env: &Envelope<'_>) -> Option<String> {
        if env.kind() != Kind::Response {
            return None;
        }
        let id = env.id_text()?;
        match session.pending.remove(id)? {
            Pending::ToolsList { first_page } => {
                let result = env.result?;
                let replacement = self.tools_listed(session, id, result);
                // Tools removed from the list are not declared either.
                let listed = replacement
                    .as_deref()
                    .and_then(|r| serde_json::from_str::<Value>(r).ok())
                    .map(|v| v["result"].to_string());
                match listed
                    .as_deref()
                    .and_then(|l| serde_json::from_str::<&RawValue>(l).ok())
                {
                    Some(filtered) => record_tools(session, filtered, first_page),
                    None => record_tools(session, result, first_page),
                }
                replacement
            }
            Pending::ToolsCall(call) => self.call_answered(session, id, env, *call),
            Pending::Initialize => {
                if env.result.is_some() && session.phase == Phase::Initializing {
                    session.phase = Phase::Ready;
                }
                None
            }
            Pending::Other => None,
        }
    }

    /// A `tools/list` answer: poisoned descriptions and rug pulls. In enforce mode the tools with a
    /// blocking finding are removed from the list (and their calls blocked for the session); in audit
    /// mode the list passes and the findings are recorded.
    fn tools_listed(
        &self,
        session: &mut SessionState,
        id: &str,
        result: &RawValue,
    ) -> Option<String> {
        let engine = self.engine();
        if !engine.inspects_tool_lists() {
            return None;
        }
        let mode = self.mode(&engine);
        let mut value: Value = serde_json::from_str(result.get()).ok()?;
        let judged = engine.judge_tools_list(&mut session.detect, &value);
        if judged.decision.findings.is_empty() {
            return None;
        }
        self.count_findings(&judged.decision);
        let filter = mode == Mode::Enforce && !judged.blocked_tools.is_empty();
        self.audit.write(&ListRecord {
            ts: crate::summary::now_rfc3339(),
            kind: "tools/list",
            session: &session.id,
            id,
            decision: judged.decision.verdict,
            outcome: if filter {
                "tools-removed"
            } else if mode == Mode::Audit {
                "audit"
            } else {
                "logged"
            },
            removed: if filter { &judged.blocked_tools } else { &[] },
            findings: &judged.decision.findings,
        });
        if !filter {
            return None;
        }
        if let Some(tools) = value.get_mut("tools").and_then(Value::as_array_mut) {
            tools.retain(|t| {
                !t["name"]
                    .as_str()
                    .is_some_and(|n| judged.blocked_tools.iter().any(|b| b == n))
            });
        }
        Some(format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{value}}}"#))
    }

    fn call_answered(
        &self,
        session: &mut SessionState,
        id: &str,
        env: &Envelope<'_>,
        mut call: CallInFlight,
    ) -> Option<String> {
        let engine = self.engine();
        let mode = self.mode(&engine);
        let upstream_ms = call.forwarded_at.elapsed().as_secs_f64() * 1e3;
        let mut result_decision = None;
        let mut replacement = None;
        if let Some(result) = env.result.filter(|_| engine.inspects_results())
            && let Ok(value) = serde_json::from_str::<Value>(result.get())
        {
            let judged = engine.judge_result(&value);
            let d = judged.decision;
            let mut delivered = true;
            if d.verdict != Verdict::Allow {
                self.count_findings(&d);
                let (forward, _) = enforce(&d, mode, engine.policy().ask.fallback);
                if !forward {
                    replacement = Some(blocked_response(&engine, id, &d, None));
                    delivered = false;
                } else if let Some(stripped) = judged.stripped.filter(|_| mode == Mode::Enforce) {
                    replacement = Some(format!(
                        r#"{{"jsonrpc":"2.0","id":{id},"result":{stripped}}}"#
                    ));
                }
                result_decision = Some(d);
            }
            // Only what the client receives can leak later.
            if delivered {
                let (evicted, truncated) = Engine::taint_losses(&session.detect);
                engine.record_result(
                    &mut session.detect,
                    id,
                    &call.tool,
                    call.taint_source,
                    &value,
                );
                let (evicted_now, truncated_now) = Engine::taint_losses(&session.detect);
                self.metrics.taint_evictions.inc_by(evicted_now - evicted);
                self.metrics
                    .taint_truncated
                    .inc_by(truncated_now - truncated);
            }
        }
        let blocked = replacement
            .as_deref()
            .is_some_and(|r| r.contains(r#""error":"#));
        let outcome = match (&replacement, env.error.is_some()) {
            (Some(_), _) if blocked => "result-blocked",
            (Some(_), _) => "result-stripped",
            (None, true) => "error",
            (None, false) => call.outcome,
        };
        self.finish(
            &engine,
            mode,
            session,
            id,
            &mut call,
            outcome,
            Some(upstream_ms),
            result_decision.as_ref(),
        );
        replacement
    }

    /// Errors for every request still awaiting an answer, e.g. when the server died. Audits the calls.
    pub fn fail_pending(&self, session: &mut SessionState, reason: &str) -> Vec<String> {
        let engine = self.engine();
        let mode = self.mode(&engine);
        let mut ids: Vec<(String, Pending)> = session.pending.drain().collect();
        ids.sort_by(|a, b| a.0.cmp(&b.0));
        ids.into_iter()
            .map(|(id, pending)| {
                if let Pending::ToolsCall(mut call) = pending {
                    self.finish(
                        &engine,
                        mode,
                        session,
                        &id,
                        &mut call,
                        "server-failed",
                        None,
                        None,
                    );
                }
                jsonrpc::error_response(Some(&id), code::INTERNAL_ERROR, reason, None)
            })
            .collect::<Vec<_>>()
            .into_iter()
            .chain(session.asks.drain().into_iter().map(|held| {
                // Held calls never reached the server: refused and audited like an abandoned ask.
                let (mut call, id, _) = release(held);
                self.finish(
                    &engine,
                    mode,
                    session,
                    &id,
                    &mut call,
                    "ask-failed-blocked",
                    None,
                    None,
                );
                let why = "the session ended before the user answered";
                jsonrpc::error_response(Some(&id), code::INTERNAL_ERROR, why, None)
            }))
            .collect()
    }
}

/// The call a held ask stands for, with the client's request id and the request as sent.
fn release(held: HeldCall) -> (CallInFlight, String, String) {
    let call = CallInFlight {
        tool: held.tool,
        args: held.args_text,
        decision: held.decision,
        outcome: "",
        forwarded_at: Instant::now(),
        decide_us: held.decide_us,
        taint_source: held.taint_source,
        span: held.span,
    };
    (call, held.id, held.raw)
}

/// A call outside the session's ready phase, where the transport tracks the lifecycle.
fn lifecycle_finding(session: &SessionState) -> Option<crate::decision::Finding> {
    if !session.enforce_lifecycle || session.phase == Phase::Ready {
        return None;
    }
    Some(crate::decision::Finding {
        detector: crate::decision::Detector::Session,
        rule: "session.notInitialized".into(),
        action: mcp_guard_policy::Action::Block,
        risk: mcp_guard_policy::Action::Block.default_risk(),
        reason: "the session has not completed initialize".into(),
    })
}

fn track(session: &mut SessionState, id: &str, pending: Pending) {
    if session.pending.len() < MAX_PENDING {
        session.pending.insert(id.to_owned(), pending);
    }
}

/// Records the tool names of a `tools/list` result.
fn record_tools(session: &mut SessionState, result: &RawValue, first_page: bool) {
    #[derive(serde::Deserialize)]
    struct ListResult {
        #[serde(default)]
        tools: Vec<ToolName>,
    }
    #[derive(serde::Deserialize)]
    struct ToolName {
        name: String,
    }
    let Ok(list) = serde_json::from_str::<ListResult>(result.get()) else {
        return;
    };
    let declared = session.declared.get_or_insert_with(Default::default);
    if first_page {
        declared.clear();
    }
    declared.extend(list.tools.into_iter().map(|t| t.name));
}

/// Whether to forward, and the outcome name for audit and summary.
fn enforce(decision: &Decision, mode: Mode, fallback: AskFallback) -> (bool, &'static str) {
    match (mode, decision.verdict) {
        (Mode::Audit, Verdict::Block) => (true, "audit-would-block"),
        (Mode::Audit, Verdict::Ask) => (true, "audit-would-ask"),
        (_, Verdict::Allow) => (true, "allowed"),
        (_, Verdict::Log) => (true, "logged"),
        (Mode::Enforce, Verdict::Block) => (false, "blocked"),
        (Mode::Enforce, Verdict::Ask) => match fallback {
            AskFallback::Block => (false, "ask-fallback-blocked"),
            AskFallback::Allow => (true, "ask-fallback-allowed"),
        },
    }
}

/// The JSON-RPC error a blocked call (or result) gets: code -32600, the rule in the message and in
/// `data`, never the matched value.
fn blocked_response(engine: &Engine, id: &str, decision: &Decision, why: Option<&str>) -> String {
    let policy = engine.policy().source.name.as_deref().unwrap_or("(local)");
    let (rule, detector, reason) = decision
        .deciding()
        .map(|f| (f.rule.to_string(), f.detector.as_str(), f.reason.as_str()))
        .unwrap_or_else(|| ("unknown".into(), "unknown", "blocked"));
    let mut message =
        format!("blocked by mcp-guard policy {policy}: rule {rule} ({detector}): {reason}");
    if let Some(why) = why {
        message.push_str("; ");
        message.push_str(why);
    }
    // Every finding's rule and detector (never the matched values), so a client sees all reasons.
    let findings: Vec<Value> = decision
        .findings
        .iter()
        .map(|f| serde_json::json!({"rule": &*f.rule, "detector": f.detector.as_str(), "action": f.action}))
        .collect();
    let data = serde_json::json!({
        "rule": rule,
        "detector": detector,
        "decision": decision.verdict,
        "risk": decision.risk,
        "policy": policy,
        "findings": findings,
    });
    jsonrpc::error_response(
        Some(id),
        code::INVALID_REQUEST,
        &message,
        Some(&data.to_string()),
    )
}

/// What the user is asked: the tool, the redacted arguments, the rule and why.
fn ask_message(engine: &Engine, call: &CallInFlight) -> String {
    let policy = engine.policy().source.name.as_deref().unwrap_or("(local)");
    let (rule, reason) = call
        .decision
        .deciding()
        .map(|f| (f.rule.to_string(), f.reason.clone()))
        .unwrap_or_default();
    let args: String = call.args.chars().take(400).collect();
    format!(
        "mcp-guard (policy {policy}) asks before this tool call runs.\nTool: {}\nArguments: {args}\nRule: {rule}: {reason}\nAllow it?",
        call.tool
    )
}

/// Redacted, truncated arguments for an audit record.
fn audit_args(engine: &Engine, args: &Value) -> String {
    let mut text = serde_json::to_string(&engine.redact_value(args)).unwrap_or_default();
    if text.len() > AUDIT_ARGS_MAX {
        let mut cut = AUDIT_ARGS_MAX;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str("…(truncated)");
    }
    text
}

fn micros(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_micros()).unwrap_or(u64::MAX)
}

pub fn mode_str(mode: Mode) -> &'static str {
    match mode {
        Mode::Enforce => "enforce",
        Mode::Audit => "audit",
    }
}

/// One audit record per `tools/call`.
#[derive(Serialize)]
struct CallRecord<'a> {
    ts: String,
    #[serde(rename = "type")]
    kind: &'static str,
    session: &'a str,
    id: &'a str,
    tool: &'a str,
    /// Redacted and truncated.
    args: &'a str,
    decision: Verdict,
    /// What happened: allowed, logged, blocked, ask-fallback-*, audit-would-*, result-blocked, error,
    /// server-failed.
    outcome: &'static str,
    mode: &'static str,
    risk: f64,
    findings: &'a [crate::decision::Finding],
    #[serde(skip_serializing_if = "Option::is_none")]
    result_findings: Option<&'a [crate::decision::Finding]>,
    policy: PolicyRef<'a>,
    /// Time the proxy spent deciding, in microseconds.
    decide_us: u64,
    /// Time the server took to answer, in milliseconds (forwarded calls only).
    #[serde(skip_serializing_if = "Option::is_none")]
    upstream_ms: Option<f64>,
}

/// An audit record for a `tools/list` answer with findings (poisoned descriptions, rug pulls).
#[derive(Serialize)]
struct ListRecord<'a> {
    ts: String,
    #[serde(rename = "type")]
    kind: &'static str,
    session: &'a str,
    id: &'a str,
    decision: Verdict,
    /// tools-removed (enforce), logged, or audit.
    outcome: &'static str,
    removed: &'a [String],
    findings: &'a [crate::decision::Finding],
}

#[derive(Serialize)]
struct PolicyRef<'a> {
    name: Option<&'a str>,
    generation: Option<i64>,
}

impl<'a> CallRecord<'a> {
    #[allow(clippy::too_many_arguments)]
    fn new(
        engine: &'a Engine,
        mode: Mode,
        session: &'a SessionState,
        id: &'a str,
        tool: &'a str,
        args: &'a str,
        decision: &'a Decision,
        outcome: &'static str,
        decide_us: u64,
        upstream_ms: Option<f64>,
        result: Option<&'a Decision>,
    ) -> Self {
        let source = &engine.policy().source;
        Self {
            ts: crate::summary::now_rfc3339(),
            kind: "tools/call",
            session: &session.id,
            id,
            tool,
            args,
            decision: decision
                .verdict
                .max(result.map_or(Verdict::Allow, |r| r.verdict)),
            outcome,
            mode: mode_str(mode),
            risk: decision.risk.max(result.map_or(0.0, |r| r.risk)),
            findings: &decision.findings,
            result_findings: result.map(|r| r.findings.as_slice()),
            policy: PolicyRef {
                name: source.name.as_deref(),
                generation: source.generation,
            },
            decide_us,
            upstream_ms,
        }
    }
}
