//! The kill switch: deny every `tools/call` until switched back, whatever the policy says (also in
//! audit mode: it is an emergency brake). Three ways to pull it, each audited:
//! - a file: `--kill-switch-file PATH`; when the file appears the switch goes on, when it disappears,
//!   off (transitions only, so the other two ways are not overridden by a file that stays put);
//! - signals: SIGUSR1 on, SIGUSR2 off;
//! - HTTP: `--admin ADDR` serves `GET /kill-switch` (`{"on":bool}`) and `POST /kill-switch/on|off`.
//!   It is a separate listener from `--metrics` on purpose: whoever can scrape metrics must not be
//!   able to switch the brake off. Bind it to loopback.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::Serialize;
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};

use crate::guard::Guard;

#[derive(Debug, Default)]
pub struct KillSwitch {
    on: AtomicBool,
}

impl KillSwitch {
    pub fn is_on(&self) -> bool {
        self.on.load(Ordering::Relaxed)
    }

    /// Sets the switch; returns whether it changed.
    fn set(&self, on: bool) -> bool {
        self.on.swap(on, Ordering::Relaxed) != on
    }
}

#[derive(Serialize)]
struct SwitchRecord {
    ts: String,
    #[serde(rename = "type")]
    kind: &'static str,
    on: bool,
    via: &'static str,
}

/// Switches and audits (only when the state changes).
pub fn switch(guard: &Guard, on: bool, via: &'static str) {
    if guard.kill_switch.set(on) {
        eprintln!(
            "mcp-guard-proxy: kill switch {} (via {via})",
            if on {
                "ON: denying every tools/call"
            } else {
                "off"
            }
        );
        guard.audit.write(&SwitchRecord {
            ts: crate::summary::now_rfc3339(),
            kind: "kill_switch",
            on,
            via,
        });
    }
}

/// Follows the file's appearance and disappearance.
pub async fn watch_file(path: PathBuf, guard: Arc<Guard>, interval: Duration) {
    let mut present = false;
    let mut tick = tokio::time::interval(interval);
    loop {
        tick.tick().await;
        let now = path.exists();
        if now != present {
            present = now;
            switch(&guard, now, "file");
        }
    }
}

/// SIGUSR1 switches on, SIGUSR2 off.
pub async fn watch_signals(guard: Arc<Guard>) {
    let (Ok(mut on), Ok(mut off)) = (
        signal(SignalKind::user_defined1()),
        signal(SignalKind::user_defined2()),
    ) else {
        eprintln!(
            "mcp-guard-proxy: cannot install SIGUSR1/SIGUSR2 handlers; the kill switch has no signal control"
        );
        return;
    };
    loop {
        tokio::select! {
            _ = on.recv() => switch(&guard, true, "signal"),
            _ = off.recv() => switch(&guard, false, "signal"),
        }
    }
}

/// The admin endpoint.
pub async fn serve_admin(listener: TcpListener, guard: Arc<Guard>) -> std::io::Result<()> {
    use axum::routing::{get, post};
    let state = |g: &Arc<Guard>| axum::Json(serde_json::json!({"on": g.kill_switch.is_on()}));
    let (g1, g2, g3) = (guard.clone(), guard.clone(), guard);
    let app = axum::Router::new()
        .route("/kill-switch", get(move || async move { state(&g1) }))
        .route(
            "/kill-switch/on",
            post(move || async move {
                switch(&g2, true, "http");
                state(&g2)
            }),
        )
        .route(
            "/kill-switch/off",
            post(move || async move {
                switch(&g3, false, "http");
                state(&g3)
            }),
        );
    axum::serve(listener, app).await
}
