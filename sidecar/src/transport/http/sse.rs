//! An incremental Server-Sent Events parser and encoder (WHATWG HTML, "Parsing an event stream").
//!
//! The proxy must re-emit every event the way the server wrote it, changing only the `data` of the
//! few events the guard replaces. So the parser keeps each event's exact bytes (`raw`) next to what
//! the guard needs (the event type and the joined `data`): an unchanged event is written out byte for
//! byte, with its `id`, `retry`, comments and line endings; a replaced one is re-encoded from its raw
//! lines with only the `data` lines swapped ([`replace_data`]).
//!
//! Input arrives in arbitrary chunks: a line, a CRLF pair or a multi-byte character may be split
//! between two chunks. Lines end in `\n`, `\r\n` or `\r`. Memory is bounded: an event larger than the
//! limit is skipped up to its blank line and reported as [`Item::Oversize`].

use memchr::memchr2;

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// What the parser produces.
#[derive(Debug, PartialEq, Eq)]
pub enum Item {
    Event(Event),
    /// An event larger than the limit; its bytes were dropped.
    Oversize,
}

/// One event (or, between events, a block of comments and blank lines) as received.
#[derive(Debug, PartialEq, Eq)]
pub struct Event {
    /// The exact bytes, including the blank line that ended it (when `complete`).
    pub raw: Vec<u8>,
    /// The `event` field (the last one wins), if any.
    pub kind: Option<Vec<u8>>,
    /// The `data` fields joined with `\n`; `None` without any `data` field.
    pub data: Option<Vec<u8>>,
    /// False for a trailing event cut off by the end of the stream (no blank line after it).
    pub complete: bool,
    /// `raw` starts with the byte order mark that began the stream.
    pub bom: bool,
}

/// The incremental parser: [`Parser::feed`] chunks, then [`Parser::finish`] at the end of the stream.
#[derive(Debug)]
pub struct Parser {
    max: usize,
    /// The current line, without its terminator.
    line: Vec<u8>,
    /// Whether the current line has any byte (also when an oversize event's bytes are discarded).
    line_started: bool,
    /// The current event's bytes so far (complete lines with their terminators).
    raw: Vec<u8>,
    kind: Option<Vec<u8>>,
    data: Vec<u8>,
    has_data: bool,
    /// The last chunk ended in `\r`: a `\n` starting the next one completes that CRLF.
    after_cr: bool,
    /// No line has been completed yet (a UTF-8 BOM may start the stream).
    first_line: bool,
    /// The current event exceeded `max`; its bytes are being skipped.
    oversize: bool,
    /// The current event began with the stream's byte order mark.
    bom: bool,
}

impl Parser {
    /// A parser that keeps at most `max` bytes of one event.
    pub fn new(max: usize) -> Self {
        Self {
            max,
            line: Vec::new(),
            line_started: false,
            raw: Vec::new(),
            kind: None,
            data: Vec::new(),
            has_data: false,
            after_cr: false,
            first_line: true,
            oversize: false,
            bom: false,
        }
    }

    /// Parses `chunk`, appending the events it completes to `out`.
    pub fn feed(&mut self, mut chunk: &[u8], out: &mut Vec<Item>) {
        while !chunk.is_empty() {
            if self.after_cr {
                self.after_cr = false;
                if chunk[0] == b'\n' {
                    // The LF of a CRLF split across chunks. If the CR ended an event, that event is
                    // already out; the LF alone would change nothing for a client, so it is dropped.
                    if !self.raw.is_empty() && !self.oversize {
                        self.raw.push(b'\n');
                    }
                    chunk = &chunk[1..];
                    continue;
                }
            }
            match memchr2(b'\n', b'\r', chunk) {
                None => {
                    self.append(chunk);
                    return;
                }
                Some(i) => {
                    self.append(&chunk[..i]);
                    let mut len = 1;
                    if chunk[i] == b'\r' {
                        match chunk.get(i + 1) {
                            Some(b'\n') => len = 2,
                            Some(_) => {}
                            None => self.after_cr = true,
                        }
                    }
                    self.end_line(&chunk[i..i + len], out);
                    chunk = &chunk[i + len..];
                }
            }
        }
    }

