//! Shared by the host kernel tests (`tests/host_*.rs`): a private cgroup v2 directory and pin
//! directory per test, the real `mcp-guard-agent` binary, and child processes that run network
//! steps inside (or outside) a guarded cgroup, in a network namespace of their own.
//!
//! A child is this very test binary re-executed with `--exact helper_child` and a plan in
//! `MG_HELPER_PLAN`; every test file defines `fn helper_child()` calling [`helper_main`], which
//! does nothing without a plan. The child runs under `unshare -n`, with test addresses on its own
//! loopback interface (192.0.2.77/.78 and 2001:db8::77/::78: not loopback addresses, so the egress
//! rules apply to them), so tests never touch the host's network. The programs are attached at
//! the cgroup v2 root (they see every process on the host) but each test guards only its own
//! cgroup, and every test removes its programs and pins when it ends, even when it fails.
#![allow(dead_code, clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

pub const AGENT: &str = env!("CARGO_BIN_EXE_mcp-guard-agent");

/// Whether the tests can run; prints why not.
pub fn root_or_skip(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    eprintln!("SKIPPED {test}: needs root (BPF programs, cgroup v2, network namespaces)");
    false
}

/// One test's private cgroup directories and pin directory.
pub struct TestEnv {
    pub name: String,
    pub cgroup_root: PathBuf,
    /// `<cgroup root>/<name>`; guarded cgroups are created beneath it.
    pub cgroup_base: PathBuf,
    pub pin_dir: PathBuf,
    pub tmp: tempfile::TempDir,
}

static SEQ: AtomicU32 = AtomicU32::new(0);

impl TestEnv {
    pub fn new(test: &str) -> Self {
        remove_stale();
        let (cgroup_root, _) = mcp_guard_agent::bpf::fs::ensure_cgroup2().expect("cgroup v2");
        let name = format!(
            "mcp-guard-test-{}-{}-{test}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst)
        );
        let cgroup_base = cgroup_root.join(&name);
        std::fs::create_dir_all(&cgroup_base).expect("create the test cgroup");
        Self {
            pin_dir: PathBuf::from("/sys/fs/bpf").join(&name),
            name,
            cgroup_root,
            cgroup_base,
            tmp: tempfile::tempdir().expect("tempdir"),
        }
    }

    /// Creates the cgroup `<base>/<leaf>` (`leaf` may be nested: `pod/container`) and returns its
    /// path.
    pub fn cgroup(&self, leaf: &str) -> PathBuf {
        let dir = self.cgroup_base.join(leaf);
        std::fs::create_dir_all(&dir).expect("create cgroup");
        dir
    }

    /// Writes a policy file into the temp dir.
    pub fn policy(&self, yaml: &str) -> PathBuf {
        let p = self.tmp.path().join("policy.yaml");
        std::fs::write(&p, yaml).expect("write policy");
        p
    }

    pub fn events_file(&self) -> PathBuf {
        self.tmp.path().join("events.jsonl")
    }

    /// Starts the agent in standalone mode on `cgroups` and waits until it is ready.
    pub fn start_agent(&self, policy: &Path, cgroups: &[&Path]) -> Agent {
        self.start_agent_with(policy, cgroups, &[])
    }

    /// The same with more arguments (`--public-port 8080`).
    pub fn start_agent_with(&self, policy: &Path, cgroups: &[&Path], args: &[&str]) -> Agent {
        let mut cmd = Command::new(AGENT);
        cmd.arg("--policy").arg(policy);
        for c in cgroups {
            cmd.arg("--cgroup").arg(c);
        }
        cmd.args(args);
        cmd.arg("--pin-dir").arg(&self.pin_dir);
        cmd.arg("--events").arg(self.events_file());
        Agent::spawn(cmd)
    }

    /// The events written so far, as JSON values.
    pub fn events(&self) -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(self.events_file()).unwrap_or_default();
        text.lines()
            .map(|l| serde_json::from_str(l).expect("event JSON"))
            .collect()
    }

    /// Waits (up to 10 s) for an event matching `pred`.
    pub fn wait_event(&self, pred: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(e) = self.events().into_iter().find(|e| pred(e)) {
                return e;
            }
            assert!(
                Instant::now() < deadline,
                "no matching event; got {:#?}",
                self.events()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        cleanup(&self.pin_dir, &self.cgroup_base);
    }
}

/// Removes the pins (detaching the programs) and the cgroup directories (nested ones first).
fn cleanup(pin_dir: &Path, cgroup_base: &Path) {
    if let Err(e) = mcp_guard_agent::bpf::unpin(pin_dir) {
        eprintln!("cleanup: unpin {}: {e}", pin_dir.display());
    }
    remove_cgroups(cgroup_base);
}

fn remove_cgroups(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_cgroups(&e.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}

/// Removes what test processes that no longer exist left behind (a test killed mid-run).
fn remove_stale() {
    let Ok(entries) = std::fs::read_dir("/sys/fs/bpf") else {
        return;
    };
    let root = mcp_guard_agent::bpf::fs::find_cgroup2().ok().flatten();
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix("mcp-guard-test-") else {
            continue;
        };
        let pid = rest.split('-').next().unwrap_or_default();
        if pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists() {
            let cg = root.as_ref().map(|r| r.join(&name)).unwrap_or_default();
            cleanup(&e.path(), &cg);
        }
    }
}

