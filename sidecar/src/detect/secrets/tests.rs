//! Tests of the credential-leak scanner.
//!
//! Every "secret" here is fake: built at run time from a deterministic pseudo-random generator (or
//! by concatenation), so that this file does not itself look like a leaked credential to other
//! scanners, while still having the real format of each type.

use std::borrow::Cow;

use regex::Regex;

use super::validate::{base64_decode, shannon_entropy};
use super::*;

// === Helpers ===

const LETTERS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const B64URL: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
const HEX: &[u8] = b"0123456789abcdef";
const DIGITS: &[u8] = b"0123456789";
const UPPER_DIGITS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
const BECH32_UPPER: &[u8] = b"QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L";

/// A deterministic pseudo-random string over `alphabet` (xorshift64*), seeded by `seed`.
fn rand(seed: u64, len: usize, alphabet: &[u8]) -> String {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            let r = x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 32;
            char::from(alphabet[usize::try_from(r).unwrap() % alphabet.len()])
        })
        .collect()
}

/// Standard (`url == false`, padded) or URL-safe (unpadded) base64.
fn b64(data: &[u8], url: bool) -> String {
    let alphabet = if url { B64URL } else { B64 };
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let n = chunk.len();
        let v = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= n {
                out.push(char::from(alphabet[((v >> (18 - 6 * i)) & 63) as usize]));
            } else if !url {
                out.push('=');
            }
        }
    }
    out
}

fn scanner() -> SecretScanner {
    SecretScanner::builtin()
}

/// (kind, matched text) of every finding.
fn found(text: &str) -> Vec<(String, String)> {
    scanner()
        .find(text)
        .into_iter()
        .map(|m| (m.kind.to_string(), text[m.range].to_owned()))
        .collect()
}

/// The text holds exactly `secret`, reported as `kind`, and nothing else.
#[track_caller]
fn assert_finds(text: &str, kind: &str, secret: &str) {
    assert_eq!(
        found(text),
        vec![(kind.to_owned(), secret.to_owned())],
        "in {text:?}"
    );
    assert!(scanner().contains_secret(text), "contains_secret({text:?})");
}

#[track_caller]
fn assert_clean(text: &str) {
    assert_eq!(found(text), Vec::<(String, String)>::new(), "in {text:?}");
    assert!(
        !scanner().contains_secret(text),
        "contains_secret({text:?})"
    );
    assert!(matches!(scanner().redact(text), Cow::Borrowed(_)));
}

/// A fake PEM body: `lines` lines of 64 base64 characters joined by `newline`.
fn pem_body(seed: u64, lines: usize, newline: &str) -> String {
    (0..lines)
        .map(|i| rand(seed + i as u64, 64, B64))
        .collect::<Vec<_>>()
        .join(newline)
}

fn pem(label: &str, seed: u64, newline: &str) -> String {
    let dashes = "-----";
    format!(
        "{dashes}BEGIN {label}{dashes}{newline}{}{newline}{dashes}END {label}{dashes}",
        pem_body(seed, 6, newline)
    )
}

