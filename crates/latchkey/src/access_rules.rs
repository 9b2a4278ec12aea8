//! Access rules for forward authentication (feature `forward`; the server's
//! `--access-rules FILE`, TOML): which requests to the apps behind a proxy pass without
//! a login, which need one factor or two, which users and groups they let in, and which
//! are refused. Rules are read in order and the first that matches decides; a request no
//! rule matches is refused (default deny). [`normalize_path`] is the path a rule sees,
//! [`return_to`] where a browser may be sent back after its login.
//!
//! ```toml
//! [[rule]]
//! host = "*.example.com"        # exact, or every subdomain of a domain
//! schemes = ["https"]           # what `rd` may send a browser back over (default https)
//! paths = ["/api/"]             # optional: path prefixes
//! methods = ["GET", "HEAD"]     # optional
//! policy = "two_factor"         # bypass, deny, one_factor or two_factor
//! users = ["alice"]             # optional: only these users…
//! groups = ["admins"]           # …or members of these groups
//! ```
//!
//! Users and groups are part of the match: a rule that names them matches only their
//! requests (a visitor nobody is logged in as must log in first, so that it can be
//! known), and the next rules decide for everyone else.

use serde::Deserialize;
use std::borrow::Cow;
use std::fmt;
use toml::Spanned;

/// What a rule asks of a request it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    /// Pass without a login.
    Bypass,
    /// Refuse (403).
    Deny,
    /// A complete login.
    OneFactor,
    /// A login completed with a second factor.
    TwoFactor,
}

/// A rule's host: one name, or every subdomain of a domain (`*.example.com`, which
/// `example.com` itself does not match).
#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    Exact(String),
    Subdomains(String),
}

impl HostPattern {
    fn parse(text: &str) -> Result<Self, String> {
        let lower = text.trim().to_ascii_lowercase();
        let (pattern, name) = match lower.strip_prefix("*.") {
            Some(domain) => (HostPattern::Subdomains(domain.to_string()), domain),
            None => (HostPattern::Exact(lower.clone()), lower.as_str()),
        };
        let labels_ok = name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
        if name.is_empty() || !labels_ok {
            return Err(format!(
                "host {text:?} is not a host name or `*.` and a domain (no scheme, port or path)"
            ));
        }
        Ok(pattern)
    }

    fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Exact(name) => host == name,
            HostPattern::Subdomains(domain) => host
                .strip_suffix(domain.as_str())
                .and_then(|rest| rest.strip_suffix('.'))
                .is_some_and(|label| !label.is_empty()),
        }
    }
}

/// One rule, as checked at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    host: HostPattern,
    schemes: Vec<String>,
    paths: Vec<String>,
    methods: Vec<String>,
    policy: Policy,
    users: Vec<String>,
    groups: Vec<String>,
    /// Its line in the file (where `[[rule]]` stands).
    line: usize,
}

impl Rule {
    /// What the rule asks.
    pub fn policy(&self) -> Policy {
        self.policy
    }

    /// Its line in the file, for logs.
    pub fn line(&self) -> usize {
        self.line
    }

    /// Whether the rule names users or groups (deciding needs to know who asks).
    pub fn names_subjects(&self) -> bool {
        !self.users.is_empty() || !self.groups.is_empty()
    }

    /// Whether the request's host, path and method are the rule's.
    fn matches_request(&self, request: &Request<'_>) -> bool {
        self.host.matches(request.host)
            && (self.paths.is_empty() || self.paths.iter().any(|p| request.path.starts_with(p)))
            && (self.methods.is_empty() || self.methods.iter().any(|m| m == request.method))
    }

    /// Whether the rule's users and groups take `visitor` (every visitor when it names
    /// none).
    fn takes(&self, visitor: &Visitor<'_>) -> bool {
        !self.names_subjects()
            || self.users.iter().any(|user| user == visitor.username)
            || self
                .groups
                .iter()
                .any(|group| visitor.groups.contains(group))
    }
}

