//! Unit tests for the settings: defaults, parsing rules and errors that name the variable.

use super::*;

#[test]
fn defaults_match_the_documented_constants() {
    let cfg = Config::from_env(&Env::from_pairs::<&str, &str>([])).expect("defaults");
    assert_eq!(cfg.http_listen.port(), 80);
    assert_eq!(cfg.https_listen.port(), 443);
    assert_eq!(
        cfg.upstream.address,
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
        Config::from_env(&Env::from_pairs([("PROXY_UPSTREAM_HTTP2", v)])).map(|c| c.upstream.http2)
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
fn tls_names_parse_dedupe_and_refuse_what_clients_would() {
    let names = |v: &str| Config::from_env(&Env::from_pairs([("PROXY_TLS_NAMES", v)]));
    let default = Config::from_env(&Env::from_pairs::<&str, &str>([])).expect("defaults");
    assert_eq!(
        default.tls.names.strings(),
        ["localhost", "127.0.0.1", "::1"]
    );
    let cfg =
        names("LocalHost, myhost.lan *.api.myhost.lan,[::1] 192.168.1.5,localhost").expect("names");
    assert_eq!(
        cfg.tls.names.strings(),
        [
            "localhost",
            "myhost.lan",
            "*.api.myhost.lan",
            "::1",
            "192.168.1.5"
        ]
    );
    assert_eq!(cfg.tls.names.0[2].dns_subtree(), Some("api.myhost.lan"));
    for (bad, why) in [
        ("*.localhost", "a wildcard needs two labels after '*.'"),
        ("127.0.0.1, ::1", "at least one DNS name"),
        ("local_host", "expected a DNS name"),
        ("a.*.b", "expected a DNS name"),
        ("-x.test", "expected a DNS name"),
        ("", "at least one DNS name"),
    ] {
        let err = names(bad).expect_err(bad).to_string();
        assert!(
            err.starts_with("PROXY_TLS_NAMES=") && err.contains(why),
            "{bad}: {err}"
        );
    }
    let many = (0..65)
        .map(|i| format!("h{i}.test"))
        .collect::<Vec<_>>()
        .join(",");
    assert!(
        names(&many)
            .expect_err("too many")
            .to_string()
            .contains("at most 64")
    );
}

#[test]
fn tls_files_sit_beside_the_cert_and_renewal_interval_is_bounded() {
    let cfg = Config::from_env(&Env::from_pairs([("PROXY_TLS_CERT", "/srv/tls/site.pem")]))
        .expect("config");
    assert_eq!(cfg.tls.ca_cert, PathBuf::from("/srv/tls/ca.crt"));
    assert_eq!(cfg.tls.ca_key, PathBuf::from("/srv/tls/ca.key"));
    assert_eq!(cfg.tls.renew_interval, Duration::from_secs(3600));
    let every = |v: &str| {
        Config::from_env(&Env::from_pairs([("PROXY_TLS_RENEW_INTERVAL", v)]))
            .map(|c| c.tls.renew_interval)
    };
    assert_eq!(every("250ms").ok(), None, "below 1s");
    assert_eq!(every("2s").ok(), Some(Duration::from_secs(2)));
    let err = every("25h").expect_err("above 24h").to_string();
    assert!(
        err.starts_with("PROXY_TLS_RENEW_INTERVAL=") && err.contains("between 1s and 24h"),
        "{err}"
    );
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

#[test]
fn upstream_h2_lifetime_zero_is_refused() {
    let err =
        Config::from_env(&Env::from_pairs([("PROXY_UPSTREAM_H2_LIFETIME", "0s")])).expect_err("0s");
    let text = err.to_string();
    assert!(
        text.starts_with("PROXY_UPSTREAM_H2_LIFETIME=") && text.contains("above 0"),
        "{text}"
    );
    let ok = Config::from_env(&Env::from_pairs([("PROXY_UPSTREAM_H2_LIFETIME", "5m")]));
    assert_eq!(ok.expect("5m").upstream.h2.lifetime.as_secs(), 300);
}
