//! The registry URL: an image prefix (`harbor.corp.example.com/gitpod`), checked
//! before any call.

use gitpod_refarch::{Error, Result};

/// A parsed image prefix: the registry host (`host[:port]`), the repository path
/// under it (may be empty), and whether it speaks plain HTTP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RegistryUrl {
    /// Plain HTTP (an `http://` prefix or `insecure_http`).
    pub(crate) plain_http: bool,
    /// `host[:port]`, as it goes into `.dockerconfigjson`.
    pub(crate) host: String,
    /// The repository path under the host (`gitpod`, `team/gitpod`), maybe empty.
    pub(crate) path: String,
}

impl RegistryUrl {
    /// Parse `raw` (named `field` in errors). `http://` or `insecure_http` selects
    /// plain HTTP; `https://` is accepted and dropped.
    pub(crate) fn parse(field: &str, raw: &str, insecure_http: bool) -> Result<RegistryUrl> {
        let bad = |why: &str| Error::invalid_input(format!("{field}: {why}"));
        let s = raw.trim();
        if s.is_empty() {
            return Err(bad(
                "is empty; give the image prefix (`harbor.example.com/gitpod`)",
            ));
        }
        let (plain_http, rest) = if let Some(r) = strip_prefix_ci(s, "http://") {
            (true, r)
        } else if let Some(r) = strip_prefix_ci(s, "https://") {
            (insecure_http, r)
        } else if s.contains("://") {
            return Err(bad(
                "only an `http://` or `https://` scheme (or none) is accepted",
            ));
        } else {
            (insecure_http, s)
        };
        let rest = rest.trim_end_matches('/');
        // Never echo a URL that may carry credentials.
        if rest.contains('@') {
            return Err(bad(
                "must not carry credentials (`user@`); use registry.username and registry.password",
            ));
        }
        if rest.contains(['?', '#']) || rest.chars().any(char::is_whitespace) {
            return Err(bad(&format!(
                "`{rest}` is not an image prefix: no query, fragment or spaces"
            )));
        }
        let (host, path) = match rest.split_once('/') {
            Some((h, p)) => (h, p),
            None => (rest, ""),
        };
        check_host(host).map_err(|why| bad(&format!("host `{host}` {why}")))?;
        if !path.is_empty() {
            for c in path.split('/') {
                if !valid_component(c) {
                    return Err(bad(&format!(
                        "`{c}` in `{path}` is not a repository name: lowercase letters, digits and \
                         `.`, `_`, `-` between them"
                    )));
                }
            }
        }
        Ok(RegistryUrl {
            plain_http,
            host: host.to_string(),
            path: path.to_string(),
        })
    }

    /// `host[/path]`: the image prefix without scheme.
    pub(crate) fn prefix(&self) -> String {
        if self.path.is_empty() {
            self.host.clone()
        } else {
            format!("{}/{}", self.host, self.path)
        }
    }

    /// The prefix as the installer config carries it: `http://` in front for plain
    /// HTTP (so a check knows), none for HTTPS.
    pub(crate) fn to_config_url(&self) -> String {
        if self.plain_http {
            format!("http://{}", self.prefix())
        } else {
            self.prefix()
        }
    }

    /// `https://host` or `http://host`.
    pub(crate) fn base(&self) -> String {
        format!(
            "{}://{}",
            if self.plain_http { "http" } else { "https" },
            self.host
        )
    }

    /// The repository `name` under the prefix (`gitpod/name`).
    pub(crate) fn repository(&self, name: &str) -> String {
        if self.path.is_empty() {
            name.to_string()
        } else {
            format!("{}/{}", self.path, name)
        }
    }

    /// Same registry and path, whatever the scheme.
    pub(crate) fn same_place(&self, other: &RegistryUrl) -> bool {
        self.host.eq_ignore_ascii_case(&other.host) && self.path == other.path
    }
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    if s.len() >= prefix.len() && s[..prefix.len()].eq_ignore_ascii_case(prefix) {
        Some(&s[prefix.len()..])
    } else {
        None
    }
}

fn check_host(host: &str) -> std::result::Result<(), &'static str> {
    if host.is_empty() {
        return Err("is empty");
    }
    let (name, port) = if let Some(v6) = host.strip_prefix('[') {
        let (addr, after) = v6.split_once(']').ok_or("has an unclosed `[`")?;
        if addr.is_empty() || !addr.chars().all(|c| c.is_ascii_hexdigit() || c == ':') {
            return Err("is not an IPv6 address");
        }
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or("has junk after `]`")?),
        };
        (None, port)
    } else {
        match host.rsplit_once(':') {
            Some((n, p)) => (Some(n), Some(p)),
            None => (Some(host), None),
        }
    };
    if let Some(p) = port {
        match p.parse::<u16>() {
            Ok(n) if n > 0 => {}
            _ => return Err("has a bad port"),
        }
    }
    if let Some(n) = name {
        if n.is_empty()
            || !n
                .split('.')
                .all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
            || n.starts_with('-')
        {
            return Err("is not a host name");
        }
        // Without a dot or a port, image references read it as a Docker Hub namespace.
        if !n.contains('.') && port.is_none() && !n.eq_ignore_ascii_case("localhost") {
            return Err(
                "is not a registry host (image references read a name without `.` or `:port` as \
                 a Docker Hub namespace); start the URL with the registry host",
            );
        }
    }
    Ok(())
}

/// A repository path component: `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`.
fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_prefixes_and_schemes() {
        let u =
            RegistryUrl::parse("registry.url", "harbor.corp.example.com/gitpod/", false).unwrap();
        assert_eq!(u.host, "harbor.corp.example.com");
        assert_eq!(u.path, "gitpod");
        assert!(!u.plain_http);
        assert_eq!(u.to_config_url(), "harbor.corp.example.com/gitpod");
        assert_eq!(u.base(), "https://harbor.corp.example.com");
        assert_eq!(u.repository("x"), "gitpod/x");

        let u = RegistryUrl::parse("registry.url", "http://127.0.0.1:5000", false).unwrap();
        assert!(u.plain_http);
        assert_eq!(u.host, "127.0.0.1:5000");
        assert_eq!(u.path, "");
        assert_eq!(u.to_config_url(), "http://127.0.0.1:5000");
        assert_eq!(u.repository("x"), "x");

        let u = RegistryUrl::parse("registry.url", "https://[::1]:5000/a/b-c__d", true).unwrap();
        assert!(u.plain_http);
        assert_eq!(u.host, "[::1]:5000");
        assert_eq!(u.path, "a/b-c__d");
        assert!(RegistryUrl::parse("registry.url", "localhost/x", false).is_ok());
    }

    #[test]
    fn refuses_what_is_not_an_image_prefix() {
        for bad in [
            "",
            "ftp://h.example.com/x",
            "gitpod/images",
            "h.example.com/Gitpod",
            "h.example.com/a//b",
            "h.example.com:0/x",
            "h.example.com:99999/x",
            "h.example.com/x?y",
            "h .example.com/x",
            "h.example.com/-x",
            "[::1/x",
        ] {
            let e = RegistryUrl::parse("registry.url", bad, false).unwrap_err();
            assert_eq!(e.kind(), gitpod_refarch::ErrorKind::InvalidInput, "{bad}");
            assert!(e.message().starts_with("registry.url: "), "{e}");
        }
        let e = RegistryUrl::parse("registry.url", "https://u:hunter2@h.example.com/x", false)
            .unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
    }
}