/// A request to an app behind the proxy, as the proxy forwarded it.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The host, lower case, without a port.
    pub host: &'a str,
    /// The path (no query), normalized by [`normalize_path`].
    pub path: &'a str,
    /// The method, upper case.
    pub method: &'a str,
}

/// Who is logged in, as the rules see them.
#[derive(Debug, Clone, Copy)]
pub struct Visitor<'a> {
    /// Their username.
    pub username: &'a str,
    /// Their groups.
    pub groups: &'a [String],
    /// Whether this session's login was completed with a second factor.
    pub second_factor_now: bool,
    /// Whether they have a second factor set up at all.
    pub has_second_factor: bool,
}

/// What the rules say of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Let it through.
    Allow,
    /// Nobody is logged in and the rule needs someone: to the login page.
    LogIn,
    /// The login lacks the second factor the rule needs, which the user has: the
    /// second step.
    SecondStep,
    /// The rule needs a second factor and the user has none: 403, saying how to set one
    /// up.
    SetUpSecondFactor,
    /// Refused (a `deny` rule, no rule, or a path too ambiguous to match safely).
    Forbidden,
}

/// The rules of one file, in order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AccessRules {
    rules: Vec<Rule>,
}

/// Why a rules file was refused: its line and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RulesError {
    /// The line at fault (1-based), or 0 when the whole file is.
    pub line: usize,
    /// What is wrong.
    pub reason: String,
}

impl fmt::Display for RulesError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            0 => f.write_str(&self.reason),
            line => write!(f, "line {line}: {}", self.reason),
        }
    }
}

impl std::error::Error for RulesError {}

/// The file as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    #[serde(default)]
    rule: Vec<Spanned<RawRule>>,
}

/// A rule as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    host: String,
    #[serde(default)]
    schemes: Option<Vec<String>>,
    #[serde(default)]
    paths: Vec<String>,
    #[serde(default)]
    methods: Vec<String>,
    policy: Policy,
    #[serde(default)]
    users: Vec<String>,
    #[serde(default)]
    groups: Vec<String>,
}

/// The 1-based line of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset)
        .map_or(0, |before| before.matches('\n').count())
        + 1
}

/// The methods a rule may name.
const METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE",
];

impl AccessRules {
    /// The rules of `text` (a TOML file's), checked: each error names its line.
    pub fn parse(text: &str) -> Result<Self, RulesError> {
        let file: RulesFile = toml::from_str(text).map_err(|error| RulesError {
            line: error.span().map_or(0, |span| line_of(text, span.start)),
            reason: error.message().to_string(),
        })?;
        let mut rules = Vec::with_capacity(file.rule.len());
        for spanned in file.rule {
            let line = line_of(text, spanned.span().start);
            let raw = spanned.into_inner();
            let refuse = |reason: String| RulesError { line, reason };
            let host = HostPattern::parse(&raw.host).map_err(refuse)?;
            let schemes = raw.schemes.unwrap_or_else(|| vec!["https".into()]);
            if schemes.is_empty() || schemes.iter().any(|s| s != "http" && s != "https") {
                return Err(refuse(format!(
                    "schemes {schemes:?}: name http, https or both"
                )));
            }
            if let Some(path) = raw.paths.iter().find(|path| !path.starts_with('/')) {
                return Err(refuse(format!("path {path:?} does not start with /")));
            }
            let methods: Vec<String> = raw.methods.iter().map(|m| m.to_ascii_uppercase()).collect();
            if let Some(method) = methods.iter().find(|m| !METHODS.contains(&m.as_str())) {
                return Err(refuse(format!("unknown method {method:?}")));
            }
            let names_subjects = !raw.users.is_empty() || !raw.groups.is_empty();
            if names_subjects && matches!(raw.policy, Policy::Bypass) {
                return Err(refuse(
                    "a bypass rule lets everyone through: it cannot name users or groups".into(),
                ));
            }
            rules.push(Rule {
                host,
                schemes,
                paths: raw.paths,
                methods,
                policy: raw.policy,
                users: raw.users,
                groups: raw.groups,
                line,
            });
        }
        if rules.is_empty() {
            return Err(RulesError {
                line: 0,
                reason: "no [[rule]]: every request would be refused".into(),
            });
        }
        Ok(AccessRules { rules })
    }