/// A running agent, its stderr collected.
pub struct Agent {
    pub child: Child,
    pub stderr: Arc<Mutex<Vec<String>>>,
}

impl Agent {
    fn spawn(mut cmd: Command) -> Agent {
        cmd.stdout(Stdio::null()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn mcp-guard-agent");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let pipe = child.stderr.take().expect("stderr");
        let lines = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                eprintln!("[agent] {line}");
                let ready = line.ends_with(": ready");
                lines.lock().unwrap().push(line);
                if ready {
                    let _ = tx.send(());
                }
            }
        });
        let agent = Agent { child, stderr };
        if rx.recv_timeout(Duration::from_secs(60)).is_err() {
            panic!("the agent did not become ready:\n{}", agent.log());
        }
        agent
    }

    pub fn log(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    /// SIGTERM, then waits for a clean exit.
    pub fn stop(mut self) -> String {
        let pid = Pid::from_raw(i32::try_from(self.child.id()).expect("pid"));
        kill(pid, Signal::SIGTERM).expect("SIGTERM");
        let status = self.child.wait().expect("wait");
        std::thread::sleep(Duration::from_millis(100));
        assert!(status.success(), "agent exit {status}:\n{}", self.log());
        self.log()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// What a child reported.
#[derive(Debug, Default)]
pub struct ChildReport {
    pub pid: u32,
    pub comm: String,
    /// One line per step: `<step> -> ok <detail>` or `<step> -> errno <n>`.
    pub results: Vec<String>,
}

impl ChildReport {
    /// The result of the step that starts with `step`.
    pub fn result(&self, step: &str) -> &str {
        self.results
            .iter()
            .find_map(|r| r.strip_prefix(step).and_then(|r| r.strip_prefix(" -> ")))
            .unwrap_or_else(|| panic!("no result for {step}: {self:#?}"))
    }
}

/// Network setup of the child's namespace.
const NETNS_SETUP: &str = "ip link set lo up \
    && ip addr add 192.0.2.77/32 dev lo && ip addr add 192.0.2.78/32 dev lo \
    && ip -6 addr add 2001:db8::77/128 dev lo nodad && ip -6 addr add 2001:db8::78/128 dev lo nodad \
    && exec \"$0\" \"$@\"";

/// Runs `plan` (one step per line, see [`helper_main`]) in a child in its own network namespace.
pub fn run_child(plan: &[String]) -> ChildReport {
    let exe = std::env::current_exe().expect("test binary");
    let out = Command::new("unshare")
        .args(["-n", "sh", "-c", NETNS_SETUP])
        .arg(&exe)
        .args(["--exact", "helper_child", "--nocapture", "--test-threads=1"])
        .env("MG_HELPER_PLAN", plan.join("\n"))
        .output()
        .expect("run the helper child (needs unshare and ip)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "helper child failed: {}\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let mut report = ChildReport::default();
    for line in stdout.lines() {
        // libtest may print `test helper_child ... ` on the same line first
        let line = line.find("MG-").map_or(line, |i| &line[i..]);
        if let Some(p) = line.strip_prefix("MG-PID ") {
            report.pid = p.parse().expect("pid");
        } else if let Some(c) = line.strip_prefix("MG-COMM ") {
            report.comm = c.to_owned();
        } else if let Some(r) = line.strip_prefix("MG-RESULT ") {
            report.results.push(r.to_owned());
        }
    }
    report
}

/// The child's side. Steps: `listen ADDR` (a TCP listener, kept open), `enter DIR` (move this
/// process into a cgroup), `connect ADDR`, `bind ADDR` (a TCP listener, kept open; reports the
/// bound address), `udp-bind ADDR` (the same with a UDP socket), `raw-bind TYPE/PROTO[/v6only]
/// ADDR` (a socket of any protocol bound, kept open, e.g. `stream/262` for MPTCP, `stream/132` for
/// SCTP, `dgram/136/v6only` for an IPv6-only UDP-Lite socket), `sysctl KEY=VALUE` (in the child's own network namespace, e.g.
/// `net.ipv6.bindv6only=1`: IPv6 sockets made afterwards are IPv6-only). Exits the process when
/// done; returns at once without a plan.
pub fn helper_main() {
    let Ok(plan) = std::env::var("MG_HELPER_PLAN") else {
        return;
    };
    let mut keep = Vec::new();
    let mut keep_udp = Vec::new();
    let mut keep_raw = Vec::new();
    let mut out = std::io::stdout().lock();
    writeln!(out, "MG-PID {}", std::process::id()).unwrap();
    let comm = std::fs::read_to_string("/proc/thread-self/comm").unwrap_or_default();
    writeln!(out, "MG-COMM {}", comm.trim()).unwrap();
    for step in plan.lines() {
        let (verb, arg) = step.split_once(' ').unwrap_or((step, ""));
        let result = match verb {
            "enter" => std::fs::write(
                Path::new(arg).join("cgroup.procs"),
                std::process::id().to_string(),
            )
            .map(|()| "ok".to_owned()),
            "listen" => TcpListener::bind(arg.parse::<SocketAddr>().unwrap()).map(|l| {
                keep.push(l);
                "ok".to_owned()
            }),
            "connect" => TcpStream::connect_timeout(&arg.parse().unwrap(), Duration::from_secs(2))
                .map(|_| "ok".to_owned()),
            "bind" => TcpListener::bind(arg.parse::<SocketAddr>().unwrap()).and_then(|l| {
                let a = l.local_addr()?;
                keep.push(l);
                Ok(format!("ok {}", a.ip()))
            }),
            "udp-bind" => UdpSocket::bind(arg.parse::<SocketAddr>().unwrap()).and_then(|s| {
                let a = s.local_addr()?;
                keep_udp.push(s);
                Ok(format!("ok {}", a.ip()))
            }),
            "raw-bind" => {
                let (spec, addr) = arg
                    .split_once(' ')
                    .expect("raw-bind TYPE/PROTO[/v6only] ADDR");
                raw_bind(spec, addr.parse().unwrap()).map(|(fd, ip)| {
                    keep_raw.push(fd);
                    format!("ok {ip}")
                })
            }
            "sysctl" => {
                let (key, value) = arg.split_once('=').expect("sysctl KEY=VALUE");
                let file = Path::new("/proc/sys").join(key.replace('.', "/"));
                std::fs::write(file, value).map(|()| "ok".to_owned())
            }
            other => panic!("unknown step {other}"),
        };
        let shown = match result {
            Ok(s) => s,
            Err(e) => format!("errno {}", e.raw_os_error().unwrap_or(-1)),
        };
        writeln!(out, "MG-RESULT {step} -> {shown}").unwrap();
    }
    out.flush().unwrap();
    std::process::exit(0);
}

pub const EPERM: &str = "errno 1";
pub const ECONNREFUSED: &str = "errno 111";

/// A socket of `spec` (`stream|dgram/<protocol>[/v6only]`) bound to `addr`: the socket, and the
/// address it got (what the bind hook left of `addr`). std offers TCP and UDP only.
#[allow(unsafe_code)]
fn raw_bind(
    spec: &str,
    addr: SocketAddr,
) -> std::io::Result<(std::os::fd::OwnedFd, std::net::IpAddr)> {
    use nix::libc;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let mut parts = spec.split('/');
    let kind = match parts.next() {
        Some("stream") => libc::SOCK_STREAM,
        Some("dgram") => libc::SOCK_DGRAM,
        other => panic!("raw-bind: socket type {other:?}"),
    };
    let protocol: i32 = parts.next().expect("raw-bind: protocol").parse().unwrap();
    let v6only = parts.next() == Some("v6only");
    let family = if addr.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    let last = std::io::Error::last_os_error;
    // SAFETY: socket(2) returns a new descriptor (checked), which the OwnedFd then owns.
    let fd = unsafe { libc::socket(family, kind, protocol) };
    if fd < 0 {
        return Err(last());
    }
    // SAFETY: `fd` is a valid descriptor nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY (the blocks below): sockaddr_storage is plain old data, valid when zeroed and large
    // enough for either address; the pointers passed to the syscalls point into it (or to an int)
    // with the lengths given, and live across the calls.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            let sin = unsafe { &mut *(&raw mut storage).cast::<libc::sockaddr_in>() };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = a.port().to_be();
            sin.sin_addr.s_addr = u32::from(*a.ip()).to_be();
            size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let on: libc::c_int = i32::from(v6only);
            let rc = unsafe {
                libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::IPPROTO_IPV6,
                    libc::IPV6_V6ONLY,
                    (&raw const on).cast(),
                    size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            if rc != 0 {
                return Err(last());
            }
            let sin6 = unsafe { &mut *(&raw mut storage).cast::<libc::sockaddr_in6>() };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = a.port().to_be();
            sin6.sin6_addr.s6_addr = a.ip().octets();
            size_of::<libc::sockaddr_in6>()
        }
    };
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&raw const storage).cast(),
            len as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(last());
    }
    let mut got: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut got_len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    let rc = unsafe { libc::getsockname(fd.as_raw_fd(), (&raw mut got).cast(), &raw mut got_len) };
    if rc != 0 {
        return Err(last());
    }
    let ip = if i32::from(got.ss_family) == libc::AF_INET {
        let sin = unsafe { &*(&raw const got).cast::<libc::sockaddr_in>() };
        std::net::IpAddr::from(u32::from_be(sin.sin_addr.s_addr).to_be_bytes())
    } else {
        let sin6 = unsafe { &*(&raw const got).cast::<libc::sockaddr_in6>() };
        std::net::IpAddr::from(sin6.sin6_addr.s6_addr)
    };
    Ok((fd, ip))
}
