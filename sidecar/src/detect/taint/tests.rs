use std::ops::ControlFlow;

use super::informative::is_informative;
use super::*;

fn origin(id: &str, tool: &str) -> TaintOrigin {
    TaintOrigin {
        call_id: Arc::from(id),
        tool: Arc::from(tool),
    }
}

fn src(id: &str) -> TaintOrigin {
    origin(id, "read_file")
}

fn state() -> TaintState {
    TaintState::new(16, 4096)
}

fn carrier(t: &TaintState, strings: &[&str]) -> Option<Carrier> {
    t.check(strings).map(|h| h.carrier)
}

const SECRET: &str = "ghp_4fT9qZ2LmW8xKc7RbN1vYs6DpE3hJa5UoGi0";

/// Small deterministic PRNG (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn token(&mut self, len: usize) -> String {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        (0..len)
            .map(|_| ALPHABET[self.below(ALPHABET.len())] as char)
            .collect()
    }
    fn prose(&mut self, words: usize) -> String {
        const WORDS: &[&str] = &[
            "the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "please", "review",
            "this", "change", "and", "let", "me", "know", "what", "you", "think", "about", "it",
            "deploy", "service", "config", "update", "release", "notes", "for", "next", "week",
        ];
        (0..words)
            .map(|_| WORDS[self.below(WORDS.len())])
            .collect::<Vec<_>>()
            .join(" ")
    }
}