    /// The rules.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Whether any rule names groups (deciding then needs the visitor's groups).
    pub fn names_groups(&self) -> bool {
        self.rules.iter().any(|rule| !rule.groups.is_empty())
    }

    /// Whether any rule asks for two factors (deciding may then need to know whether the
    /// visitor has a second factor at all).
    pub fn asks_two_factor(&self) -> bool {
        self.rules
            .iter()
            .any(|rule| rule.policy == Policy::TwoFactor)
    }

    /// What the rules say of `request` from `visitor` (`None`: nobody logged in), and the
    /// rule that said it (`None`: no rule matched, refused). A path that could reach
    /// another path once the app decodes it (see [`normalize_path`]) is refused.
    pub fn decide(
        &self,
        request: &Request<'_>,
        visitor: Option<&Visitor<'_>>,
    ) -> (Decision, Option<&Rule>) {
        for rule in &self.rules {
            if !rule.matches_request(request) {
                continue;
            }
            match visitor {
                Some(visitor) if !rule.takes(visitor) => continue,
                // Who asks decides this rule: they must say who they are first.
                None if rule.names_subjects() => return (Decision::LogIn, Some(rule)),
                _ => {}
            }
            let decision = match (rule.policy, visitor) {
                (Policy::Bypass, _) => Decision::Allow,
                (Policy::Deny, _) => Decision::Forbidden,
                (_, None) => Decision::LogIn,
                (Policy::OneFactor, Some(_)) => Decision::Allow,
                (Policy::TwoFactor, Some(visitor)) if visitor.second_factor_now => Decision::Allow,
                (Policy::TwoFactor, Some(visitor)) if visitor.has_second_factor => {
                    Decision::SecondStep
                }
                (Policy::TwoFactor, Some(_)) => Decision::SetUpSecondFactor,
            };
            return (decision, Some(rule));
        }
        (Decision::Forbidden, None)
    }

    /// Whether a browser may be sent back to `scheme://host` after its login: a host a
    /// rule protects (any rule but `deny`) over a scheme the rule names.
    pub fn protects(&self, scheme: &str, host: &str) -> bool {
        self.rules.iter().any(|rule| {
            rule.policy != Policy::Deny
                && rule.host.matches(host)
                && rule.schemes.iter().any(|s| s == scheme)
        })
    }
}

