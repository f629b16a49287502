//! The built-in catalogue of secret patterns: one [`Spec`] per secret format (its id, regular
//! expression, post-validation [`Check`] and [`Tier`]), in priority order. Compiled once by the
//! parent module.

/// The separator between a label and its value: optional closing quote (JSON-escaped too), `=`,
/// `:`, `:=` or `=>`, spaces, optional opening quote.
macro_rules! sep {
    () => {
        r#"\\?["']?[ \t]*(?:=>|:=|[:=])[ \t]*\\?["']?"#
    };
}

/// `user:` of a URL's userinfo (possibly empty, e.g. `redis://:pw@host`).
macro_rules! url_user {
    () => {
        r"[A-Za-z0-9._~%!$&*+=-]*:"
    };
}

/// The password of a URL's userinfo, then `@` and the start of a host.
macro_rules! url_password {
    () => {
        r#"(?P<secret>[!-~--["'`<>\\/@]]+)@[A-Za-z0-9\[]"#
    };
}

/// One entry of the built-in catalogue.
#[derive(Debug)]
pub(super) struct Spec {
    /// Stable id of the secret type.
    pub(super) kind: &'static str,
    /// The regular expression; the secret is the group named `secret` if any, else the whole match.
    pub(super) regex: &'static str,
    pub(super) check: Check,
    pub(super) tier: Tier,
}

const fn spec(kind: &'static str, regex: &'static str, check: Check) -> Spec {
    Spec {
        kind,
        regex,
        check,
        tier: Tier::Specific,
    }
}

const fn heuristic(kind: &'static str, regex: &'static str, check: Check) -> Spec {
    Spec {
        kind,
        regex,
        check,
        tier: Tier::Heuristic,
    }
}

/// Random-looking token with a distinctive prefix: entropy ≥ 3.0 bits/char, at least two of
/// lower case, upper case and digits, no mask such as `xxxxxxxx`.
const TOKEN: Check = Check::Random {
    entropy: 3.0,
    classes: 2,
};