    /// The end of the stream: a last line without terminator ends, and an event without its blank
    /// line is returned with `complete: false` (a client would discard it; the proxy still judges it).
    pub fn finish(&mut self, out: &mut Vec<Item>) {
        if self.line_started {
            self.end_line(b"", out);
        }
        if !self.raw.is_empty() || self.oversize {
            self.dispatch(false, out);
        }
    }

    fn append(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        self.line_started = true;
        if self.oversize {
            return;
        }
        if self.raw.len() + self.line.len() + bytes.len() > self.max {
            self.set_oversize();
            return;
        }
        self.line.extend_from_slice(bytes);
    }

    fn set_oversize(&mut self) {
        self.oversize = true;
        self.line = Vec::new();
        self.raw = Vec::new();
        self.data = Vec::new();
    }

    fn end_line(&mut self, terminator: &[u8], out: &mut Vec<Item>) {
        let empty = !self.line_started;
        self.line_started = false;
        let first = std::mem::replace(&mut self.first_line, false);
        if self.oversize {
            if empty {
                self.dispatch(true, out);
            }
            return;
        }
        let line = std::mem::take(&mut self.line);
        let field = match line.strip_prefix(BOM) {
            Some(rest) if first => {
                self.bom = true;
                rest
            }
            _ => &line,
        };
        if empty || (first && field.is_empty()) {
            self.raw.extend_from_slice(&line);
            self.raw.extend_from_slice(terminator);
            self.dispatch(true, out);
            return;
        }
        self.field(field);
        self.raw.extend_from_slice(&line);
        self.raw.extend_from_slice(terminator);
    }

    fn field(&mut self, line: &[u8]) {
        if line.first() == Some(&b':') {
            return; // a comment
        }
        let (name, value) = split_field(line);
        match name {
            b"data" => {
                if self.data.len() + value.len() + 1 > self.max {
                    self.set_oversize();
                    return;
                }
                self.data.extend_from_slice(value);
                self.data.push(b'\n');
                self.has_data = true;
            }
            b"event" => self.kind = Some(value.to_vec()),
            _ => {} // id, retry and unknown fields are kept in `raw` only
        }
    }

    fn dispatch(&mut self, complete: bool, out: &mut Vec<Item>) {
        let bom = std::mem::take(&mut self.bom);
        if std::mem::take(&mut self.oversize) {
            self.kind = None;
            self.has_data = false;
            out.push(Item::Oversize);
            return;
        }
        let mut data = std::mem::take(&mut self.data);
        let data = std::mem::take(&mut self.has_data).then(|| {
            data.pop(); // the last `\n`
            data
        });
        out.push(Item::Event(Event {
            raw: std::mem::take(&mut self.raw),
            kind: self.kind.take(),
            data,
            complete,
            bom,
        }));
    }
}

/// A field line's name and value (one leading space of the value removed).
fn split_field(line: &[u8]) -> (&[u8], &[u8]) {
    match memchr::memchr(b':', line) {
        Some(i) => {
            let value = &line[i + 1..];
            (&line[..i], value.strip_prefix(b" ").unwrap_or(value))
        }
        None => (line, b""),
    }
}

/// Lines of `text`, split at `\r\n`, `\n` or `\r` (a trailing terminator ends the last line).
fn lines(text: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = text;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let (line, next) = match memchr2(b'\n', b'\r', rest) {
            None => (rest, &rest[rest.len()..]),
            Some(i) if rest[i] == b'\r' && rest.get(i + 1) == Some(&b'\n') => {
                (&rest[..i], &rest[i + 2..])
            }
            Some(i) => (&rest[..i], &rest[i + 1..]),
        };
        rest = next;
        Some(line)
    })
}

fn push_data(out: &mut Vec<u8>, data: &str) {
    let data = data.as_bytes();
    if data.is_empty() {
        out.extend_from_slice(b"data: \n");
        return;
    }
    // `lines` drops one trailing terminator; data ending in a newline needs an extra empty line.
    for line in lines(data) {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(line);
        out.push(b'\n');
    }
    if matches!(data.last(), Some(b'\n' | b'\r')) {
        out.extend_from_slice(b"data: \n");
    }
}

