//! The JSONL audit log. One record per line; each carries `prev`, the SHA-256 of the previous line, so
//! an edited, inserted or deleted line breaks the chain ([`verify_chain`] finds where). Appending to an
//! existing log file continues its chain. The log may also be a stream (a pipe, FIFO or character
//! device, such as `/dev/stdout` or `-` in a container, where the runtime collects it): a stream cannot
//! be read back, so each opening starts a new chain at [`GENESIS`]. Records are written with one
//! `write` each, so a crash loses at most the record being written.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::Mutex;

use serde::Serialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// `prev` of the first record of a log.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// `--log -`: the proxy's standard output.
pub const STDOUT_ARG: &str = "-";
/// What `--log -` opens.
const DEV_STDOUT: &str = "/dev/stdout";

/// Whether `path` names this process's standard output (`-`, `/dev/stdout`, `/dev/fd/1`,
/// `/proc/self/fd/1`): where the stdio transport speaks the protocol.
pub fn is_stdout(path: &Path) -> bool {
    [STDOUT_ARG, DEV_STDOUT, "/dev/fd/1", "/proc/self/fd/1"]
        .iter()
        .any(|name| path == Path::new(name))
}

/// Where audit records go. Without a file, records are dropped (the proxy still counts them in metrics).
#[derive(Debug)]
pub struct Audit {
    sink: Option<Mutex<Chain>>,
}

#[derive(Debug)]
struct Chain {
    file: File,
    prev: String,
}

impl Audit {
    pub fn disabled() -> Self {
        Self { sink: None }
    }

    /// Opens the log for appending: a regular file (created if missing) continues its hash chain; a
    /// stream (a pipe, FIFO or character device) starts a chain at [`GENESIS`]. `-` is `/dev/stdout`.
    pub fn open(path: &Path) -> io::Result<Self> {
        let path = if path == Path::new(STDOUT_ARG) {
            Path::new(DEV_STDOUT)
        } else {
            path
        };
        let (file, prev) = match std::fs::metadata(path) {
            // Not seekable (a pipe gives ESPIPE) and not ours to read: append only.
            Ok(meta) if !meta.is_file() => {
                let file = OpenOptions::new().append(true).open(path)?;
                (file, GENESIS.to_owned())
            }
            _ => {
                let mut file = OpenOptions::new()
                    .create(true)
                    .read(true)
                    .append(true)
                    .open(path)?;
                let prev = last_line_hash(&mut file)?.unwrap_or_else(|| GENESIS.to_owned());
                (file, prev)
            }
        };
        Ok(Self {
            sink: Some(Mutex::new(Chain { file, prev })),
        })
    }

    pub fn is_enabled(&self) -> bool {
        self.sink.is_some()
    }

    /// Appends a record (a struct serializing to a JSON object); adds `prev`.
    pub fn write<T: Serialize>(&self, record: &T) {
        let Some(sink) = &self.sink else { return };
        let mut obj = match serde_json::to_value(record) {
            Ok(Value::Object(obj)) => obj,
            Ok(other) => Map::from_iter([("record".to_owned(), other)]),
            Err(e) => Map::from_iter([("error".to_owned(), Value::String(e.to_string()))]),
        };
        let mut chain = sink.lock().unwrap_or_else(|p| p.into_inner());
        obj.insert("prev".into(), Value::String(chain.prev.clone()));
        let mut line = serde_json::to_string(&obj).unwrap_or_default();
        let hash = hex::encode(Sha256::digest(line.as_bytes()));
        line.push('\n');
        match chain.file.write_all(line.as_bytes()) {
            Ok(()) => chain.prev = hash,
            Err(e) => eprintln!("mcp-guard-proxy: cannot write the audit log: {e}"),
        }
    }
}