/// The path of a forwarded URL as the rules match it: percent escapes decoded and dot
/// segments resolved (`/public/../admin` and `/%61dmin` are `/admin`), so that a prefix
/// rule sees the path the app will serve; `None` for a path apps read in more than one
/// way, which is refused: an empty segment (`//admin`, which some apps merge into
/// `/admin`); a `;` (`/admin;x/`, path parameters some apps drop) or a `#` (which no
/// client sends, and at which some cut the path), a backslash or a NUL, raw or encoded;
/// an encoded slash or `%`; escapes that are not UTF-8.
pub fn normalize_path(raw: &str) -> Option<Cow<'_, str>> {
    if raw.contains('#') {
        return None;
    }
    let path = raw.split('?').next().unwrap_or_default();
    // One pass over the path (it is read on every request to every app): a byte apps
    // read in more than one way, or an empty segment.
    let mut previous = 0;
    let mut escaped = false;
    for &byte in path.as_bytes() {
        if matches!(byte, b'\\' | b'\0' | b';') || (byte == b'/' && previous == b'/') {
            return None;
        }
        escaped |= byte == b'%';
        previous = byte;
    }
    if !path.starts_with('/') {
        return None;
    }
    if escaped {
        let lower = path.to_ascii_lowercase();
        if ["%2f", "%5c", "%00", "%25", "%3b", "%23"]
            .iter()
            .any(|code| lower.contains(code))
        {
            return None;
        }
    }
    let dot_segment = |segment: &str| matches!(segment, "." | "..");
    // Most paths have neither an escape nor a dot segment: they are already normal.
    if !escaped && !path.split('/').any(dot_segment) {
        return Some(Cow::Borrowed(path));
    }
    // Every escape decoded, as the app will before it routes (`/%61dmin` is `/admin`);
    // those that would change the path's shape were refused above.
    let decoded = if escaped {
        percent_encoding::percent_decode_str(path)
            .decode_utf8()
            .ok()?
            .into_owned()
    } else {
        path.to_string()
    };
    let mut segments: Vec<&str> = Vec::new();
    let ends_with_slash = decoded.ends_with('/');
    for segment in decoded.split('/').skip(1) {
        match segment {
            "." => {}
            ".." => {
                segments.pop();
            }
            other => segments.push(other),
        }
    }
    let mut normalized = String::with_capacity(decoded.len());
    for segment in &segments {
        normalized.push('/');
        normalized.push_str(segment);
    }
    if normalized.is_empty() || (ends_with_slash && !normalized.ends_with('/')) {
        normalized.push('/');
    }
    Some(Cow::Owned(normalized))
}