/// `ev` with its `data` replaced by `data`: every other line (event, id, retry, comments) is kept
/// in place, the new data lines stand where the first data line stood, and lines end in `\n`.
pub fn replace_data(ev: &Event, data: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(ev.raw.len().max(data.len()) + 16);
    let raw = match ev.raw.strip_prefix(BOM) {
        Some(rest) if ev.bom => {
            out.extend_from_slice(BOM);
            rest
        }
        _ => &ev.raw[..],
    };
    let mut written = false;
    for line in lines(raw) {
        if line.is_empty() {
            continue; // the blank line ending the event; written below
        }
        let is_data = line.first() != Some(&b':') && split_field(line).0 == b"data";
        if is_data {
            if !std::mem::replace(&mut written, true) {
                push_data(&mut out, data);
            }
            continue;
        }
        out.extend_from_slice(line);
        out.push(b'\n');
    }
    if !written {
        push_data(&mut out, data);
    }
    if ev.complete {
        out.push(b'\n');
    }
    out
}

/// A new `message` event carrying `data` (a JSON-RPC message the proxy adds to a stream).
pub fn message_event(data: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 24);
    out.extend_from_slice(b"event: message\n");
    push_data(&mut out, data);
    out.push(b'\n');
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn parse_chunks(chunks: &[&[u8]]) -> Vec<Item> {
        let mut p = Parser::new(1 << 20);
        let mut out = Vec::new();
        for c in chunks {
            p.feed(c, &mut out);
        }
        p.finish(&mut out);
        out
    }

    fn events(items: Vec<Item>) -> Vec<Event> {
        items
            .into_iter()
            .map(|i| match i {
                Item::Event(e) => e,
                Item::Oversize => panic!("oversize"),
            })
            .collect()
    }

    fn data(e: &Event) -> Option<&str> {
        e.data.as_deref().map(|d| std::str::from_utf8(d).unwrap())
    }

    /// What a client sees of events: type, data, completeness.
    type SeenEvent = (Option<Vec<u8>>, Option<Vec<u8>>, bool);
    type Seen = Vec<SeenEvent>;

    fn seen(es: &[Event]) -> Seen {
        es.iter()
            .map(|e| (e.kind.clone(), e.data.clone(), e.complete))
            .collect()
    }

    /// The only event of `raw`.
    fn one(raw: &[u8]) -> Event {
        let mut es = events(parse_chunks(&[raw]));
        assert_eq!(es.len(), 1, "{es:?}");
        es.remove(0)
    }

    /// Every way of splitting `input` in two, and one byte at a time, gives the same events; and
    /// their raw bytes rebuild the input.
    fn check_all_splits(input: &[u8]) -> Vec<Event> {
        let whole = events(parse_chunks(&[input]));
        let rebuilt: Vec<u8> = whole.iter().flat_map(|e| e.raw.clone()).collect();
        assert_eq!(rebuilt, input, "raw bytes rebuild the stream");
        for cut in 0..=input.len() {
            let (a, b) = input.split_at(cut);
            let split = events(parse_chunks(&[a, b]));
            assert_eq!(seen(&split), seen(&whole), "split at {cut}");
        }
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(
            seen(&events(parse_chunks(&bytes))),
            seen(&whole),
            "bytewise"
        );
        whole
    }

    #[test]
    fn parses_fields_and_keeps_raw_bytes() {
        let input =
            b"event: message\nid: 7\ndata: {\"a\":1}\n\n: keepalive\n\nretry: 10\ndata:x\n\n";
        let es = check_all_splits(input);
        assert_eq!(es.len(), 3);
        assert_eq!(es[0].kind.as_deref(), Some(&b"message"[..]));
        assert_eq!(data(&es[0]), Some("{\"a\":1}"));
        assert_eq!(es[0].raw, b"event: message\nid: 7\ndata: {\"a\":1}\n\n");
        assert_eq!((es[1].kind.as_ref(), es[1].data.as_ref()), (None, None));
        assert_eq!(es[1].raw, b": keepalive\n\n");
        assert_eq!(data(&es[2]), Some("x"), "no space after the colon");
        assert!(es.iter().all(|e| e.complete));
    }

    #[test]
    fn multi_line_data_is_joined_with_newlines() {
        let es = check_all_splits(b"data: first\ndata:  second\ndata\ndata: \n\n");
        assert_eq!(data(&es[0]), Some("first\n second\n\n"));
    }

    #[test]
    fn crlf_and_cr_line_endings() {
        let es = check_all_splits(b"event: a\r\ndata: 1\r\n\r\nevent: b\rdata: 2\r\rdata: 3\n\r\n");
        assert_eq!(es.len(), 3);
        assert_eq!(
            (es[0].kind.as_deref(), data(&es[0])),
            (Some(&b"a"[..]), Some("1"))
        );
        assert_eq!(
            (es[1].kind.as_deref(), data(&es[1])),
            (Some(&b"b"[..]), Some("2"))
        );
        assert_eq!(data(&es[2]), Some("3"));
        assert_eq!(es[0].raw, b"event: a\r\ndata: 1\r\n\r\n");
    }

    #[test]
    fn crlf_split_between_chunks_after_the_blank_line() {
        // The CR of the blank line ends the event at once; the LF in the next chunk is dropped.
        let es = events(parse_chunks(&[b"data: 1\r\n\r", b"\ndata: 2\r\n\r\n"]));
        assert_eq!(es.len(), 2);
        assert_eq!(es[0].raw, b"data: 1\r\n\r");
        assert_eq!(es[1].raw, b"data: 2\r\n\r\n");
        assert_eq!(data(&es[1]), Some("2"));
    }

    #[test]
    fn split_inside_a_multibyte_character() {
        let input = "data: {\"t\":\"héllo ✓\"}\n\n".as_bytes();
        let es = check_all_splits(input);
        assert_eq!(data(&es[0]), Some("{\"t\":\"héllo ✓\"}"));
    }

    #[test]
    fn a_bom_starts_the_stream() {
        let es = check_all_splits(b"\xEF\xBB\xBFdata: x\n\n");
        assert_eq!(data(&es[0]), Some("x"));
        let es = events(parse_chunks(&[b"\xEF\xBB", b"\xBFevent: e\ndata: y\n\n"]));
        assert_eq!(
            (es[0].kind.as_deref(), data(&es[0])),
            (Some(&b"e"[..]), Some("y"))
        );
        // A BOM later in the stream is not special.
        let es = events(parse_chunks(&[b"data: 1\n\n\xEF\xBB\xBFdata: 2\n\n"]));
        assert_eq!(data(&es[1]), None);
    }

    #[test]
    fn fields_without_colon_and_unknown_fields() {
        let es = check_all_splits(b"data\nfoo: bar\nevent\n\n");
        assert_eq!(data(&es[0]), Some(""));
        assert_eq!(es[0].kind.as_deref(), Some(&b""[..]));
    }

    #[test]
    fn an_unterminated_last_event_is_incomplete() {
        let es = events(parse_chunks(&[b"data: 1\n\ndata: 2\nid: 3"]));
        assert_eq!(es.len(), 2);
        assert!(es[0].complete && !es[1].complete);
        assert_eq!(data(&es[1]), Some("2"));
        assert_eq!(es[1].raw, b"data: 2\nid: 3");
        assert!(parse_chunks(&[b""]).is_empty());
    }

    #[test]
    fn consecutive_blank_lines_pass_as_empty_blocks() {
        let es = check_all_splits(b"data: 1\n\n\n\ndata: 2\n\n");
        assert_eq!(es.len(), 4);
        assert_eq!(es[1].raw, b"\n");
        assert_eq!(data(&es[1]), None);
    }

    #[test]
    fn oversize_events_are_skipped_up_to_their_blank_line() {
        let mut p = Parser::new(32);
        let mut out = Vec::new();
        p.feed(b"data: small\n\ndata: ", &mut out);
        p.feed(&[b'x'; 100], &mut out);
        p.feed(b"\ndata: more\n", &mut out);
        p.feed(b"\ndata: after\n\n", &mut out);
        p.finish(&mut out);
        assert_eq!(out.len(), 3, "{out:?}");
        assert!(matches!(&out[0], Item::Event(e) if data(e) == Some("small")));
        assert_eq!(out[1], Item::Oversize);
        assert!(matches!(&out[2], Item::Event(e) if data(e) == Some("after")));
        // Many short data lines add up too.
        let mut p = Parser::new(32);
        let mut out = Vec::new();
        for _ in 0..20 {
            p.feed(b"data: ab\n", &mut out);
        }
        p.feed(b"\n", &mut out);
        assert_eq!(out, vec![Item::Oversize]);
    }

    #[test]
    fn replacing_data_keeps_the_other_fields_in_place() {
        let raw =
            b": c\r\nevent: message\r\nid: 42\r\ndata: {\"old\":\r\ndata: 1}\r\nretry: 5\r\n\r\n";
        let out = replace_data(&one(raw), "{\"new\":2}");
        assert_eq!(
            String::from_utf8(out.clone()).unwrap(),
            ": c\nevent: message\nid: 42\ndata: {\"new\":2}\nretry: 5\n\n"
        );
        let es = events(parse_chunks(&[&out]));
        assert_eq!(data(&es[0]), Some("{\"new\":2}"));
        let partial = replace_data(&one(b"data: x"), "a\nb");
        assert_eq!(partial, b"data: a\ndata: b\n");
        // The stream's BOM stays in front; a BOM later is part of a field name, kept as is.
        let es = events(parse_chunks(&[
            b"\xEF\xBB\xBFid: 1\ndata: x\n\n\xEF\xBB\xBFdata\ndata: y\n\n",
        ]));
        assert!(es[0].bom && !es[1].bom);
        assert_eq!(
            replace_data(&es[0], "{}"),
            b"\xEF\xBB\xBFid: 1\ndata: {}\n\n"
        );
        assert_eq!(
            replace_data(&es[1], "{}"),
            b"\xEF\xBB\xBFdata\ndata: {}\n\n"
        );
    }

    /// What a client sees, oversize markers included.
    fn seen_items(items: &[Item]) -> Vec<Option<SeenEvent>> {
        items
            .iter()
            .map(|i| match i {
                Item::Event(e) => Some((e.kind.clone(), e.data.clone(), e.complete)),
                Item::Oversize => None,
            })
            .collect()
    }

    #[test]
    fn random_inputs_and_chunkings_agree_and_never_panic() {
        const ALPHABET: &[&[u8]] = &[
            b"data",
            b"event",
            b"id",
            b":",
            b" ",
            b"\r",
            b"\n",
            b"\r\n",
            b"x",
            b"{}",
            b"\xEF\xBB\xBF",
            b"\xC3\xA9",
        ];
        let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move |n: usize| {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            usize::try_from(seed >> 33).unwrap() % n
        };
        for round in 0..2000 {
            let mut input = Vec::new();
            for _ in 0..next(60) {
                input.extend_from_slice(ALPHABET[next(ALPHABET.len())]);
            }
            let max = if round % 3 == 0 { 16 } else { 1 << 20 };
            let mut whole = Vec::new();
            let mut p = Parser::new(max);
            p.feed(&input, &mut whole);
            p.finish(&mut whole);
            let mut chunked = Vec::new();
            let mut p = Parser::new(max);
            let mut rest = &input[..];
            while !rest.is_empty() {
                let (a, b) = rest.split_at(1 + next(rest.len()));
                p.feed(a, &mut chunked);
                rest = b;
            }
            p.finish(&mut chunked);
            assert_eq!(seen_items(&chunked), seen_items(&whole), "{input:?}");
            for item in &whole {
                if let Item::Event(e) = item {
                    // Terminators are not counted: the last line's and the blank line's.
                    assert!(e.raw.len() <= max + 4, "bounded by the limit: {:?}", e.raw);
                    if let Some(d) = &e.data {
                        let replaced = replace_data(e, "{\"r\":1}");
                        // Reparsed where it stood: a leading BOM only counts at the start.
                        let mut again = if e.bom { Vec::new() } else { b":\n".to_vec() };
                        again.extend_from_slice(&replaced);
                        let mut out = Vec::new();
                        let mut p = Parser::new(1 << 20);
                        p.feed(&again, &mut out);
                        p.finish(&mut out);
                        let Some(Item::Event(r)) = out.first() else {
                            panic!("{replaced:?}")
                        };
                        assert_eq!(
                            r.data.as_deref(),
                            Some(&b"{\"r\":1}"[..]),
                            "{d:?} {:?}",
                            e.raw
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn encoded_data_round_trips() {
        for text in [
            "",
            "x",
            "a\nb",
            "a\r\nb",
            "trailing\n",
            "\n\n",
            "{\"k\":\"v\"}",
        ] {
            let ev = message_event(text);
            let es = events(parse_chunks(&[&ev]));
            assert_eq!(es.len(), 1);
            assert_eq!(es[0].kind.as_deref(), Some(&b"message"[..]));
            let want = text.replace("\r\n", "\n");
            assert_eq!(data(&es[0]), Some(want.as_str()), "{text:?}");
        }
    }
}