fn base64(bytes: &[u8], url: bool, pad: bool) -> String {
    let alphabet: &[u8] = if url {
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    } else {
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    };
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(alphabet[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
        if pad {
            out.extend(std::iter::repeat_n('=', 3 - chunk.len()));
        }
    }
    out
}

fn hex(bytes: &[u8], upper: bool) -> String {
    bytes
        .iter()
        .map(|b| {
            if upper {
                format!("{b:02X}")
            } else {
                format!("{b:02x}")
            }
        })
        .collect()
}

// ---- exact ------------------------------------------------------------------------------------

#[test]
fn exact_value_equal_or_contained() {
    let mut t = state();
    t.add(SECRET, origin("7", "get_secret"));
    let hit = t.check(&[SECRET]).expect("equal string");
    assert_eq!(hit.carrier, Carrier::Exact);
    assert_eq!(hit.origin, origin("7", "get_secret"));
    let text = format!("here you go: {SECRET}, enjoy");
    assert_eq!(
        carrier(&t, &["to", "x@example.com", "body", &text]),
        Some(Carrier::Exact)
    );
}

#[test]
fn whole_tool_result_contained_is_exact() {
    let mut t = state();
    let result = "DB_HOST=db.internal\nDB_USER=app\nDB_PASSWORD=Zx9!kQ2#mP7$wL4v\nAPI_TOKEN=tok_8Hf3Kd92LqP0zXv7";
    t.add(result, src("\"a\""));
    let body = format!("contents of .env:\n{result}\n-- end");
    let hit = t.check(&["body", &body]).expect("hit");
    assert_eq!(hit.carrier, Carrier::Exact);
    assert_eq!(&*hit.origin.call_id, "\"a\"");
    // One line of it is a partial leak.
    assert_eq!(
        carrier(&t, &["body", "pw is DB_PASSWORD=Zx9!kQ2#mP7$wL4v ok"]),
        Some(Carrier::Partial)
    );
}

// ---- partial ----------------------------------------------------------------------------------

#[test]
fn partial_truncation_and_edits_around() {
    let mut t = state();
    t.add(SECRET, src("1"));
    // Exactly min_match bytes of it, at the start, in the middle, at the end.
    for start in [0, 5, 12, SECRET.len() - 16] {
        let run = &SECRET[start..start + 16];
        let text = format!("prefix text {run} suffix text");
        assert_eq!(carrier(&t, &[&text]), Some(Carrier::Partial), "run {run}");
    }
    // One byte short of min_match: not a leak.
    let text = format!("prefix {} suffix", &SECRET[3..18]);
    assert_eq!(carrier(&t, &[&text]), None);
    // Edits around the secret: truncated at both ends and glued to other characters.
    let text = format!("XX{}YY", &SECRET[2..SECRET.len() - 3]);
    assert_eq!(carrier(&t, &[&text]), Some(Carrier::Partial));
    // An edit inside leaves a long enough run on one side.
    let mut edited = SECRET.to_string();
    edited.replace_range(20..21, "#");
    assert_eq!(carrier(&t, &[&edited]), Some(Carrier::Partial));
    // Case is significant.
    assert_eq!(carrier(&t, &[&SECRET.to_lowercase()]), None);
}

/// The guarantee: any run of at least min_match bytes of a tainted (informative) value is found,
/// wherever it sits in the source and in the sink.
#[test]
fn partial_guarantee_random_runs() {
    for min_match in [8, 12, 16, 24, 40] {
        let mut rng = Rng(0x1234_5678 + min_match as u64);
        for round in 0..150 {
            let mut t = TaintState::with_seed(min_match, 4096, rng.next());
            let secret_len = min_match + rng.below(64);
            let secret = rng.token(secret_len);
            let source = format!("{} {secret} {}", rng.prose(20), rng.prose(20));
            t.add(&source, src("s"));
            let len = min_match + rng.below(secret.len() - min_match + 1);
            let at = rng.below(secret.len() - len + 1);
            let run = &secret[at..at + len];
            if !is_informative(run.as_bytes()) {
                continue;
            }
            let glue = rng.below(5);
            let sink = format!("{}{run}{}", rng.token(glue), rng.prose(10));
            let hit = t.check(&["msg", &sink]);
            assert!(
                matches!(hit.map(|h| h.carrier), Some(Carrier::Partial)),
                "m={min_match} round={round} secret={secret} run={run}"
            );
        }
    }
}

/// Exhaustive form of the guarantee on mixed text (prose and tokens interleaved, so the hashing
/// restarts at every token): every informative run of exactly `m` bytes is found, every
/// uninformative one is not.
#[test]
fn every_informative_run_is_found() {
    for (m, seed) in [(8, 1), (16, 2), (16, 3), (23, 4), (64, 5)] {
        let mut rng = Rng(seed);
        let mut source = String::new();
        for _ in 0..6 {
            let words = 1 + rng.below(6);
            source.push_str(&rng.prose(words));
            source.push(' ');
            let len = 4 + rng.below(30);
            source.push_str(&rng.token(len));
            source.push_str(if rng.below(2) == 0 { " " } else { "/" });
        }
        let mut t = TaintState::with_seed(m, 4096, rng.next());
        t.add(&source, src("s"));
        let (mut found, mut silent) = (0, 0);
        for start in 0..=source.len() - m {
            let run = &source[start..start + m];
            let sink = format!("~~ {run} ~~");
            let hit = t.check(&[&sink]);
            if is_informative(run.as_bytes()) {
                assert!(hit.is_some(), "m={m} run {run:?} of {source:?}");
                found += 1;
            } else {
                assert_eq!(hit, None, "m={m} uninformative run {run:?}");
                silent += 1;
            }
        }
        assert!(
            found > 20 && (m > 32 || silent > 5),
            "m={m}: {found} found, {silent} silent"
        );
    }
}

#[test]
fn trusted_values_taint_every_run() {
    let phrase = "correct horse battery staple and a few more plain words";
    let mut t = state();
    t.add_secret(phrase, src("s"));
    for start in 0..=phrase.len() - 16 {
        let sink = format!("<{}>", &phrase[start..start + 16]);
        assert_eq!(carrier(&t, &[&sink]), Some(Carrier::Partial), "{sink}");
    }
}

#[test]
fn uninformative_text_costs_no_memory() {
    let mut t = state();
    t.add(README, src("readme"));
    t.add(&Rng(1).prose(5000), src("prose"));
    assert!(t.is_empty());
}

#[test]
fn key_glued_to_value_is_not_a_split() {
    let mut t = state();
    t.add("user42", src("s"));
    assert_eq!(carrier(&t, &["user", "42"]), None);
    assert_eq!(carrier(&t, &["id", "user42"]), Some(Carrier::Exact));
    assert_eq!(carrier(&t, &["use", "r42"]), Some(Carrier::Split));
}

#[test]
fn filter_is_rebuilt_after_many_evictions() {
    let mut rng = Rng(77);
    let mut t = TaintState::new(16, 256);
    let mut last = String::new();
    for i in 0..2000 {
        last = rng.token(24);
        t.add(&last, src(&i.to_string()));
    }
    assert!(t.evictions() > 1000);
    assert!(t.filter_stale <= t.len() + 64);
    assert_eq!(carrier(&t, &[&last]), Some(Carrier::Exact));
    assert!(t.origin_count() <= t.len());
}

#[test]
fn runs_shorter_than_min_match_never_hit() {
    let mut rng = Rng(99);
    let mut t = TaintState::with_seed(16, 4096, 5);
    let secret = rng.token(64);
    t.add(&secret, src("s"));
    // Every 15-byte piece, separated by spaces: no verified 16-byte run exists.
    let pieces: Vec<&str> = (0..secret.len() - 15)
        .step_by(7)
        .map(|i| &secret[i..i + 15])
        .collect();
    let text = pieces.join(" ");
    assert_eq!(carrier(&t, &[&text]), None);
}

// ---- short values -----------------------------------------------------------------------------

#[test]
fn short_values_match_whole_words_only() {
    let mut t = state();
    t.add("hunter2!x", src("pw"));
    assert_eq!(t.len(), 1);
    assert_eq!(carrier(&t, &["hunter2!x"]), Some(Carrier::Exact));
    assert_eq!(
        carrier(&t, &["the password is hunter2!x, ok"]),
        Some(Carrier::Exact)
    );
    // Part of a longer word, or only part of the value: no.
    assert_eq!(carrier(&t, &["ahunter2!x"]), None);
    assert_eq!(carrier(&t, &["hunter2!xy"]), None);
    assert_eq!(carrier(&t, &["hunter2!"]), None);
    assert_eq!(carrier(&t, &["hunter2"]), None);
    // A string boundary is a word boundary.
    assert_eq!(
        carrier(&t, &["password", "hunter2!x"]),
        Some(Carrier::Exact)
    );
}

#[test]
fn empty_and_tiny_values_are_ignored() {
    let mut t = state();
    t.add("", src("1"));
    t.add("ab1c", src("1"));
    t.add("ab12c", src("1"));
    assert!(t.is_empty());
    assert_eq!(t.len(), 0);
    assert_eq!(t.check(&["ab12c"]), None);
    assert_eq!(t.check(&[]), None);
    t.add("abc123", src("1"));
    assert_eq!(t.len(), 1);
    assert_eq!(t.check(&[]), None);
    assert_eq!(t.check(&["", ""]), None);
    assert_eq!(carrier(&t, &["abc123"]), Some(Carrier::Exact));
}

#[test]
fn uninformative_values_need_add_secret() {
    let mut t = state();
    t.add("letmein", src("1"));
    t.add("File not found", src("1"));
    t.add("correct horse battery staple", src("1"));
    assert!(t.is_empty());
    t.add_secret("letmein", src("2"));
    t.add_secret("correct horse battery staple", src("3"));
    let hit = t.check(&["my password is letmein."]).expect("short secret");
    assert_eq!((hit.carrier, &*hit.origin.call_id), (Carrier::Exact, "2"));
    let hit = t
        .check(&["it was: correct horse battery"])
        .expect("long secret");
    assert_eq!((hit.carrier, &*hit.origin.call_id), (Carrier::Partial, "3"));
}

// ---- encodings --------------------------------------------------------------------------------

#[test]
fn base64_standard_and_url_with_and_without_padding() {
    // Bytes chosen so that the two alphabets differ (the encoding has `+`/`/`).
    let secret = "sk_live_>>>??~~Q7z9XbKq2Lw";
    let mut t = state();
    t.add(secret, src("b"));
    let std_padded = base64(secret.as_bytes(), false, true);
    assert!(std_padded.contains('+') || std_padded.contains('/'));
    for (encoded, expected) in [
        (std_padded.clone(), Carrier::Base64),
        (base64(secret.as_bytes(), false, false), Carrier::Base64),
        (base64(secret.as_bytes(), true, true), Carrier::Base64Url),
        (base64(secret.as_bytes(), true, false), Carrier::Base64Url),
    ] {
        let text = format!("payload={encoded}&x=1");
        assert_eq!(carrier(&t, &["data", &text]), Some(expected), "{encoded}");
    }
}

#[test]
fn base64_at_every_alignment_and_truncated() {
    let mut rng = Rng(7);
    let secret = rng.token(30);
    let mut t = state();
    t.add(&secret, src("b"));
    for pre in 0..3 {
        for post in 0..3 {
            let mut blob: Vec<u8> = (0..pre).map(|i| b'#' + i as u8).collect();
            blob.extend_from_slice(secret.as_bytes());
            blob.extend((0..post).map(|i| b'!' + i as u8));
            let encoded = base64(&blob, false, true);
            assert_eq!(
                carrier(&t, &[&encoded]),
                Some(Carrier::Base64),
                "pre={pre} post={post}"
            );
        }
    }
    // A long blob, cut at arbitrary characters: the phases recover it.
    let mut blob = rng.prose(30).into_bytes();
    blob.extend_from_slice(secret.as_bytes());
    blob.extend(rng.prose(30).into_bytes());
    let encoded = base64(&blob, false, false);
    for cut in 0..4 {
        let text = format!("chunk: {}", &encoded[cut + 40..encoded.len() - 40]);
        assert_eq!(carrier(&t, &[&text]), Some(Carrier::Base64), "cut {cut}");
    }
    // Wrapped at 76 columns (MIME, PEM).
    let wrapped: Vec<&str> = encoded
        .as_bytes()
        .chunks(76)
        .map(|c| std::str::from_utf8(c).expect("ascii"))
        .collect();
    assert_eq!(carrier(&t, &[&wrapped.join("\r\n")]), Some(Carrier::Base64));
}

#[test]
fn base64_of_short_value() {
    let mut t = state();
    t.add("hunter2!x", src("pw"));
    let encoded = base64(b"hunter2!x", false, true);
    assert_eq!(carrier(&t, &[&encoded]), Some(Carrier::Base64));
}

#[test]
fn hex_lower_and_upper() {
    let mut t = state();
    t.add(SECRET, src("h"));
    for upper in [false, true] {
        let encoded = hex(SECRET.as_bytes(), upper);
        assert_eq!(carrier(&t, &[&encoded]), Some(Carrier::Hex));
        assert_eq!(
            carrier(&t, &[&format!("key: 0x{encoded}")]),
            Some(Carrier::Hex)
        );
        // Odd nibble phase: a stray hex digit before it.
        assert_eq!(carrier(&t, &[&format!("f{encoded}")]), Some(Carrier::Hex));
        // Only a part of it (20 bytes = 40 hex digits).
        assert_eq!(carrier(&t, &[&encoded[10..50]]), Some(Carrier::Hex));
    }
}

#[test]
fn percent_encoded() {
    let secret = "AKIA5Q2/xY+9z=Kw7Lp3Rt8Vb";
    let mut t = state();
    t.add(secret, src("p"));
    // Only reserved characters escaped, as in a query string.
    let query: String = secret
        .chars()
        .map(|c| match c {
            '/' => "%2F".to_string(),
            '+' => "%2B".to_string(),
            '=' => "%3D".to_string(),
            c => c.to_string(),
        })
        .collect();
    let url = format!("https://evil.example/collect?k={query}");
    assert_eq!(carrier(&t, &["url", &url]), Some(Carrier::PercentEncoded));
    // Every byte escaped.
    let all: String = secret.bytes().map(|b| format!("%{b:02X}")).collect();
    assert_eq!(carrier(&t, &[&all]), Some(Carrier::PercentEncoded));
    // The value verbatim next to an unrelated escape is plain Exact.
    let plain = format!("https://x.example/?q=a%20b&k={secret}");
    assert_eq!(carrier(&t, &[&plain]), Some(Carrier::Exact));
}

#[test]
fn json_escaped() {
    let key = "-----BEGIN KEY-----\nMIIEpAIBAAKCAQEA7dQ2\"x\"\n-----END KEY-----";
    let mut t = state();
    t.add(key, src("j"));
    let once = serde_json::to_string(key).expect("json");
    let doc = format!("{{\"file\": {once}}}");
    assert_eq!(carrier(&t, &["content", &doc]), Some(Carrier::JsonEscaped));
    // Escaped twice (a JSON document inside a JSON string).
    let twice = serde_json::to_string(&doc).expect("json");
    assert_eq!(carrier(&t, &[&twice]), Some(Carrier::JsonEscaped));
    // \u00XX escapes of non-ASCII characters.
    let mut t = state();
    t.add("pässwörd-Ab12cd34Ef", src("u"));
    assert_eq!(
        carrier(&t, &["{\"pw\":\"p\\u00e4ssw\\u00f6rd-Ab12cd34Ef\"}"]),
        Some(Carrier::JsonEscaped)
    );
}

#[test]
fn base64_inside_json_escaped_text() {
    let mut t = state();
    t.add(SECRET, src("n"));
    // JSON escapes `/` as `\/` in some serialisers: decode the JSON layer, then base64.
    let encoded = base64(format!("xx{SECRET}").as_bytes(), false, true).replace('/', "\\/");
    let text = format!("{{\"blob\":\"{encoded}\"}}");
    assert!(matches!(
        carrier(&t, &[&text]),
        Some(Carrier::Base64 | Carrier::JsonEscaped)
    ));
}

// ---- split ------------------------------------------------------------------------------------

#[test]
fn split_between_keyed_fields() {
    let secret = "AKIA7QX2LM9PW3RZ8TYV5NBC";
    let mut t = state();
    t.add(secret, src("s"));
    let (a, b) = secret.split_at(12);
    assert_eq!(carrier(&t, &["title", a, "body", b]), Some(Carrier::Split));
    // In adjacent array items, in three pieces.
    let (x, rest) = secret.split_at(8);
    let (y, z) = rest.split_at(8);
    assert_eq!(carrier(&t, &["parts", x, y, z]), Some(Carrier::Split));
    // Three pieces between keys.
    assert_eq!(carrier(&t, &["a", x, "b", y, "c", z]), Some(Carrier::Split));
    // Three strings apart: a key, and another key without a string value, in between.
    assert_eq!(
        carrier(&t, &["title", a, "count", "body", b]),
        Some(Carrier::Split)
    );
    // Long fields around the pieces.
    let long_a = format!("{} {a}", "lorem ipsum dolor sit amet ".repeat(5));
    let long_b = format!("{b} {}", "consectetur adipiscing elit ".repeat(5));
    assert_eq!(
        carrier(&t, &["title", &long_a, "body", &long_b]),
        Some(Carrier::Split)
    );
    // Pieces in the wrong order are not the value.
    assert_eq!(carrier(&t, &["title", b, "body", a]), None);
}

#[test]
fn split_prefers_whole_value_over_partial_pieces() {
    let mut t = state();
    t.add(SECRET, src("s"));
    let (a, b) = SECRET.split_at(20); // each half alone is a partial leak
    assert_eq!(carrier(&t, &[a]), Some(Carrier::Partial));
    assert_eq!(carrier(&t, &["title", a, "body", b]), Some(Carrier::Split));
}

#[test]
fn split_short_value() {
    let mut t = state();
    t.add("hunter2!xy9", src("pw"));
    assert_eq!(
        carrier(&t, &["title", "hunter", "body", "2!xy9"]),
        Some(Carrier::Split)
    );
    assert_eq!(carrier(&t, &["hunter", "2!xy9"]), Some(Carrier::Split));
}

// ---- false positives --------------------------------------------------------------------------

const README: &str = "# Widgets\n\nWidgets is a small library for building dashboards. \
It is designed to be easy to use and easy to extend.\n\n## Installation\n\nRun `npm install \
widgets` and import the components you need. See https://github.com/acme/widgets/blob/main/docs/\
getting-started.md for details.\n\n## Configuration\n\nThe configuration file lives in \
/home/alice/projects/widgets/config/settings.json and is read at start-up. Please review the \
settings before you deploy to production.\n\n## License\n\nMIT";

#[test]
fn benign_unrelated_text_and_shared_boilerplate() {
    let mut t = state();
    t.add(README, src("readme"));
    let env = "API_URL=https://api.github.com/repos/acme/widgets/issues\nLOG_DIR=/var/log/widgets/\n\
TOKEN=tok_Hk29dLq8ZxP3vR7m";
    t.add(env, src("env"));
    let json = r#"{"content":[{"type":"text","text":"Created issue 12"}],"isError":false}"#;
    t.add(json, src("json"));
    for sink in [
        // Unrelated prose.
        "Hi team, the release went out this morning, please let me know if anything looks off.",
        // Shared URL, host and path.
        "https://api.github.com/repos/acme/widgets/issues?state=open&per_page=100",
        "see https://github.com/acme/widgets/blob/main/docs/getting-started.md please",
        "/home/alice/projects/widgets/config/settings.json",
        "tail -f /var/log/widgets/ for errors",
        // Shared JSON structure.
        r#"{"content":[{"type":"text","text":"Done"}],"isError":false}"#,
        // Verbatim prose from the README: uninformative, so not reported (see the module docs).
        "It is designed to be easy to use and easy to extend.",
    ] {
        assert_eq!(t.check(&["body", sink]), None, "{sink}");
    }
    // The token still is.
    assert_eq!(
        carrier(&t, &["body", "token tok_Hk29dLq8ZxP3vR7m"]),
        Some(Carrier::Partial)
    );
}

#[test]
fn unrelated_random_tokens_do_not_collide() {
    let mut rng = Rng(2024);
    let mut t = state();
    for i in 0..300 {
        let len = 20 + rng.below(40);
        t.add(&rng.token(len), src(&i.to_string()));
    }
    for _ in 0..300 {
        let text = format!("{} {} {}", rng.prose(8), rng.token(40), rng.prose(8));
        assert_eq!(t.check(&["msg", &text]), None);
    }
}

#[test]
fn short_common_substrings_are_not_a_run() {
    let secret = "Xy7Qp2Lm9Rt4Vb8NcK3d";
    let mut t = state();
    t.add(secret, src("s"));
    // Every 12-byte piece of it, but never 16 consecutive bytes.
    let text = format!(
        "{} and {} and {}",
        &secret[0..12],
        &secret[4..16],
        &secret[8..20]
    );
    assert_eq!(carrier(&t, &[&text]), None);
    // k-gram-length coincidences glued to other text.
    let text = format!("zz{}zz{}zz", &secret[0..10], &secret[10..20]);
    assert_eq!(carrier(&t, &[&text]), None);
}

// ---- bounds -----------------------------------------------------------------------------------

#[test]
fn eviction_is_fifo_and_counted() {
    let mut rng = Rng(11);
    let mut t = TaintState::new(16, 64);
    let secrets: Vec<String> = (0..40).map(|_| rng.token(40)).collect();
    let mut stored = 0u64;
    for (i, s) in secrets.iter().enumerate() {
        let (len, ev) = (t.len(), t.evictions());
        t.add(s, src(&i.to_string()));
        stored += (t.len() + usize::try_from(t.evictions() - ev).expect("small") - len) as u64;
        assert!(t.len() <= 64);
    }
    assert!(t.evictions() > 0);
    assert_eq!(stored, t.evictions() + t.len() as u64);
    // Oldest gone, newest still there.
    assert_eq!(t.check(&[&secrets[0]]), None);
    let hit = t.check(&[&secrets[39]]).expect("newest");
    assert_eq!(&*hit.origin.call_id, "39");
    // Origins of evicted values are dropped too.
    assert!(t.origin_count() <= t.values.len());
}

#[test]
fn duplicate_values_and_origins_are_stored_once() {
    let mut t = state();
    t.add(SECRET, src("1"));
    let len = t.len();
    t.add(SECRET, src("2"));
    assert_eq!(t.len(), len);
    assert_eq!(&*t.check(&[SECRET]).expect("hit").origin.call_id, "1");
    let mut rng = Rng(3);
    for _ in 0..10 {
        t.add(&rng.token(30), src("many"));
    }
    assert_eq!(t.origin_count(), 2);
}

#[test]
fn each_hit_names_its_origin() {
    let mut t = state();
    t.add("first_Secret_Value_0001xyz", origin("1", "vault_read"));
    t.add("second_Secret_Value_0002xyz", origin("\"b\"", "read_file"));
    let hit = t.check(&["second_Secret_Value_0002xyz"]).expect("hit");
    assert_eq!(hit.origin, origin("\"b\"", "read_file"));
    let hit = t.check(&["first_Secret_Value_0001xyz"]).expect("hit");
    assert_eq!(hit.origin, origin("1", "vault_read"));
}

#[test]
fn large_source_is_bounded() {
    let mut rng = Rng(5);
    // ~1 MiB of token-dense text: the per-value budget (half the capacity) applies.
    let mut big = String::new();
    while big.len() < (1 << 20) - 100 {
        big.push_str(&rng.token(30));
        big.push('\n');
    }
    let early = big[100..140].to_string();
    let late = big[big.len() - 200..big.len() - 160].to_string();
    let mut t = state();
    t.add(SECRET, src("earlier"));
    t.add(&big, src("big"));
    assert!(t.len() <= 4096);
    assert_eq!(t.truncated(), 1);
    assert_eq!(t.evictions(), 0);
    assert_eq!(carrier(&t, &[&early]), Some(Carrier::Partial));
    assert_eq!(carrier(&t, &[&late]), None); // past the budget
    assert_eq!(carrier(&t, &[SECRET]), Some(Carrier::Exact)); // not flushed
    // The whole value is still recognised verbatim.
    assert_eq!(carrier(&t, &[&big]), Some(Carrier::Exact));

    // 1 MiB of prose with one key at the end: prose costs no fingerprints.
    let mut prose = String::new();
    while prose.len() < (1 << 20) - 200 {
        prose.push_str(&rng.prose(12));
        prose.push_str(".\n");
    }
    prose.push_str("key: AKIA2Q7XLM9PW3RZ8TYV\n");
    let mut t = state();
    t.add(&prose, src("doc"));
    assert!(t.len() < 16, "{}", t.len());
    assert_eq!(t.truncated(), 0);
    assert_eq!(
        carrier(&t, &["leaked AKIA2Q7XLM9PW3RZ8TYV"]),
        Some(Carrier::Partial)
    );
}

#[test]
fn sink_full_of_near_copies_is_bounded() {
    // A tainted 64 KiB value, and a sink holding 8 near-copies of it (one byte changed in each,
    // so never whole) at different alignments: verification work is bounded, a hit is reported.
    let mut rng = Rng(8);
    let mut value = String::new();
    while value.len() < 64 << 10 {
        value.push_str(&rng.token(20));
        value.push(' ');
    }
    let mut t = TaintState::new(16, 1 << 16);
    t.add_secret(&value, src("v"));
    let mut sink = String::new();
    for i in 0..8 {
        sink.push_str(&"x".repeat(i));
        let cut = value.len() / 2 + i;
        sink.push_str(&value[..cut]);
        sink.push('#');
        sink.push_str(&value[cut + 1..]);
    }
    assert_eq!(carrier(&t, &["body", &sink]), Some(Carrier::Partial));
}

#[test]
fn parameters_are_clamped() {
    let mut t = TaintState::new(1, 0);
    assert_eq!(t.min_match(), 8);
    t.add("Ab12Cd34Ef56", src("1"));
    assert_eq!(t.len(), 1);
    assert_eq!(carrier(&t, &["xx Ab12Cd34 yy"]), Some(Carrier::Partial));
    t.add("Zz98Yy76Xx54", src("2"));
    assert_eq!(t.len(), 1);
    assert_eq!(t.evictions(), 1);
    assert_eq!(TaintState::new(10_000, 1).min_match(), 256);
}

#[test]
fn non_ascii_text() {
    let mut t = state();
    let secret = "клю́ч-Ab12Cd34Ef56-秘密";
    t.add(secret, src("u"));
    assert_eq!(carrier(&t, &[&format!("«{secret}»")]), Some(Carrier::Exact));
    assert_eq!(carrier(&t, &["ч-Ab12Cd34Ef56-秘"]), Some(Carrier::Partial));
    assert_eq!(carrier(&t, &["ключ ключ ключ ключ 秘密秘密秘密"]), None);
}

// ---- internals --------------------------------------------------------------------------------

#[test]
fn opaque_word_rule() {
    for yes in [
        "hunter2",
        "x509",
        "Ab12",
        "a3f9c2e1",
        "550e8400-e29b",
        "4111111111111111",
        "the key is aB3dEf here",
        "KxMyXCIm",
        "xxHTTPxx",
    ] {
        assert!(is_informative(yes.as_bytes()), "{yes}");
    }
    for no in [
        "the quick brown fox",
        "Hello World",
        "README FILE",
        "GitHub",
        "isError createdAt getElementById",
        "https://api.github.com/repos/acme/widgets",
        "/usr/local/bin/python",
        r#"{"type":"text","text":""}"#,
        "v2 of it",
        "12345678901",
        "",
    ] {
        assert!(!is_informative(no.as_bytes()), "{no}");
    }
}

#[test]
fn parameters_satisfy_the_winnowing_guarantee() {
    for m in 8..=256 {
        let p = fingerprint::Params::new(m);
        assert_eq!(p.w + p.k - 1, p.min_match, "m={m}");
        assert!(p.w <= fingerprint::MAX_WINDOW && p.w >= 4 && p.k > p.min_match / 2);
    }
}

#[test]
fn decoders_round_trip() {
    let mut seen = Vec::new();
    let mut budget = usize::MAX;
    let input = format!(
        "a={} b={} c=%41%42%43%44%45%46 d=\"x\\ny\\u00e9z\\\"w\"",
        base64(b"Hello, World!", false, false),
        hex(b"binary\x00data", false)
    );
    let _ = encodings::for_each(input.as_bytes(), 6, 1, &mut budget, &mut |d| {
        seen.push((d.carrier, d.bytes.to_vec()));
        ControlFlow::Continue(())
    });
    let has = |c: Carrier, needle: &[u8]| {
        seen.iter()
            .any(|(k, b)| *k == c && b.windows(needle.len()).any(|w| w == needle))
    };
    assert!(has(Carrier::Base64, b"Hello, World!"));
    assert!(has(Carrier::Hex, b"binary\x00data"));
    assert!(has(Carrier::PercentEncoded, b"ABCDEF"));
    assert!(has(Carrier::JsonEscaped, "x\ny\u{e9}z\"w".as_bytes()));
}

/// Timing probe, not a test: `cargo test --release -p mcp-guard-proxy --lib
/// detect::taint::tests::timing -- --ignored --nocapture`.
#[test]
#[ignore = "timing probe"]
fn timing() {
    use std::time::Instant;
    let mut rng = Rng(42);
    let mut t = TaintState::new(16, 4096);
    let mut n = 0;
    while t.len() < 4096 && n < 10_000 {
        t.add(&format!("secret {}", rng.token(40)), src(&n.to_string()));
        n += 1;
    }
    let sink_prose = rng.prose(330);
    let sink_json = format!(
        "{{\"title\":\"Weekly report\",\"body\":\"{}\",\"labels\":[\"ops\",\"weekly\"],\"url\":\"https://api.github.com/repos/acme/widgets/issues\"}}",
        rng.prose(250)
    );
    let cases: [(&str, Vec<&str>); 3] = [
        (
            "prose 2 KB",
            vec!["to", "team@example.com", "body", &sink_prose],
        ),
        ("json-ish 1.7 KB", vec!["body", &sink_json]),
        (
            "small",
            vec!["path", "/tmp/x.txt", "content", "hello world"],
        ),
    ];
    for (name, strings) in &cases {
        let bytes: usize = strings.iter().map(|s| s.len()).sum();
        let iters = 20_000;
        let start = Instant::now();
        for _ in 0..iters {
            std::hint::black_box(t.check(std::hint::black_box(strings)));
        }
        let per = start.elapsed() / iters;
        println!("check {name} ({bytes} B, {} fps): {per:?}", t.len());
    }
    let leak = format!(
        "{} {}",
        rng.prose(200),
        base64(rng.token(40).as_bytes(), false, true)
    );
    let start = Instant::now();
    for _ in 0..20_000 {
        std::hint::black_box(t.check(&["body", &leak]));
    }
    println!(
        "check prose + base64 blob ({} B): {:?}",
        leak.len(),
        start.elapsed() / 20_000
    );
    let mut big = String::new();
    while big.len() < 1 << 20 {
        big.push_str(&rng.prose(12));
        big.push('\n');
    }
    let start = Instant::now();
    let mut t2 = TaintState::new(16, 4096);
    t2.add(&big, src("big"));
    println!("add 1 MiB prose: {:?} ({} fps)", start.elapsed(), t2.len());
    let mut dense = String::new();
    while dense.len() < 1 << 20 {
        dense.push_str(&rng.token(30));
        dense.push('\n');
    }
    let start = Instant::now();
    let mut t3 = TaintState::new(16, 4096);
    t3.add(&dense, src("dense"));
    println!(
        "add 1 MiB tokens: {:?} ({} fps, truncated {})",
        start.elapsed(),
        t3.len(),
        t3.truncated()
    );
    let start = Instant::now();
    let r = t.check(&["content", &big]);
    println!("check 1 MiB prose: {:?} ({r:?})", start.elapsed());
    let mut dense = String::new();
    while dense.len() < 20_000 {
        dense.push_str(&rng.token(30));
        dense.push(' ');
    }
    let mut t4 = TaintState::new(16, 1 << 20);
    t4.add(&dense, src("density"));
    println!(
        "density on tokens: {:.3} fps/byte",
        t4.len() as f64 / dense.len() as f64
    );
    let secret = rng.token(40);
    let start = Instant::now();
    for i in 0..10_000 {
        t.add(&format!("{secret}{i}"), src("x"));
    }
    println!("add 46 B secret: {:?}", start.elapsed() / 10_000);
}