fn jwt(seed: u64) -> String {
    format!(
        "{}.{}.{}",
        b64(br#"{"alg":"HS256","typ":"JWT"}"#, true),
        b64(
            br#"{"sub":"1234567890","name":"Jane Doe","iat":1516239022}"#,
            true
        ),
        rand(seed, 43, B64URL)
    )
}

fn uuid(seed: u64) -> String {
    let h = rand(seed, 32, HEX);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// A password-like value: mixed classes, no placeholder word.
fn password(seed: u64) -> String {
    format!("{}9#{}", rand(seed, 8, ALNUM), rand(seed + 1, 8, ALNUM))
}

// === One positive example per type ===

/// (kind, text, secret) for every built-in kind.
fn fixtures() -> Vec<(&'static str, String, String)> {
    let mut v: Vec<(&'static str, String, String)> = Vec::new();
    let mut add = |kind: &'static str, text: String, secret: String| v.push((kind, text, secret));

    let key_id = format!("AKIA{}", "IOSFODNN7EXAMPLE");
    add(
        "aws-access-key-id",
        format!("aws_access_key_id = {key_id}\n"),
        key_id,
    );
    let key_id = format!("ASIA{}", rand(1, 16, UPPER_DIGITS));
    add("aws-access-key-id", format!("id {key_id}."), key_id);
    let aws_secret = rand(2, 40, B64);
    add(
        "aws-secret-access-key",
        format!("[default]\naws_secret_access_key = {aws_secret}\n"),
        aws_secret.clone(),
    );
    add(
        "aws-secret-access-key",
        format!(r#"{{"Credentials": {{"SecretAccessKey": "{aws_secret}"}}}}"#),
        aws_secret,
    );
    let t = format!("AIza{}", rand(3, 35, B64URL));
    add(
        "google-api-key",
        format!("https://maps.example/x?key={t}&q=1"),
        t,
    );
    let t = format!("GOCSPX-{}", rand(4, 28, B64URL));
    add(
        "google-oauth-client-secret",
        format!(r#"{{"client_secret_value":"{t}"}}"#),
        t,
    );
    let t = format!("ya29.{}", rand(5, 120, B64URL));
    add("google-oauth-access-token", format!("token {t} "), t);
    let body = pem_body(6, 20, "\\n");
    let header = ["-----BEGIN ", "PRIVATE KEY-----"].concat();
    let footer = ["-----END ", "PRIVATE KEY-----"].concat();
    let key = format!("{header}\\n{body}\\n{footer}");
    add(
        "gcp-service-account-key",
        format!(
            r#"{{"type": "service_account", "project_id": "demo", "private_key_id": "{}", "private_key": "{key}\n", "client_email": "svc@demo.iam.gserviceaccount.com"}}"#,
            rand(7, 40, HEX)
        ),
        key,
    );
    let t = format!("{}==", rand(8, 86, B64));
    add(
        "azure-storage-key",
        format!(
            "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={t};EndpointSuffix=core.windows.net"
        ),
        t,
    );
    let t = format!("{}=", rand(9, 43, B64));
    add(
        "azure-shared-access-key",
        format!(
            "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey={t}"
        ),
        t,
    );
    let t = format!("dop_v1_{}", rand(10, 64, HEX));
    add("digitalocean-token", format!("DO_TOKEN={t}"), t);
    let t = format!("dapi{}", rand(11, 32, HEX));
    add(
        "databricks-token",
        format!("Authorization header uses {t}"),
        t,
    );
    for (i, prefix) in ["ghp_", "gho_", "ghu_", "ghs_", "ghr_"].iter().enumerate() {
        let t = format!("{prefix}{}", rand(12 + i as u64, 36, ALNUM));
        add(
            "github-token",
            format!("git clone https://x-access:{t}@github.com/o/r"),
            t,
        );
    }
    let t = format!("github_pat_{}_{}", rand(20, 22, ALNUM), rand(21, 59, ALNUM));
    add("github-fine-grained-pat", format!("GH={t}"), t);
    let t = format!("glpat-{}", rand(22, 20, ALNUM));
    add("gitlab-token", format!("PRIVATE-TOKEN: {t}"), t);
    let t = format!("npm_{}", rand(23, 36, ALNUM));
    add(
        "npm-token",
        format!("//registry.npmjs.org/:_authToken={t}"),
        t,
    );
    let t = format!("pypi-AgEIcHlwaS5vcmc{}", rand(24, 70, B64URL));
    add("pypi-token", format!("password = {t}"), t);
    let t = format!("dckr_pat_{}", rand(25, 27, B64URL));
    add("docker-hub-pat", format!("docker login -p {t}"), t);
    let t = format!("hf_{}", rand(26, 34, LETTERS));
    add("huggingface-token", format!("HF_TOKEN={t}"), t);
    let t = format!("sk-ant-api03-{}AA", rand(27, 93, B64URL));
    add("anthropic-api-key", format!("x-api-key: {t}"), t);
    let t = format!("sk-proj-{}", rand(28, 120, B64URL));
    add("openai-api-key", format!("OPENAI_API_KEY={t}"), t);
    let t = format!("sk-{}T3BlbkFJ{}", rand(29, 20, ALNUM), rand(30, 20, ALNUM));
    add("openai-api-key", format!("key: {t}"), t);
    let t = format!(
        "xoxb-{}-{}-{}",
        rand(31, 12, DIGITS),
        rand(32, 13, DIGITS),
        rand(33, 24, ALNUM)
    );
    add("slack-token", format!("SLACK_BOT_TOKEN={t}"), t);
    let t = format!(
        "https://hooks.slack.com/services/T{}/B{}/{}",
        rand(34, 8, UPPER_DIGITS),
        rand(35, 10, UPPER_DIGITS),
        rand(36, 24, ALNUM)
    );
    add("slack-webhook", format!(r#"{{"webhook": "{t}"}}"#), t);
    for (i, prefix) in ["sk_live_", "rk_live_", "sk_test_"].iter().enumerate() {
        let t = format!("{prefix}{}", rand(37 + i as u64, 24, ALNUM));
        add("stripe-key", format!("stripe.api_key = '{t}'"), t);
    }
    let t = format!("whsec_{}", rand(40, 32, ALNUM));
    add("stripe-webhook-secret", format!("endpoint secret {t}"), t);
    let t = format!("SK{}", rand(41, 32, HEX));
    add("twilio-api-key", format!("api key sid {t}"), t);
    let t = format!("AC{}", rand(42, 32, HEX));
    add("twilio-account-sid", format!("account {t}"), t);
    let t = format!("SG.{}.{}", rand(43, 22, B64URL), rand(44, 43, B64URL));
    add("sendgrid-api-key", format!("SENDGRID={t}\n"), t);
    let t = format!("key-{}", rand(45, 32, HEX));
    add("mailgun-api-key", format!("api:{t}"), t);
    let t = format!("shpat_{}", rand(46, 32, HEX));
    add("shopify-token", format!("X-Shopify-Access-Token: {t}"), t);
    let t = format!("shpss_{}", rand(47, 32, HEX));
    add("shopify-token", format!("shared secret {t}"), t);
    let t = format!(
        "{}.{}.{}",
        b64(rand(48, 18, DIGITS).as_bytes(), true),
        rand(49, 6, B64URL),
        rand(50, 38, B64URL)
    );
    add("discord-bot-token", format!("client.login('{t}')"), t);
    let t = format!(
        "https://discord.com/api/webhooks/{}/{}",
        rand(51, 18, DIGITS),
        rand(52, 68, B64URL)
    );
    add("discord-webhook", format!("POST {t}"), t);
    let t = format!("{}:AA{}", rand(53, 10, DIGITS), rand(54, 33, B64URL));
    add(
        "telegram-bot-token",
        format!("https://api.telegram.org/bot{t}/getMe"),
        t,
    );
    let t = rand(55, 32, HEX);
    add("datadog-api-key", format!("DD_API_KEY={t}"), t);
    let t = uuid(56);
    add("heroku-api-key", format!("HEROKU_API_KEY={t}"), t);
    let t = format!("HRKU-{}", rand(57, 60, B64URL));
    add("heroku-api-key", format!("heroku: {t}"), t);
    let t = format!("lin_api_{}", rand(58, 40, ALNUM));
    add("linear-api-key", format!("LINEAR={t}"), t);
    let t = format!("sntryu_{}", rand(59, 64, HEX));
    add("sentry-token", format!("SENTRY={t}"), t);
    let t = format!("ATATT3{}", rand(60, 180, B64URL));
    add("atlassian-api-token", format!("jira {t}"), t);
    let t = format!("glsa_{}_{}", rand(61, 32, ALNUM), rand(62, 8, HEX));
    add("grafana-token", format!("GRAFANA={t}"), t);
    let t = format!("NRAK-{}", rand(63, 27, UPPER_DIGITS));
    add("newrelic-api-key", format!("NEW_RELIC={t}"), t);
    let t = format!("hvs.{}", rand(64, 90, B64URL));
    add("vault-token", format!("VAULT_TOKEN={t}"), t);
    let t = format!("hvb.{}", rand(65, 120, B64URL));
    add("vault-token", format!("vault {t}"), t);
    for (i, label) in [
        "RSA PRIVATE KEY",
        "EC PRIVATE KEY",
        "DSA PRIVATE KEY",
        "OPENSSH PRIVATE KEY",
        "ENCRYPTED PRIVATE KEY",
        "PRIVATE KEY",
        "PGP PRIVATE KEY BLOCK",
    ]
    .iter()
    .enumerate()
    {
        let key = pem(label, 66 + i as u64, "\n");
        add("private-key", format!("cat id_rsa\n{key}\n$ "), key);
    }
    let t = format!("AGE-SECRET-KEY-1{}", rand(80, 58, BECH32_UPPER));
    add("age-secret-key", format!("# age key\n{t}\n"), t);
    let t = jwt(81);
    add("jwt", format!("cookie session={t}; Path=/"), t);
    let pw = password(82);
    add(
        "database-connection-string",
        format!("DATABASE_URL=postgres://app:{pw}@db.internal:5432/prod"),
        pw,
    );
    let pw = password(83);
    add(
        "database-connection-string",
        format!("mongodb+srv://admin:{pw}@cluster0.abcde.mongodb.net/test"),
        pw,
    );
    let pw = password(84);
    add(
        "database-connection-string",
        format!("redis://:{pw}@cache:6379/0"),
        pw,
    );
    let pw = password(85);
    add(
        "database-connection-string",
        format!("amqp://guest:{pw}@rabbit/vhost"),
        pw,
    );
    let pw = password(86);
    add(
        "database-connection-string",
        format!("mysql://root:{pw}@127.0.0.1:3306/app"),
        pw,
    );
    let pw = password(87);
    add(
        "url-credentials",
        format!("git remote add origin https://deploy:{pw}@git.example.com/repo.git"),
        pw,
    );
    let t = rand(88, 40, ALNUM);
    add(
        "bearer-token",
        format!(r#"curl -H "Authorization: Bearer {t}" https://api.example.com"#),
        t,
    );
    let t = format!("{}.{}", rand(89, 24, ALNUM), rand(90, 30, B64URL));
    add("bearer-token", format!("header was Bearer {t}"), t);
    let t = b64(format!("admin:{}", password(91)).as_bytes(), false);
    add(
        "basic-auth-header",
        format!(r#"{{"headers": {{"Authorization": "Basic {t}"}}}}"#),
        t,
    );
    let pw = password(92);
    add("generic-secret", format!("password={pw}"), pw);
    let pw = password(93);
    add(
        "generic-secret",
        format!(r#"{{"user": "alice", "api_key": "{pw}"}}"#),
        pw,
    );
    let pw = password(94);
    add("generic-secret", format!("export DB_PASSWORD='{pw}'"), pw);
    let pw = password(95);
    add("generic-secret", format!("clientSecret: {pw}\n"), pw);
    let pw = rand(96, 24, ALNUM);
    add("generic-secret", format!("SESSION_SECRET = \"{pw}\""), pw);
    v
}

#[test]
fn every_builtin_kind_has_a_positive_example() {
    let fixtures = fixtures();
    for kind in scanner().kinds() {
        assert!(
            fixtures.iter().any(|(k, _, _)| **k == *kind),
            "no fixture for {kind}"
        );
    }
    for (kind, text, secret) in &fixtures {
        assert_finds(text, kind, secret);
    }
}

#[test]
fn catalogue_has_at_least_25_unique_kinds() {
    let kinds = scanner().kinds();
    assert!(kinds.len() >= 25, "{} kinds", kinds.len());
    let mut sorted: Vec<&str> = kinds.iter().map(|k| &**k).collect();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), kinds.len(), "duplicate kinds");
    for required in [
        "aws-access-key-id",
        "aws-secret-access-key",
        "github-token",
        "gitlab-token",
        "openai-api-key",
        "anthropic-api-key",
        "slack-token",
        "slack-webhook",
        "stripe-key",
        "google-api-key",
        "private-key",
        "jwt",
        "bearer-token",
        "database-connection-string",
        "generic-secret",
    ] {
        assert!(kinds.iter().any(|k| &**k == required), "{required}");
    }
}

#[test]
fn found_ranges_are_exact_and_on_char_boundaries() {
    for (kind, text, secret) in fixtures() {
        // Surround with non-ASCII text: ranges must stay right and on char boundaries.
        let wrapped = format!("Grüße — {text} — ünïcödé");
        let found = scanner().find(&wrapped);
        assert_eq!(found.len(), 1, "{kind}: {wrapped:?}");
        let range = found[0].range.clone();
        assert!(wrapped.is_char_boundary(range.start) && wrapped.is_char_boundary(range.end));
        assert_eq!(&wrapped[range], secret, "{kind}");
    }
}

// === Exact ranges for labelled values ===

#[test]
fn password_assignment_reports_only_the_value() {
    let pw = password(100);
    let text = format!("password={pw}");
    let found = scanner().find(&text);
    assert_eq!(
        found,
        vec![SecretMatch {
            kind: Arc::from("generic-secret"),
            range: 9..9 + pw.len(),
        }]
    );
}

#[test]
fn json_password_reports_only_the_value() {
    let pw = password(101);
    let text = format!(r#"{{"username":"bob","password": "{pw}","remember":true}}"#);
    let found = scanner().find(&text);
    assert_eq!(found.len(), 1);
    let start = text.find(&pw).unwrap();
    assert_eq!(found[0].range, start..start + pw.len());
}

#[test]
fn json_escaped_assignment_reports_only_the_value() {
    let pw = password(102);
    // A shell command inside a JSON string: the quotes around the value are escaped.
    let text = format!(r#"{{"command":"export API_TOKEN=\"{pw}\" && ./deploy.sh"}}"#);
    assert_finds(&text, "generic-secret", &pw);
}

#[test]
fn connection_string_reports_only_the_password() {
    let pw = password(103);
    let text = format!("postgresql://svc_user:{pw}@10.0.0.5:5432/orders?sslmode=require");
    let found = scanner().find(&text);
    assert_eq!(found.len(), 1);
    let start = "postgresql://svc_user:".len();
    assert_eq!(found[0].range, start..start + pw.len());
    assert_eq!(&*found[0].kind, "database-connection-string");
}

#[test]
fn aws_secret_wins_over_generic_on_the_same_range() {
    let secret = rand(104, 40, B64);
    let text = format!("AWS_SECRET_ACCESS_KEY={secret}");
    let found = scanner().find(&text);
    assert_eq!(found.len(), 1);
    assert_eq!(&*found[0].kind, "aws-secret-access-key");
    assert_eq!(found[0].range, 22..62);
}

#[test]
fn specific_token_wins_over_heuristics() {
    let gh = format!("ghp_{}", rand(105, 36, ALNUM));
    assert_finds(&format!("Authorization: Bearer {gh}"), "github-token", &gh);
    assert_finds(&format!("Authorization: token {gh}"), "github-token", &gh);
    assert_finds(&format!("GITHUB_TOKEN={gh}"), "github-token", &gh);
    let t = jwt(106);
    assert_finds(&format!("Authorization: Bearer {t}"), "jwt", &t);
}

#[test]
fn service_account_key_is_one_match() {
    let (_, text, key) = fixtures()
        .into_iter()
        .find(|(k, _, _)| *k == "gcp-service-account-key")
        .unwrap();
    let found = scanner().find(&text);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(&text[found[0].range.clone()], key);
}

#[test]
fn truncated_private_key_is_still_found() {
    let header = ["-----BEGIN RSA ", "PRIVATE KEY-----"].concat();
    let text = format!("{header}\n{}\n", pem_body(107, 4, "\n"));
    let found = scanner().find(&text);
    assert_eq!(found.len(), 1);
    assert_eq!(&*found[0].kind, "private-key");
    assert_eq!(found[0].range, 0..text.len() - 1);
}

#[test]
fn private_key_without_body_is_not_a_secret() {
    let header = ["-----BEGIN RSA ", "PRIVATE KEY-----"].concat();
    let footer = ["-----END RSA ", "PRIVATE KEY-----"].concat();
    assert_clean(&format!(
        "A key file starts with {header} and ends with {footer}."
    ));
    assert_clean(&format!("{header}\nMIIE...\n{footer}"));
    assert_clean(&header.repeat(3));
}

#[test]
fn several_secrets_are_sorted_and_disjoint() {
    let aws = format!("AKIA{}", rand(108, 16, UPPER_DIGITS));
    let gh = format!("ghp_{}", rand(109, 36, ALNUM));
    let pw = password(110);
    let text = format!("a={aws} b={gh} c: postgres://u:{pw}@h/db d={aws}");
    let found = scanner().find(&text);
    let kinds: Vec<&str> = found.iter().map(|m| &*m.kind).collect();
    assert_eq!(
        kinds,
        [
            "aws-access-key-id",
            "github-token",
            "database-connection-string",
            "aws-access-key-id"
        ]
    );
    for pair in found.windows(2) {
        assert!(pair[0].range.end <= pair[1].range.start);
    }
}

#[test]
fn adjacent_fixed_length_tokens_are_all_found() {
    // Patterns that consume a delimiter after the secret must not hide the next one.
    let a = format!("AIza{}", rand(111, 35, B64URL));
    let b = format!("AIza{}", rand(112, 35, B64URL));
    let text = format!("{a} {b}");
    assert_eq!(
        found(&text),
        vec![
            ("google-api-key".to_owned(), a),
            ("google-api-key".to_owned(), b)
        ]
    );
    let a = format!("{}:AA{}", rand(113, 9, DIGITS), rand(114, 33, B64URL));
    let b = format!("{}:AA{}", rand(115, 9, DIGITS), rand(116, 33, B64URL));
    let text = format!("{a},{b}");
    assert_eq!(found(&text).len(), 2, "{text}");
}

// === Redaction ===

#[test]
fn redact_replaces_each_secret_with_its_kind() {
    let gh = format!("ghp_{}", rand(117, 36, ALNUM));
    let pw = password(118);
    let text = format!(r#"{{"token": "{gh}", "dsn": "mysql://app:{pw}@db/prod"}}"#);
    assert_eq!(
        scanner().redact(&text),
        r#"{"token": "[REDACTED:github-token]", "dsn": "mysql://app:[REDACTED:database-connection-string]@db/prod"}"#
    );
}

#[test]
fn redact_keeps_the_label_of_a_labelled_value() {
    let pw = password(119);
    assert_eq!(
        scanner().redact(&format!("DB_PASSWORD={pw}\nDB_USER=app")),
        "DB_PASSWORD=[REDACTED:generic-secret]\nDB_USER=app"
    );
}

#[test]
fn redact_borrows_when_nothing_is_found() {
    let text = r#"{"path": "/srv/data/report.md"}"#;
    assert!(matches!(scanner().redact(text), Cow::Borrowed(t) if t == text));
}

#[test]
fn redacted_text_is_clean_and_redaction_is_idempotent() {
    for (kind, text, _) in fixtures() {
        let once = scanner().redact(&text).into_owned();
        assert!(once.contains(&format!("[REDACTED:{kind}]")), "{once}");
        assert!(!scanner().contains_secret(&once), "{kind}: {once}");
        assert_eq!(scanner().redact(&once), once);
    }
}

// === Custom patterns ===

fn custom(id: &str, re: &str) -> (String, Regex) {
    (id.to_owned(), Regex::new(re).unwrap())
}

#[test]
fn custom_pattern_without_group_matches_whole() {
    let s = SecretScanner::with_custom(&[custom("acme-token", r"acme_[a-z0-9]{24}")]);
    let t = format!(
        "acme_{}",
        rand(120, 24, b"abcdefghijklmnopqrstuvwxyz0123456789")
    );
    let text = format!("use {t} here");
    let found = s.find(&text);
    assert_eq!(found.len(), 1);
    assert_eq!(&*found[0].kind, "acme-token");
    assert_eq!(&text[found[0].range.clone()], t);
    assert!(s.contains_secret(&text));
    assert_eq!(s.redact(&text), "use [REDACTED:acme-token] here");
    assert!(s.kinds().iter().any(|k| &**k == "acme-token"));
    // The built-in scanner does not know it.
    assert!(!scanner().contains_secret(&text));
}

#[test]
fn custom_pattern_with_secret_group_matches_the_group() {
    let s = SecretScanner::with_custom(&[custom(
        "internal-db",
        r"(?i)corp-db-pass\s*:\s*(?P<secret>\S+)",
    )]);
    let text = "CORP-DB-PASS: tr0ub4dor&3 # rotated";
    let found = s.find(text);
    assert_eq!(found.len(), 1);
    assert_eq!(&text[found[0].range.clone()], "tr0ub4dor&3");
    assert_eq!(
        s.redact(text),
        "CORP-DB-PASS: [REDACTED:internal-db] # rotated"
    );
}

#[test]
fn custom_patterns_keep_builtins_and_win_over_heuristics() {
    let s = SecretScanner::with_custom(&[custom("acme-key", r"ak-[A-Za-z0-9]{20}")]);
    let t = format!("ak-{}", rand(121, 20, ALNUM));
    let found = s.find(&format!("api_key={t}"));
    assert_eq!(found.len(), 1);
    assert_eq!(&*found[0].kind, "acme-key");
    let gh = format!("ghp_{}", rand(122, 36, ALNUM));
    assert_eq!(&*s.find(&gh)[0].kind, "github-token");
    assert_eq!(s.kinds().len(), scanner().kinds().len() + 1);
}

#[test]
fn custom_pattern_that_matches_empty_is_harmless() {
    let s =
        SecretScanner::with_custom(&[custom("empty", r"x*"), custom("opt", r"k=(?P<secret>v*)")]);
    assert!(s.find("abc k= def").is_empty());
    assert!(!s.contains_secret("Grüße k="));
    let found = s.find("xx k=vv");
    let got: Vec<(&str, Range<usize>)> =
        found.iter().map(|m| (&*m.kind, m.range.clone())).collect();
    assert_eq!(got, [("empty", 0..2), ("opt", 5..7)]);
}

#[test]
fn many_custom_patterns() {
    let patterns: Vec<(String, Regex)> = (0..100)
        .map(|i| custom(&format!("org-{i}"), &format!(r"org{i}_[a-f0-9]{{16}}")))
        .collect();
    let s = SecretScanner::with_custom(&patterns);
    let text = format!("x org57_{} y", rand(123, 16, HEX));
    let found = s.find(&text);
    assert_eq!(found.len(), 1);
    assert_eq!(&*found[0].kind, "org-57");
}

#[test]
fn duplicate_custom_ids_are_listed_once() {
    let s = SecretScanner::with_custom(&[
        custom("acme", r"acme1_[0-9]{8}"),
        custom("acme", r"acme2_[0-9]{8}"),
        custom("github-token", r"ghx_[0-9]{8}"),
    ]);
    assert_eq!(s.kinds().len(), scanner().kinds().len() + 1);
    assert_eq!(s.find("acme2_12345678").len(), 1);
}

// === False positives ===

#[test]
fn uuids_and_hashes_are_not_secrets() {
    assert_clean("request 123e4567-e89b-12d3-a456-426614174000 done");
    for i in 0..20 {
        assert_clean(&format!(
            "id={} trace_id={}",
            uuid(200 + i),
            rand(300 + i, 32, HEX)
        ));
        // git SHAs and sha256 digests, bare and labelled with non-secret keys.
        let sha1 = rand(400 + i, 40, HEX);
        let sha256 = rand(500 + i, 64, HEX);
        assert_clean(&format!("commit {sha1}\nAuthor: A <a@example.com>"));
        assert_clean(&format!("image@sha256:{sha256} digest: sha256:{sha256}"));
        assert_clean(&format!("{sha256}  release.tar.gz"));
    }
    assert_clean("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

#[test]
fn base64_images_are_not_secrets() {
    let png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==";
    assert_clean(png);
    assert_clean(&format!(
        r#"{{"type":"image","data":"{png}","mimeType":"image/png"}}"#
    ));
    assert_clean(&format!(r#"<img src="data:image/png;base64,{png}">"#));
}

#[test]
fn prose_about_passwords_and_tokens_is_not_a_secret() {
    for text in [
        "Please reset your password here: https://example.com/reset",
        "The token expired. Generate a new API key in the settings page.",
        "Bearer tokens are sent in the Authorization header.",
        "Password: must be at least 12 characters long",
        "Your secret is safe with us; the private key never leaves the device.",
        "Use `Authorization: Bearer <token>` where token is your personal access token.",
        "Set the api_key parameter and the password field, then click Save.",
        "The -----BEGIN PRIVATE KEY----- header marks a PKCS#8 key.",
    ] {
        assert_clean(text);
    }
}

#[test]
fn placeholders_are_not_secrets() {
    for text in [
        "password=changeme",
        "password=changeme123456",
        "api_key: <your key>",
        "api_key: <YOUR_API_KEY_HERE>",
        "token: ${GITHUB_TOKEN}",
        "token: $GITHUB_TOKEN_VALUE_X",
        r#""password": "********""#,
        r#""password": "****************""#,
        "API_KEY=your_api_key_here",
        "secret=xxxxxxxxxxxxxxxxxxxx",
        "SECRET_KEY=XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX",
        r#"token: "{{ .Values.github.token }}""#,
        "password: %(db_password)s",
        "password: example-password-1",
        "client_secret=REPLACE_WITH_CLIENT_SECRET",
        "api_key = 'sk-...'",
        "aws_secret_access_key = xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
        "Authorization: Bearer <token>",
        "Authorization: Bearer $TOKEN",
        "Authorization: Bearer YOUR_ACCESS_TOKEN",
        "Authorization: Bearer ${{ secrets.GITHUB_TOKEN }}",
        "postgres://user:password@localhost/db",
        "postgres://user:${DB_PASSWORD}@db:5432/app",
        "postgresql://{user}:{password}@{host}/{db}",
        "https://user:pass@example.com/",
        "token=[REDACTED:github-token]",
        "ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
        "AKIAXXXXXXXXXXXXXXXX",
        "sk-proj-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    ] {
        assert_clean(text);
    }
}

#[test]
fn urls_without_credentials_are_not_secrets() {
    for text in [
        "https://github.com/org/repo/blob/main/README.md?plain=1#L10",
        "https://example.com:8443/path/to/page",
        "ssh://git@github.com/org/repo.git",
        "git@github.com:org/repo.git",
        "http://localhost:3000/api?token_type=bearer&expires_in=3600",
        "postgres://user@host/db",
        "postgres://db.internal:5432/app",
        "mongodb://mongo-0.mongo,mongo-1.mongo/app?replicaSet=rs0",
        "redis://cache:6379/0",
        "http://[::1]:8080/health",
        "mailto:alice@example.com",
        "http://host:8080@evil.example/",
    ] {
        assert_clean(text);
    }
}

#[test]
fn package_versions_and_paths_are_not_secrets() {
    for text in [
        "lodash@4.17.21",
        "@types/node@^20.11.5",
        r#"{"name": "app", "version": "1.2.3-beta.4", "dependencies": {"react": "^18.2.0"}}"#,
        r#""integrity": "sha512-v2kDEe57lecTulaDIuNTPy3Ry4gLGJ6Z1O3vE1krgXZNrsQ+LFTGHVxVjcXPs17LhbZVGedAJv8XZ1tvj5FvSg==""#,
        "/home/user/.ssh/id_rsa",
        r"C:\Users\me\secrets\token.txt",
        "/var/run/secrets/kubernetes.io/serviceaccount/token",
        "src/auth/password_reset.rs:42:17",
        "PWD=/home/alice/projects/mcp-guard-proxy",
        "OLDPWD=/home/alice/projects/mcp-guard",
        "token_file=/run/secrets/api-token-file",
    ] {
        assert_clean(text);
    }
}

#[test]
fn typical_mcp_arguments_are_not_secrets() {
    for text in [
        r#"{"path": "/srv/data/report.md"}"#,
        r#"{"path":"/etc/passwd"}"#,
        r#"{"command":"ls -la","cwd":"/srv/app"}"#,
        r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"read_file","arguments":{"path":"/srv/data/report.md"}}}"#,
        r#"{"owner":"acme","repo":"api","title":"Fix login","body":"The password reset token expires too early."}"#,
        r#"{"url":"https://api.example.com/v1/items?page=2&per_page=50"}"#,
        r#"{"query":"password reset flow","limit":10}"#,
        r#"{"nextPageToken": "CiAKGjBpNDd2Nmp2Zml2cXRwYjBpOXA5aQ", "items": []}"#,
        r#"{"usage": {"input_tokens": 1234, "output_tokens": 567, "max_tokens": 4096}}"#,
        r#"<input type="hidden" name="csrf_token" value="IjQ5ZjFiZWMxNGQ3NDk0YjQ4NDA4YTIxYjQ4MjMzOGJhIg">"#,
        "2024-01-15T10:30:00Z INFO request_id=4bf92f3577b34da6a3ce929d0e0e4736 status=200",
    ] {
        assert_clean(text);
    }
}

#[test]
fn sql_queries_are_not_secrets() {
    for text in [
        "SELECT id, email, password_hash FROM users WHERE reset_token = $1 AND token_expires_at > now()",
        "UPDATE users SET password = crypt($1, gen_salt('bf')) WHERE id = $2",
        "INSERT INTO api_keys (name, key_hash) VALUES ('ci', digest($1, 'sha256'))",
        "SELECT * FROM sessions WHERE token = :token AND user_id = :user_id",
    ] {
        assert_clean(text);
    }
}

#[test]
fn json_schemas_are_not_secrets() {
    let schema = r##"{
      "name": "create_user",
      "description": "Creates a user. The password must be at least 12 characters.",
      "inputSchema": {
        "type": "object",
        "properties": {
          "password": {"type": "string", "minLength": 12, "description": "The new password"},
          "api_key": {"type": "string", "pattern": "^[A-Za-z0-9]{32}$"},
          "token": {"type": "string", "format": "password"},
          "clientSecret": {"$ref": "#/definitions/Secret"}
        },
        "required": ["password"]
      }
    }"##;
    assert_clean(schema);
}

#[test]
fn source_code_is_not_a_secret() {
    for text in [
        r#"password = os.environ["DB_PASSWORD"]"#,
        "const token = process.env.GITHUB_TOKEN;",
        "api_key: Optional[str] = None",
        "password: str = Field(..., min_length=12)",
        "self.access_token = access_token",
        r#"token = request.headers.get("Authorization")"#,
        "let secret = config.get_secret(SecretName::Database)?;",
        "password = hashlib.sha256(raw_password1).hexdigest()",
        "secret: prod-db-password-2024",
        "secretName: db-credentials",
        "if password == confirm_password_value:",
    ] {
        assert_clean(text);
    }
}

#[test]
fn code_found_in_real_sources_is_not_a_secret() {
    // Shapes seen when scanning the Rust, Python and Node sources of a developer machine.
    for text in [
        "pub paren_token: token::Paren,",
        "struct_token: Token![struct],",
        "let brace_token = braced!(content in input);",
        "dot2_token: node.dot2_token,",
        "let raw_private_key: Curve25519SeedBin<'_> = private_key",
        "let private_key = ec::Seed::generate(alg.curve, rng, cpu)?;",
        "let token = NEXT_TOKEN.fetch_add(2, Ordering::Relaxed);",
        "const TIMEOUT_TOKEN: wasi::Userdata = wasi::Userdata::MAX;",
        "token: CancellationToken|None = None",
        "let private_key = EcPrivateKeyBin::new(bytes);",
        r#""output_token": "NextPageToken","#,
        r#""ClientToken": "abcd12f2-46da-4fdb-b8d5-fbd4c466928f","#,
        r#""AWS::AppSync::ApiKey": "3d104ea0be48564b","#,
        "arn:aws:secretsmanager:us-west-2:123456789012:secret:MyTestSecret-a1b2c3",
        "password=*all*authentication*tokens*updated*successfully*",
        "token=secret%3Dpassword",
        "const myURL = new URL('https://abc:xyz@example.com');",
        "cvs://:pserver:anoncvs@sources.redhat.com:/cvs/src",
        "def sign(private_key: rsa.RSAPrivateKey, data: bytes) -> bytes:",
        "private_key: SSHCertPrivateKeyTypes,",
        "password: HTTPServerConfig = None",
    ] {
        assert_clean(text);
    }
}

#[test]
fn unusual_but_real_values_are_still_found() {
    // Random letters only, unquoted: not an identifier.
    let t = rand(130, 20, LETTERS);
    assert_finds(&format!("API_TOKEN={t}\n"), "generic-secret", &t);
    // A human password in a string literal.
    let pw = ["MySecret", "Pass123"].concat();
    assert_finds(&format!(r#"{{"password": "{pw}"}}"#), "generic-secret", &pw);
    // Base64 with `+`, `/` and padding in YAML.
    let t = format!("{}==", rand(131, 30, B64));
    assert_finds(&format!("  client_secret: {t}\n"), "generic-secret", &t);
    // A token in a query string stops at `&`.
    let t = rand(132, 32, ALNUM);
    assert_finds(
        &format!("GET /export?format=csv&access_token={t}&page=2"),
        "generic-secret",
        &t,
    );
    // A JWT as an OIDC `id_token`.
    let t = jwt(133);
    assert_finds(&format!(r#"{{"id_token": "{t}"}}"#), "jwt", &t);
}

// === Size and robustness ===

/// About 1 MB of benign, varied text.
fn benign_megabyte() -> String {
    let mut s = String::with_capacity(1 << 20);
    let mut i = 0;
    while s.len() < 1 << 20 {
        s.push_str(&format!(
            "{{\"id\": \"{}\", \"commit\": \"{}\", \"path\": \"/srv/data/file-{i}.md\", \"text\": \"Reset your password here; the token budget is {i} tokens. Grüße!\"}}\n",
            uuid(i),
            rand(i + 1, 40, HEX)
        ));
        i += 1;
    }
    s
}

#[test]
fn a_megabyte_without_secrets_is_clean() {
    let text = benign_megabyte();
    assert!(text.len() >= 1 << 20);
    assert_clean(&text);
}

#[test]
fn a_secret_at_the_end_of_a_megabyte_is_found() {
    let mut text = benign_megabyte();
    let gh = format!("ghp_{}", rand(600, 36, ALNUM));
    let start = text.len() + 6;
    text.push_str(&format!("token {gh}"));
    let found = scanner().find(&text);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].range, start..start + gh.len());
}

#[test]
fn repetitive_adversarial_inputs_complete() {
    // Each of these would be quadratic with a naive "search again from the next byte" loop or
    // an unbounded look-ahead for `-----END`; correctness only, timing belongs in benchmarks.
    let header = ["-----BEGIN ", "PRIVATE KEY-----"].concat();
    for seed in [
        header.as_str(),
        "password=",
        "token: ${GITHUB_TOKEN}\n",
        "Authorization: Basic ",
        "Authorization: Bearer ",
        "https://u:",
        "sk-proj-",
        "eyJhbGciOiJIUzI1NiJ9.",
        "1234567890:",
        "AKIA",
        "a",
        "\"private_key\": \"",
    ] {
        let text = seed.repeat(100_000 / seed.len());
        let found = scanner().find(&text);
        assert_eq!(
            found.is_empty(),
            !scanner().contains_secret(&text),
            "{seed}"
        );
    }
}

#[test]
fn empty_and_tiny_inputs() {
    assert_clean("");
    assert_clean("a");
    assert_clean("é");
    assert_clean("password=");
    assert_clean("AKIA");
}

#[test]
fn entropy_helper() {
    assert_eq!(shannon_entropy(""), 0.0);
    assert_eq!(shannon_entropy("aaaa"), 0.0);
    assert!((shannon_entropy("abcd") - 2.0).abs() < 1e-9);
    assert!(shannon_entropy(&rand(700, 40, B64)) > 4.0);
}

#[test]
fn base64_helper_round_trips() {
    for data in [
        &b""[..],
        b"a",
        b"ab",
        b"abc",
        b"admin:secret",
        b"\xff\x00\x10",
    ] {
        assert_eq!(base64_decode(&b64(data, false)).unwrap(), data);
        assert_eq!(base64_decode(&b64(data, true)).unwrap(), data);
    }
    assert!(base64_decode("a b").is_none());
}

#[test]
fn clones_and_default_behave_like_builtin() {
    let s = SecretScanner::default();
    let c = s.clone();
    let gh = format!("ghp_{}", rand(701, 36, ALNUM));
    assert_eq!(s.find(&gh), c.find(&gh));
    assert_eq!(s.kinds(), scanner().kinds());
}
