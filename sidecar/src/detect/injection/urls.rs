//! URLs that carry data: request-capture services, templates for data in the path or query, and
//! long payloads in image links.

/// A URL without the punctuation that ends the sentence around it or closes a bracket opened
/// before it.
pub(super) fn trim_url(url: &str) -> &str {
    // A markdown link after an image: `[![badge](url)](link)`.
    let mut url = url.find("](").map_or(url, |p| &url[..p]);
    let pairs = [('(', ')'), ('[', ']'), ('{', '}'), ('<', '>')];
    let mut balance =
        pairs.map(|(o, c)| url.matches(o).count() as isize - url.matches(c).count() as isize);
    while let Some(last) = url.chars().next_back() {
        let closer = pairs.iter().position(|(_, c)| *c == last);
        let unbalanced = closer.is_some_and(|i| balance[i] < 0);
        if !(unbalanced || matches!(last, '.' | ',' | ';' | ':' | '!' | '?' | '\'' | '"' | '*')) {
            break;
        }
        if let Some(i) = closer {
            balance[i] += 1;
        }
        url = &url[..url.len() - last.len_utf8()];
    }
    url
}

/// Hosts of request-capture and tunnelling services (suffix match).
const CAPTURE_HOSTS: &[&str] = &[
    "webhook.site",
    "webhook.cool",
    "requestbin.net",
    "requestbin.com",
    "m.pipedream.net",
    "hookbin.com",
    "requestcatcher.com",
    "beeceptor.com",
    "ngrok.io",
    "ngrok.app",
    "ngrok-free.app",
    "ngrok-free.dev",
    "burpcollaborator.net",
    "oastify.com",
    "interact.sh",
    "oast.pro",
    "oast.live",
    "oast.site",
    "oast.online",
    "oast.fun",
    "oast.me",
    "canarytokens.com",
    "dnslog.cn",
    "ceye.io",
    "trycloudflare.com",
    "serveo.net",
    "loca.lt",
    "localhost.run",
    "requestinspector.com",
    "postb.in",
    "ptsv2.com",
    "ptsv3.com",
    "mockbin.org",
    "pipedream.net",
];

/// Placeholder words that name data worth stealing (query templates).
const DATA_TOKENS: &[&str] = &[
    "data",
    "secret",
    "secrets",
    "password",
    "passwords",
    "passwd",
    "pwd",
    "credential",
    "credentials",
    "cred",
    "creds",
    "conversation",
    "conversations",
    "history",
    "context",
    "summary",
    "memory",
    "memories",
    "env",
    "environment",
    "ssh",
    "cookie",
    "cookies",
    "payload",
    "prompt",
    "private",
    "personal",
    "pii",
    "exfil",
    "leak",
    "stolen",
    "loot",
    "dump",
    "sensitive",
    "confidential",
    "transcript",
];

/// Placeholder words that name data worth stealing in a URL path (stricter: REST paths are full
/// of `{id}`, `{key}`, `{token}`).
const PATH_TOKENS: &[&str] = &[
    "data",
    "secret",
    "secrets",
    "apikey",
    "password",
    "passwords",
    "credential",
    "credentials",
    "conversation",
    "conversations",
    "chat",
    "history",
    "summary",
    "memory",
    "env",
    "ssh",
    "cookie",
    "cookies",
    "payload",
    "prompt",
    "private",
    "pii",
    "exfil",
    "leak",
    "stolen",
    "loot",
    "dump",
    "sensitive",
    "confidential",
    "transcript",
];

/// Query parameter names that carry data out when filled from a template.
const DATA_PARAMS: &[&str] = &[
    "data",
    "d",
    "payload",
    "secret",
    "secrets",
    "password",
    "pw",
    "pwd",
    "cred",
    "creds",
    "credentials",
    "conversation",
    "convo",
    "history",
    "memory",
    "summary",
    "context",
    "env",
    "ssh",
    "cookie",
    "cookies",
    "dump",
    "stolen",
    "loot",
    "exfil",
    "leak",
];

/// Longest query value of an image link that is not a payload (bytes).
const IMAGE_VALUE_MAX: usize = 100;

