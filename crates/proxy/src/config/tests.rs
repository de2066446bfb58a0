//! Unit tests for the settings: defaults, parsing rules and errors that name the variable.

use super::*;

#[test]
fn defaults_match_the_documented_constants() {
    let cfg = Config::from_env(&Env::from_pairs::<&str, &str>([])).expect("defaults");
    assert_eq!(cfg.http_listen.port(), 80);
    assert_eq!(cfg.https_listen.port(), 443);
    assert_eq!(
        cfg.upstream,
        Upstream {
            host: "app".into(),
            port: 8000
        }
    );
    assert_eq!(
        cfg.hsts.as_ref().map(|h| h.to_str().ok()),
        Some(Some("max-age=63072000"))
    );
    assert!(cfg.trusted_proxies.is_empty());
    assert!(cfg.logs.retention);
    assert_eq!(cfg.limits.max_body_size, 1 << 20);
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    assert_eq!(cfg.workers, cpus);
}

#[test]
fn upstream_http2_is_auto_true_or_false() {
    let mode = |v: &str| {
        Config::from_env(&Env::from_pairs([("PROXY_UPSTREAM_HTTP2", v)])).map(|c| c.upstream_http2)
    };
    assert_eq!(mode("auto").ok(), Some(UpstreamHttp2::Auto));
    assert_eq!(mode("TRUE").ok(), Some(UpstreamHttp2::Always));
    assert_eq!(mode("off").ok(), Some(UpstreamHttp2::Never));
    let err = mode("h3").expect_err("h3");
    assert!(
        err.to_string().starts_with("PROXY_UPSTREAM_HTTP2=") && err.to_string().contains("auto"),
        "{err}"
    );
}

#[test]
fn workers_are_counted_and_bounded() {
    let cfg = Config::from_env(&Env::from_pairs([("PROXY_WORKERS", "3")])).expect("3");
    assert_eq!(cfg.workers, 3);
    for bad in ["257", "-1", "two"] {
        let err = Config::from_env(&Env::from_pairs([("PROXY_WORKERS", bad)])).expect_err(bad);
        assert!(err.to_string().starts_with("PROXY_WORKERS="), "{err}");
    }
}

#[test]
fn empty_hsts_turns_it_off_and_cidrs_parse() {
    let cfg = Config::from_env(&Env::from_pairs([
        ("PROXY_HSTS", ""),
        ("PROXY_TRUSTED_PROXIES", "10.0.0.0/8, 192.0.2.1 ,::1"),
    ]))
    .expect("config");
    assert!(cfg.hsts.is_none());
    assert_eq!(cfg.trusted_proxies.len(), 3);
}

#[test]
fn bad_values_name_their_variable() {
    for (var, value) in [
        ("PROXY_UPSTREAM", "app"),
        ("PROXY_UPSTREAM", "user@app:80"),
        ("PROXY_TRUSTED_PROXIES", "10.0.0.0/99"),
        ("PROXY_HTTPS_LISTEN", "localhost"),
        ("PROXY_ACCESS_LOG_FORMAT", "xml"),
        ("LOG_RETENTION", "sometimes"),
        ("PROXY_UPSTREAM_TIMEOUT", "soon"),
    ] {
        let err = Config::from_env(&Env::from_pairs([(var, value)])).expect_err(value);
        assert!(
            err.to_string().starts_with(&format!("{var}=")),
            "{var}: {err}"
        );
    }
}

#[test]
fn upstream_accepts_ipv6_and_a_scheme() {
    let u: Upstream = "https://[::1]:8443".parse().expect("v6");
    assert_eq!(
        u,
        Upstream {
            host: "::1".into(),
            port: 8443
        }
    );
    assert_eq!(u.to_string(), "[::1]:8443");
}

#[test]
fn format_parses_from_settings() {
    assert_eq!("JSON".parse::<LogFormat>(), Ok(LogFormat::Json));
    assert_eq!("combined".parse::<LogFormat>(), Ok(LogFormat::Combined));
    assert!("xml".parse::<LogFormat>().is_err());
}

#[test]
fn upgrade_protocols_never_include_h2c() {
    for bad in ["h2c", "websocket, H2C", "h2c/1.0"] {
        let err =
            Config::from_env(&Env::from_pairs([("PROXY_UPGRADE_PROTOCOLS", bad)])).expect_err(bad);
        let text = err.to_string();
        assert!(
            text.starts_with("PROXY_UPGRADE_PROTOCOLS=") && text.contains("h2c"),
            "{text}"
        );
    }
}

#[test]
fn keepalive_tunnel_and_header_settings_have_nginx_defaults() {
    let cfg = Config::from_env(&Env::from_pairs::<&str, &str>([])).expect("defaults");
    assert_eq!(cfg.limits.connection.max_requests, Some(1000));
    assert_eq!(
        cfg.limits.connection.max_lifetime,
        Some(Duration::from_secs(3600))
    );
    assert_eq!(cfg.limits.tunnel_idle_timeout, Duration::from_secs(60));
    assert!(!cfg.underscores_in_headers);
    let p = &cfg.upgrade_protocols;
    assert!(p.allows("websocket") && p.allows("WebSocket") && p.allows("websocket/13"));
    assert!(!p.allows("h2c") && !p.allows("foo"));
    let err = Config::from_env(&Env::from_pairs([("PROXY_KEEPALIVE_REQUESTS", "0")]))
        .expect_err("0 requests");
    assert!(
        err.to_string().starts_with("PROXY_KEEPALIVE_REQUESTS="),
        "{err}"
    );
}

#[test]
fn upgrade_protocols_are_a_list_of_tokens() {
    let protocols = |v: &str| {
        Config::from_env(&Env::from_pairs([("PROXY_UPGRADE_PROTOCOLS", v)]))
            .map(|c| c.upgrade_protocols)
    };
    let p = protocols(" WebSocket , echo/2 ").expect("list");
    assert!(p.allows("websocket") && p.allows("ECHO/2"));
    assert!(!p.allows("echo") && !p.allows("echo/1"));
    let none = protocols("").expect("empty");
    assert!(!none.allows("websocket"));
    for bad in ["web socket", "a/b/c", "ws/"] {
        let err = protocols(bad).expect_err(bad);
        assert!(
            err.to_string().starts_with("PROXY_UPGRADE_PROTOCOLS="),
            "{err}"
        );
    }
}