/// The built-in catalogue, in priority order (on equal ranges the earlier entry wins). Several
/// entries may share a kind.
pub(super) const CATALOGUE: &[Spec] = &[
    // --- Cloud providers ---
    spec(
        "aws-access-key-id",
        r"(?-u:\b)(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}(?-u:\b)",
        Check::Random {
            entropy: 3.0,
            classes: 1,
        },
    ),
    spec(
        "aws-secret-access-key",
        concat!(
            r"(?i-u:(?:aws[_.-]?)?secret[_.-]?access[_.-]?key|aws[_.-]?secret(?:[_.-]?key)?)",
            sep!(),
            r"(?P<secret>[A-Za-z0-9/+]{40})(?:[^A-Za-z0-9/+=]|$)"
        ),
        Check::Labelled,
    ),
    spec(
        "google-api-key",
        r"(?-u:\b)(?P<secret>AIza[A-Za-z0-9_-]{35})(?:[^A-Za-z0-9_-]|$)",
        TOKEN,
    ),
    spec(
        "google-oauth-client-secret",
        r"(?-u:\b)(?P<secret>GOCSPX-[A-Za-z0-9_-]{28})(?:[^A-Za-z0-9_-]|$)",
        TOKEN,
    ),
    spec(
        "google-oauth-access-token",
        r"(?-u:\b)ya29\.[A-Za-z0-9_-]{30,}",
        TOKEN,
    ),
    spec(
        "gcp-service-account-key",
        r#"\\?"private_key\\?"[ \t]*:[ \t]*\\?"(?P<secret>-----BEGIN PRIVATE KEY-----)"#,
        Check::PrivateKey,
    ),
    spec(
        "azure-storage-key",
        r"(?i-u:AccountKey)[ \t]*=[ \t]*(?P<secret>[A-Za-z0-9+/]{40,}={0,2})",
        Check::Labelled,
    ),
    spec(
        "azure-shared-access-key",
        r"(?i-u:SharedAccessKey)[ \t]*=[ \t]*(?P<secret>[A-Za-z0-9+/]{40,}={0,2})",
        Check::Labelled,
    ),
    spec(
        "digitalocean-token",
        r"(?-u:\b)do[por]_v1_[a-f0-9]{64}(?-u:\b)",
        TOKEN,
    ),
    spec(
        "databricks-token",
        r"(?-u:\b)dapi[a-f0-9]{32}(?:-[0-9]+)?(?-u:\b)",
        TOKEN,
    ),
    // --- Forges and registries ---
    spec(
        "github-token",
        r"(?-u:\b)gh[pousr]_[A-Za-z0-9]{36,}(?-u:\b)",
        TOKEN,
    ),
    spec(
        "github-fine-grained-pat",
        r"(?-u:\b)github_pat_[A-Za-z0-9_]{60,}",
        TOKEN,
    ),
    spec(
        "gitlab-token",
        r"(?-u:\b)(?:gl(?:pat|dt|rt|ptt|ft|soat|cbt|imt|agent|oas)-[A-Za-z0-9_-]{20,}(?:\.[A-Za-z0-9_-]+){0,2}|GR1348941[A-Za-z0-9_-]{20,})",
        TOKEN,
    ),
    spec("npm-token", r"(?-u:\b)npm_[A-Za-z0-9]{36}(?-u:\b)", TOKEN),
    spec("pypi-token", r"(?-u:\b)pypi-AgE[A-Za-z0-9_-]{50,}", TOKEN),
    spec(
        "docker-hub-pat",
        r"(?-u:\b)dckr_(?:pat|oat)_[A-Za-z0-9_-]{20,}",
        TOKEN,
    ),
    spec(
        "huggingface-token",
        r"(?-u:\b)(?:hf_|api_org_)[A-Za-z0-9]{34}(?-u:\b)",
        TOKEN,
    ),
    // --- AI providers ---
    spec(
        "anthropic-api-key",
        r"(?-u:\b)sk-ant-(?:api|admin|oat|ort|sid)[0-9]{2}-[A-Za-z0-9_-]{32,}",
        Check::Random {
            entropy: 3.5,
            classes: 2,
        },
    ),
    spec(
        "openai-api-key",
        r"(?-u:\b)(?:sk-(?:proj|svcacct|admin|None)-[A-Za-z0-9_-]{40,}|sk-[A-Za-z0-9]{48}(?-u:\b))",
        Check::Random {
            entropy: 3.5,
            classes: 2,
        },
    ),
    // --- Messaging and SaaS ---
    spec(
        "slack-token",
        r"(?-u:\b)(?:xox[abeoprs]|xapp)-[A-Za-z0-9-]{10,}",
        TOKEN,
    ),
    spec(
        "slack-webhook",
        r"(?:https?://)?hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9_/+-]{20,}",
        TOKEN,
    ),
    spec(
        "stripe-key",
        r"(?-u:\b)[rs]k_(?:live|test)_[A-Za-z0-9]{20,}",
        TOKEN,
    ),
    spec(
        "stripe-webhook-secret",
        r"(?-u:\b)whsec_[A-Za-z0-9+/=]{32,}",
        TOKEN,
    ),
    spec(
        "twilio-api-key",
        r"(?-u:\b)SK[0-9a-fA-F]{32}(?-u:\b)",
        TOKEN,
    ),
    spec(
        "twilio-account-sid",
        r"(?-u:\b)AC[0-9a-f]{32}(?-u:\b)",
        TOKEN,
    ),
    spec(
        "sendgrid-api-key",
        r"(?-u:\b)(?P<secret>SG\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43})(?:[^A-Za-z0-9_-]|$)",
        TOKEN,
    ),
    spec(
        "mailgun-api-key",
        r"(?-u:\b)key-[0-9a-f]{32}(?-u:\b)",
        TOKEN,
    ),
    spec(
        "shopify-token",
        r"(?-u:\b)shp(?:at|ss|ca|pa)_[a-fA-F0-9]{32}(?-u:\b)",
        TOKEN,
    ),
    spec(
        "discord-bot-token",
        r"(?-u:\b)[MNO][A-Za-z0-9_-]{23,27}\.[A-Za-z0-9_-]{6,7}\.[A-Za-z0-9_-]{27,40}",
        Check::DiscordBot,
    ),
    spec(
        "discord-webhook",
        r"(?:https?://)?(?:ptb\.|canary\.)?discord(?:app)?\.com/api/webhooks/[0-9]{17,20}/[A-Za-z0-9_-]{60,}",
        TOKEN,
    ),
    spec(
        "telegram-bot-token",
        r"(?:^|[^0-9])(?P<secret>[0-9]{8,10}:[A-Za-z0-9_-]{35})(?:[^A-Za-z0-9_-]|$)",
        Check::Telegram,
    ),
    spec(
        "datadog-api-key",
        concat!(
            r"(?i-u:(?:datadog|dd)[_.-]?(?:api|app(?:lication)?)[_.-]?key)",
            sep!(),
            r"(?P<secret>[0-9a-f]{40}|[0-9a-f]{32})(?-u:\b)"
        ),
        TOKEN,
    ),
    spec(
        "heroku-api-key",
        concat!(
            r"(?i-u:heroku[_.-]?(?:api[_.-]?)?(?:key|token))",
            sep!(),
            r"(?P<secret>[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})(?-u:\b)"
        ),
        Check::None,
    ),
    spec("heroku-api-key", r"(?-u:\b)HRKU-[A-Za-z0-9_-]{30,}", TOKEN),
    spec(
        "linear-api-key",
        r"(?-u:\b)lin_api_[A-Za-z0-9]{40}(?-u:\b)",
        TOKEN,
    ),
    spec(
        "sentry-token",
        r"(?-u:\b)sntry[us]_[A-Za-z0-9+/=_]{40,}",
        TOKEN,
    ),
    spec(
        "atlassian-api-token",
        r"(?-u:\b)ATATT3[A-Za-z0-9_=-]{100,}",
        TOKEN,
    ),
    spec(
        "grafana-token",
        r"(?-u:\b)(?:glsa_[A-Za-z0-9]{32}_[A-Fa-f0-9]{8}(?-u:\b)|glc_[A-Za-z0-9+/]{32,}={0,2})",
        TOKEN,
    ),
    spec(
        "newrelic-api-key",
        r"(?-u:\b)NRAK-[A-Z0-9]{27}(?-u:\b)",
        TOKEN,
    ),
    // --- Infrastructure ---
    spec("vault-token", r"(?-u:\b)hv[sbr]\.[A-Za-z0-9_-]{24,}", TOKEN),
    spec(
        "private-key",
        r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----",
        Check::PrivateKey,
    ),
    spec(
        "age-secret-key",
        r"(?-u:\b)AGE-SECRET-KEY-1[QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L]{58}(?-u:\b)",
        TOKEN,
    ),
    spec(
        "jwt",
        r"(?-u:\b)eyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{16,}",
        Check::Jwt,
    ),
    // --- Heuristics (no fixed format) ---
    heuristic(
        "database-connection-string",
        concat!(
            r"(?-u:\b)(?i-u:postgres(?:ql)?|mysql|mariadb|mongodb(?:\+srv)?|rediss?|amqps?|mssql|sqlserver|oracle|cockroachdb|clickhouse|couchdb|neo4j(?:\+s)?|bolt|cassandra|memcached?)://",
            url_user!(),
            url_password!()
        ),
        Check::UrlPassword,
    ),
    heuristic(
        "url-credentials",
        concat!(
            r"(?-u:\b)[A-Za-z][A-Za-z0-9+.-]*://",
            url_user!(),
            url_password!()
        ),
        Check::UrlPassword,
    ),
    heuristic(
        "bearer-token",
        concat!(
            r"(?i-u:authorization)",
            sep!(),
            r"(?i-u:bearer|token)[ \t]+(?P<secret>[A-Za-z0-9._~+/-]{8,}=*)"
        ),
        Check::Bearer,
    ),
    heuristic(
        "bearer-token",
        r"(?-u:\b)(?i-u:bearer)[ \t]+(?P<secret>[A-Za-z0-9._~+/-]{20,}=*)",
        Check::Bearer,
    ),
    heuristic(
        "basic-auth-header",
        concat!(
            r"(?i-u:authorization)",
            sep!(),
            r"(?i-u:basic)[ \t]+(?P<secret>[A-Za-z0-9+/]{4,}={0,2})"
        ),
        Check::BasicAuth,
    ),
    heuristic(
        "generic-secret",
        concat!(
            r"(?i-u:pass(?:word|wd|phrase)|pwd|secret(?:[_.-]?key)?|token|api[_.-]?key|access[_.-]?key|private[_.-]?key|auth[_.-]?key)",
            sep!(),
            r#"(?P<secret>[!-~--["'`,;\\<>&=:]][!-~--["'`,;\\<>&]]{11,})"#
        ),
        Check::Generic,
    ),
];

pub(super) const BUILTIN_LEN: usize = CATALOGUE.len();

/// Which kinds of match win on an exact tie.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Tier {
    Specific,
    Custom,
    Heuristic,
}

/// Post-validation of a candidate match.
#[derive(Debug, Clone, Copy)]
pub(super) enum Check {
    /// The regex says it all.
    None,
    /// A random-looking value: minimum Shannon entropy (bits per byte), minimum number of character
    /// classes among lower case, upper case and digits, and no mask (`xxxxxxxx`, `********`).
    Random { entropy: f64, classes: u8 },
    /// A labelled fixed-format value: random-looking and not a template or placeholder.
    Labelled,
    /// Telegram: the part after `:` is mixed-case and random.
    Telegram,
    /// PEM block: a real body, not `...`.
    PrivateKey,
    /// JWT: the header decodes to JSON with `"alg"`.
    Jwt,
    /// Discord: the first segment decodes to a numeric user id.
    DiscordBot,
    /// URL userinfo password: not a placeholder or a port.
    UrlPassword,
    /// Bearer token: random-looking, not a placeholder.
    Bearer,
    /// `Authorization: Basic`: decodes to `user:password`.
    BasicAuth,
    /// Generic `key = value` assignment.
    Generic,
}