/// Why `url` (already trimmed) carries data, if it does. For images (which clients fetch
/// without asking) any template and any long value count; in a string literal of code
/// (`literal`), only capture services and prose placeholders do.
pub(super) fn url_carries_data(url: &str, image: bool, literal: bool) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let cut = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..cut];
    let tail = &rest[cut..];
    let host = authority.rsplit('@').next().unwrap_or(authority);
    let host = host.split(':').next().unwrap_or(host);
    if let Some(service) = CAPTURE_HOSTS.iter().find(|d| host_is(host, d)) {
        let subdomain = host.len() > service.len();
        if subdomain || tail.trim_end_matches('/').len() > 1 {
            return Some(format!("request-capture service `{service}`"));
        }
    }
    let tail = tail.split('#').next().unwrap_or(tail);
    let (path, query) = match tail.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (tail, None),
    };
    for seg in path.split('/') {
        if let Some(inner) = placeholder(seg).filter(|_| !literal)
            && (image || has_token(inner, PATH_TOKENS))
        {
            return Some("data template in the URL path".to_owned());
        }
    }
    for pair in query.into_iter().flat_map(|q| q.split('&')) {
        let (name, value) = pair.split_once('=').unwrap_or(("", pair));
        if unterminated(value) {
            return Some("prose placeholder in the URL query".to_owned());
        }
        if let Some(inner) = placeholder(value).filter(|_| !literal)
            && (image
                || has_token(inner, DATA_TOKENS)
                || DATA_PARAMS.iter().any(|p| name.eq_ignore_ascii_case(p)))
        {
            return Some("data template in the URL query".to_owned());
        }
        if image && payload(value) {
            return Some("long payload in the query of an image link".to_owned());
        }
    }
    None
}

/// Whether a query value looks like data: long, and either base64 or URL-encoded prose.
fn payload(value: &str) -> bool {
    if value.len() < IMAGE_VALUE_MAX || value.starts_with("data:") || value.starts_with("http") {
        return false;
    }
    let base64 = value
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'=' | b'-' | b'_'));
    let spaces = value.matches("%20").count() + value.matches('+').count();
    base64 || spaces * 12 >= value.len()
}

fn host_is(host: &str, domain: &str) -> bool {
    host.len() >= domain.len()
        && host.as_bytes()[host.len() - domain.len()..].eq_ignore_ascii_case(domain.as_bytes())
        && (host.len() == domain.len() || host.as_bytes()[host.len() - domain.len() - 1] == b'.')
}

/// Longest placeholder name (bytes).
const PLACEHOLDER_MAX: usize = 64;

/// The inside of the template placeholder that `s` starts with (`{x}`, `{{x}}`, `<x>`, `[x]`,
/// `${x}`, `$X`, URL-encoded brackets), or `s` itself when it is `%s` or `...`.
fn placeholder(s: &str) -> Option<&str> {
    for (open, close) in [
        ("{", "}"),
        ("<", ">"),
        ("[", "]"),
        ("%7B", "%7D"),
        ("%7b", "%7d"),
        ("%3C", "%3E"),
        ("%3c", "%3e"),
        ("%5B", "%5D"),
        ("%5b", "%5d"),
        ("${", "}"),
        ("$", ""),
    ] {
        let Some(inner) = s.strip_prefix(open) else {
            continue;
        };
        let inner = inner.trim_start_matches(open);
        let inner = match inner.find(close).filter(|_| !close.is_empty()) {
            Some(q) => &inner[..q],
            None => inner,
        };
        if open == "$" && !inner.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
            return None;
        }
        return (!inner.is_empty() && inner.len() <= PLACEHOLDER_MAX).then_some(inner);
    }
    // `INSERT_THE_KEY_HERE`, `USER_DATA`.
    let upper = s.len() >= 4
        && s.contains('_')
        && s.bytes()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == b'_');
    (upper || matches!(s, "%s" | "..." | "…")).then_some(s)
}

/// Whether `s` opens a placeholder it does not close: the URL ended at white space inside it
/// (`?q={the user's last request}`), a template described in prose.
fn unterminated(s: &str) -> bool {
    [("{", "}"), ("<", ">"), ("[", "]")]
        .iter()
        .any(|(open, close)| s.starts_with(open) && !s.contains(close))
}

/// Whether `inner` has a word (split at non-alphanumerics and lower→upper case changes) in
/// `words`, ignoring ASCII case.
fn has_token(inner: &str, words: &[&str]) -> bool {
    let b = inner.as_bytes();
    let mut start = 0;
    for i in 0..=b.len() {
        let boundary = i == b.len()
            || !b[i].is_ascii_alphanumeric()
            || (i > start && b[i].is_ascii_uppercase() && b[i - 1].is_ascii_lowercase());
        if boundary {
            if i > start {
                let word = &inner[start..i];
                if words.iter().any(|w| word.eq_ignore_ascii_case(w)) {
                    return true;
                }
            }
            start = if i < b.len() && b[i].is_ascii_alphanumeric() {
                i
            } else {
                i + 1
            };
        }
    }
    false
}
