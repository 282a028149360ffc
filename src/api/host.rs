//! The `Host` allowlist, against DNS rebinding: a web page the operator visits can point a name
//! of its own at 127.0.0.1, and the browser then sends it, same-origin as far as it knows, to a
//! local API. Without tokens, only an IP address or a loopback name (`localhost`,
//! `*.localhost`) is accepted as `Host`, as Vite, Jupyter and webpack-dev-server do; an IP
//! literal cannot be rebound. With `allowed_hosts` set (`--allowed-hosts`,
//! `PUBSUB_JOBS_API_ALLOWED_HOSTS`), those names are accepted too, and with tokens only they
//! are. Anything else gets 421 Misdirected Request before any handler runs.

/// The host name of a `Host` header value, without its port and brackets, lower case.
fn name_of(host: &str) -> String {
    let host = host.trim();
    let name = match host.strip_prefix('[') {
        // [v6]:port or [v6]
        Some(rest) => rest.split(']').next().unwrap_or(rest),
        None if host.matches(':').count() > 1 => host, // a bare IPv6 address
        None => host.rsplit_once(':').map_or(host, |(n, _)| n),
    };
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// Whether `name` matches an allowlist entry: the same name, or for an entry `.example.com`
/// that domain and any name under it.
fn listed(name: &str, allowed: &[String]) -> bool {
    allowed.iter().any(|a| {
        let a = a.trim().trim_end_matches('.').to_ascii_lowercase();
        match a.strip_prefix('.') {
            Some(domain) => name == domain || name.ends_with(&format!(".{domain}")),
            None => name == a,
        }
    })
}

/// Whether a request with this `Host` (None: none sent, which no browser does) is served.
pub(crate) fn allowed(host: Option<&str>, tokens: bool, allowed_hosts: &[String]) -> bool {
    let Some(host) = host else { return true };
    let name = name_of(host);
    if listed(&name, allowed_hosts) {
        return true;
    }
    if tokens && !allowed_hosts.is_empty() {
        return false;
    }
    if tokens {
        return true;
    }
    name.parse::<std::net::IpAddr>().is_ok() || name == "localhost" || name.ends_with(".localhost")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_tokens_only_addresses_and_loopback_names() {
        for ok in [
            "localhost",
            "localhost:8080",
            "LOCALHOST.:8080",
            "api.localhost:1",
            "127.0.0.1:8080",
            "10.1.2.3:80",
            "[::1]:8080",
            "[::1]",
            "::1",
        ] {
            assert!(allowed(Some(ok), false, &[]), "{ok}");
        }
        for bad in [
            "rebind.evil.example:8080",
            "evil.example",
            "localhost.evil.example",
            "127.0.0.1.nip.io:8080",
            "",
        ] {
            assert!(!allowed(Some(bad), false, &[]), "{bad}");
        }
        assert!(allowed(None, false, &[]));
    }

    #[test]
    fn the_allowlist_adds_names_and_with_tokens_is_the_only_rule() {
        let list = vec!["jobs.internal".to_string(), ".example.com".to_string()];
        for ok in [
            "jobs.internal:8080",
            "example.com",
            "ops.example.com:443",
            "localhost",
        ] {
            assert!(allowed(Some(ok), false, &list), "{ok}");
        }
        assert!(!allowed(Some("evil.example"), false, &list));
        assert!(!allowed(Some("notexample.com"), false, &list));
        // With tokens and a list: only the list.
        assert!(allowed(Some("ops.example.com"), true, &list));
        assert!(!allowed(Some("localhost"), true, &list));
        // With tokens and no list: any name (the token is the guard).
        assert!(allowed(Some("anything.example"), true, &[]));
    }
}