fn last_line_hash(file: &mut File) -> io::Result<Option<String>> {
    file.seek(SeekFrom::Start(0))?;
    let mut last = None;
    for line in BufReader::new(&mut *file).lines() {
        let line = line?;
        if !line.is_empty() {
            last = Some(line);
        }
    }
    Ok(last.map(|l| hex::encode(Sha256::digest(l.as_bytes()))))
}

/// Checks a whole log's chain. Returns the number of records, or the 1-based line number of the first
/// record whose `prev` does not match the line before it, with the reason.
pub fn verify_chain(text: &str) -> Result<usize, (usize, String)> {
    let mut prev = GENESIS.to_owned();
    let mut count = 0;
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.is_empty()) {
        let record: Value =
            serde_json::from_str(line).map_err(|e| (i + 1, format!("not JSON: {e}")))?;
        let claimed = record
            .get("prev")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if claimed != prev {
            return Err((
                i + 1,
                format!("prev is {claimed}, the previous line hashes to {prev}"),
            ));
        }
        prev = hex::encode(Sha256::digest(line.as_bytes()));
        count += 1;
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn chain_links_records_and_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let audit = Audit::open(&path).unwrap();
        audit.write(&json!({"n": 1}));
        audit.write(&json!({"n": 2}));
        drop(audit);
        let reopened = Audit::open(&path).unwrap();
        reopened.write(&json!({"n": 3}));
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(verify_chain(&text), Ok(3));
        let first: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(first["prev"], GENESIS);
    }

    #[test]
    fn a_pipe_is_appended_to_and_its_chain_starts_at_genesis() {
        use std::io::Read;
        use std::os::fd::AsRawFd;

        let (mut reader, writer) = std::io::pipe().unwrap();
        // The pipe by name, as `/dev/stdout` names a container's stdout pipe.
        let path = std::path::PathBuf::from(format!("/proc/self/fd/{}", writer.as_raw_fd()));
        let audit = Audit::open(&path).unwrap();
        audit.write(&json!({"n": 1}));
        audit.write(&json!({"n": 2}));
        drop(audit);
        // Opening it again does not try to read or seek it: a new chain.
        let again = Audit::open(&path).unwrap();
        again.write(&json!({"n": 3}));
        drop((again, writer));
        let mut text = String::new();
        reader.read_to_string(&mut text).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert_eq!(verify_chain(&lines[..2].join("\n")), Ok(2));
        for line in [lines[0], lines[2]] {
            let record: Value = serde_json::from_str(line).unwrap();
            assert_eq!(record["prev"], GENESIS, "{line}");
        }
    }

    #[test]
    fn a_character_device_is_written_not_read() {
        let audit = Audit::open(Path::new("/dev/null")).unwrap();
        assert!(audit.is_enabled());
        audit.write(&json!({"n": 1}));
        let chain = audit.sink.as_ref().unwrap().lock().unwrap();
        assert_ne!(
            chain.prev, GENESIS,
            "the write succeeded and advanced the chain"
        );
    }

    #[test]
    fn stdout_has_several_names() {
        for name in [
            "-",
            "/dev/stdout",
            "/dev/fd/1",
            "/proc/self/fd/1",
            "//dev/stdout/",
        ] {
            assert!(is_stdout(Path::new(name)), "{name}");
        }
        for name in ["/dev/stderr", "audit.jsonl", "./-", "/dev/fd/10"] {
            assert!(!is_stdout(Path::new(name)), "{name}");
        }
    }

    #[test]
    fn tampering_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let audit = Audit::open(&path).unwrap();
        for n in 0..4 {
            audit.write(&json!({"decision": "block", "n": n}));
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let edited = text.replacen(
            r#""decision":"block","n":1"#,
            r#""decision":"allow","n":1"#,
            1,
        );
        assert_eq!(
            verify_chain(&edited).unwrap_err().0,
            3,
            "the line after the edit breaks"
        );
        let lines: Vec<&str> = text.lines().collect();
        let deleted = [lines[0], lines[2], lines[3]].join("\n");
        assert_eq!(verify_chain(&deleted).unwrap_err().0, 2);
    }
}