/// Where `rd` sends a browser after its login, if it is an absolute http(s) URL to a host
/// the rules protect over its scheme, with no user name or password in it: the URL as
/// the WHATWG parser (a browser's) reads it. Anything else (another site, a look-alike
/// host, `user@host`, a scheme the rule does not name, a relative or scheme-relative
/// URL) is `None`: the browser lands on `/home`.
pub fn return_to(rd: &str, rules: &AccessRules) -> Option<String> {
    if rd.len() > 2048 || rd.chars().any(|c| c.is_control() || c == '\\') {
        return None;
    }
    let url = url::Url::parse(rd).ok()?;
    if !matches!(url.scheme(), "http" | "https")
        || !url.username().is_empty()
        || url.password().is_some()
    {
        return None;
    }
    let Some(url::Host::Domain(host)) = url.host() else {
        return None;
    };
    // A host name of letters, digits, `-` and `.` only: the URL parser also takes `*`,
    // `;`, `,` or `'`, which a wildcard rule would match and which mean something else
    // where the URL goes next (a page's Content-Security-Policy names this origin).
    if !host
        .bytes()
        .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'.')
    {
        return None;
    }
    rules
        .protects(url.scheme(), &host.to_ascii_lowercase())
        .then(|| url.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: &str = r#"
# The shipped example, shortened.
[[rule]]
host = "status.example.com"
policy = "bypass"

[[rule]]
host = "secure.example.org"
policy = "one_factor"

[[rule]]
host = "app.example.com"
paths = ["/admin/"]
policy = "two_factor"
groups = ["admins"]

[[rule]]
host = "app.example.com"
paths = ["/admin/"]
policy = "deny"

[[rule]]
host = "*.example.com"
schemes = ["https", "http"]
methods = ["get", "HEAD", "POST"]
policy = "one_factor"
"#;

    fn request<'a>(host: &'a str, path: &'a str, method: &'a str) -> Request<'a> {
        Request { host, path, method }
    }

    fn visitor<'a>(name: &'a str, groups: &'a [String], second: bool, has: bool) -> Visitor<'a> {
        Visitor {
            username: name,
            groups,
            second_factor_now: second,
            has_second_factor: has,
        }
    }

    #[test]
    fn the_first_matching_rule_decides_and_no_rule_is_a_refusal() {
        let rules = AccessRules::parse(RULES).expect("rules");
        let admins = vec!["admins".to_string()];
        let none: Vec<String> = Vec::new();
        let ada = visitor("ada", &admins, true, true);
        let ada_one_factor = visitor("ada", &admins, false, true);
        let bob = visitor("bob", &none, false, false);
        let cases = [
            (
                request("status.example.com", "/", "GET"),
                None,
                Decision::Allow,
            ),
            (
                request("app.example.com", "/", "GET"),
                None,
                Decision::LogIn,
            ),
            (
                request("app.example.com", "/", "GET"),
                Some(&bob),
                Decision::Allow,
            ),
            (
                request("app.example.com", "/", "DELETE"),
                Some(&bob),
                Decision::Forbidden,
            ),
            (
                request("app.example.com", "/admin/x", "GET"),
                None,
                Decision::LogIn,
            ),
            (
                request("app.example.com", "/admin/x", "GET"),
                Some(&ada),
                Decision::Allow,
            ),
            (
                request("app.example.com", "/admin/x", "GET"),
                Some(&ada_one_factor),
                Decision::SecondStep,
            ),
            // Not an admin: the group rule does not take bob; the deny rule does.
            (
                request("app.example.com", "/admin/x", "GET"),
                Some(&bob),
                Decision::Forbidden,
            ),
            (
                request("deep.app.example.com", "/", "GET"),
                Some(&bob),
                Decision::Allow,
            ),
            (
                request("example.com", "/", "GET"),
                Some(&bob),
                Decision::Forbidden,
            ),
            (
                request("example.com.evil.example", "/", "GET"),
                Some(&bob),
                Decision::Forbidden,
            ),
            (
                request("evilexample.com", "/", "GET"),
                Some(&bob),
                Decision::Forbidden,
            ),
        ];
        for (request, who, expected) in cases {
            let (decision, _) = rules.decide(&request, who);
            assert_eq!(decision, expected, "{request:?} by {who:?}");
        }
    }

    #[test]
    fn two_factor_without_a_second_factor_says_to_set_one_up() {
        let rules =
            AccessRules::parse("[[rule]]\nhost = \"vault.example.com\"\npolicy = \"two_factor\"\n")
                .expect("rules");
        let none: Vec<String> = Vec::new();
        let (decision, rule) = rules.decide(
            &request("vault.example.com", "/", "GET"),
            Some(&visitor("bob", &none, false, false)),
        );
        assert_eq!(decision, Decision::SetUpSecondFactor);
        assert_eq!(rule.map(Rule::line), Some(1));
    }

    #[test]
    fn a_bad_file_is_refused_with_its_line_and_reason() {
        let cases = [
            (
                "[[rule]]\nhost = \"a.example.com\"\npolicy = \"sometimes\"\n",
                3,
                "sometimes",
            ),
            (
                "[[rule]]\nhost = \"https://a.example.com\"\npolicy = \"deny\"\n",
                1,
                "host",
            ),
            (
                "[[rule]]\nhost = \"a.example.com\"\npaths = [\"admin\"]\npolicy = \"deny\"\n",
                1,
                "/",
            ),
            (
                "\n[[rule]]\nhost = \"a.example.com\"\nmethods = [\"FETCH\"]\npolicy = \"deny\"\n",
                2,
                "FETCH",
            ),
            (
                "[[rule]]\nhost = \"a.example.com\"\npolicy = \"bypass\"\nusers = [\"x\"]\n",
                1,
                "bypass",
            ),
            (
                "[[rule]]\nhost = \"a.example.com\"\nschemes = [\"ftp\"]\npolicy = \"deny\"\n",
                1,
                "schemes",
            ),
            (
                "[[rule]]\nhost = \"a.example.com\"\npolicy = \"deny\"\ncolour = \"red\"\n",
                4,
                "colour",
            ),
            ("[[rule]]\npolicy = \"deny\"\n", 1, "host"),
            ("", 0, "no [[rule]]"),
            ("[[rule]\n", 1, ""),
        ];
        for (text, line, word) in cases {
            let error = AccessRules::parse(text).expect_err(text);
            assert_eq!(error.line, line, "{text:?}: {error}");
            assert!(error.to_string().contains(word), "{text:?}: {error}");
        }
    }

    #[test]
    fn paths_are_matched_as_the_app_will_read_them() {
        assert_eq!(
            normalize_path("/public/../admin/x").as_deref(),
            Some("/admin/x")
        );
        assert_eq!(
            normalize_path("/public/%2e%2e/admin/").as_deref(),
            Some("/admin/")
        );
        assert_eq!(normalize_path("/./a/./b?x=/admin").as_deref(), Some("/a/b"));
        assert_eq!(normalize_path("/../../etc").as_deref(), Some("/etc"));
        assert_eq!(normalize_path("/").as_deref(), Some("/"));
        // Every escape is decoded, as the app decodes it before routing.
        assert_eq!(normalize_path("/%61dmin/x").as_deref(), Some("/admin/x"));
        assert_eq!(normalize_path("/caf%C3%A9/").as_deref(), Some("/café/"));
        // An already normal path is the path itself; a query may hold anything.
        assert!(matches!(
            normalize_path("/app/x/?q=1;a//b"),
            Some(Cow::Borrowed("/app/x/"))
        ));
        for ambiguous in [
            "//admin/x",
            "/public//../admin",
            "/admin;x/x",
            "/admin%3bx/x",
            "/public#/../admin/x",
            "/public?x#y",
            "/public/%23/../admin",
            "/%ff",
            "/public%2f..%2fadmin",
            "/public%5Cadmin",
            "/public\\..\\admin",
            "/a%252fb",
            "/a%00",
            "admin",
        ] {
            assert_eq!(normalize_path(ambiguous), None, "{ambiguous}");
        }
    }

    #[test]
    fn rd_goes_only_to_protected_hosts_over_their_schemes() {
        let rules = AccessRules::parse(RULES).expect("rules");
        assert_eq!(
            return_to("https://app.example.com/admin/x?y=1", &rules).as_deref(),
            Some("https://app.example.com/admin/x?y=1")
        );
        assert_eq!(
            return_to("https://secure.example.org/x", &rules).as_deref(),
            Some("https://secure.example.org/x")
        );
        assert_eq!(
            return_to("http://wiki.example.com/", &rules).as_deref(),
            Some("http://wiki.example.com/"),
            "the wildcard rule names http"
        );
        for refused in [
            // Over a scheme the rule does not name (https only, the default).
            "http://secure.example.org/",
            // Other sites and look-alikes.
            "https://evil.example/",
            "https://app.example.com.evil.example/",
            "https://evilexample.com/",
            "https://example.com/",
            // User-info tricks: the host is the part after @.
            "https://app.example.com@evil.example/",
            "https://app.example.com:pw@evil.example/",
            "https://app.example.com%2f@evil.example/",
            "https://app.example.com%40evil.example/",
            // Backslashes and scheme-relative or relative forms.
            "https:/\\evil.example",
            "https:\\\\evil.example",
            "//app.example.com/",
            "/home",
            // Other schemes.
            "javascript:alert(1)//app.example.com",
            "ftp://app.example.com/",
            "data:text/html,app.example.com",
            // Characters the URL parser takes in a host, which a wildcard would match.
            "http://*;x.example.com/",
            "http://a,b.example.com/",
            "http://a'b.example.com/",
            // Addresses, not names.
            "https://127.0.0.1/",
            "https://[::1]/",
            // Control characters a browser would strip.
            "https://app.example.com\t.evil.example/",
        ] {
            assert_eq!(return_to(refused, &rules), None, "{refused}");
        }
        // The URL sent back is the parser's reading, not the text given.
        assert_eq!(
            return_to("HTTPS://APP.Example.com/a/../b", &rules).as_deref(),
            Some("https://app.example.com/b")
        );
    }
}
