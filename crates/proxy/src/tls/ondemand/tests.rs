//! Unit tests of the on-demand issuance's rules: which names a SAN covers, which names the CA
//! may sign for, the rate's token bucket, and when an issued leaf is due.

use std::time::{Duration, Instant};

use time::OffsetDateTime;

use super::kept::due;
use super::{Signer, State, covers, dns_name};
use crate::config::TlsNames;
use crate::tls::ca::DevCa;

fn signer(names: &str) -> Signer {
    let names: TlsNames = names.parse().expect("names");
    let (ca, _pem) = DevCa::create(&names, OffsetDateTime::now_utc()).expect("CA");
    Signer::new(ca)
}

#[test]
fn a_san_covers_its_name_and_a_wildcard_one_label() {
    assert!(covers("localhost", "localhost"));
    assert!(covers("*.app.localhost", "v1.app.localhost"));
    assert!(!covers("*.app.localhost", "app.localhost"));
    assert!(!covers("*.app.localhost", "a.v1.app.localhost"));
    assert!(!covers("localhost", "api.localhost"));
    assert!(!covers("127.0.0.1", "api.localhost"));
}

#[test]
fn the_ca_signs_under_its_dns_constraints_only() {
    let s = signer("localhost, 127.0.0.1");
    for yes in ["api.localhost", "a.b.localhost", "localhost"] {
        assert!(s.may_sign(yes), "{yes}");
    }
    for no in [
        "example.com",
        "localhost.example",
        "notlocalhost",
        "xlocalhost",
    ] {
        assert!(!s.may_sign(no), "{no}");
    }
    let s = signer("dev.test");
    assert!(s.may_sign("api.dev.test") && !s.may_sign("api.localhost"));
}

#[test]
fn only_plain_dns_names_are_issued_for() {
    assert_eq!(dns_name("api.localhost").as_deref(), Some("api.localhost"));
    for bad in [
        "*.x.localhost",
        "127.0.0.1",
        "a_b.localhost",
        "-a.localhost",
        "",
        "a..b",
    ] {
        assert_eq!(dns_name(bad), None, "{bad:?}");
    }
}

#[test]
fn the_rate_is_a_bucket_of_a_minutes_worth_refilled_evenly() {
    let mut state = State {
        inflight: Default::default(),
        tokens: 3.0,
        refilled: Instant::now(),
        refused: 0,
        noticed: None,
    };
    assert!((0..3).all(|_| state.take_token(3)));
    assert!(!state.take_token(3), "the burst is the rate");
    // 3 a minute: one token every 20 s.
    state.refilled -= Duration::from_secs(21);
    assert!(state.take_token(3));
    assert!(!state.take_token(3));
    state.refilled -= Duration::from_secs(3600);
    assert!((0..3).all(|_| state.take_token(3)));
    assert!(
        !state.take_token(3),
        "an idle hour refills the burst, no more"
    );
}

#[test]
fn an_issued_leaf_is_due_with_a_third_of_its_life_left_or_from_another_ca() {
    let s = signer("localhost");
    let now = OffsetDateTime::now_utc();
    let demand = super::OnDemand::for_tests();
    let (_, fresh) = demand.mint(&s, "api.localhost", now).expect("mint");
    assert_eq!(due(&s, "api.localhost", &fresh, now), None);
    let later = now + time::Duration::days(61);
    let why = due(&s, "api.localhost", &fresh, later).expect("due after 61 of 90 days");
    assert!(why.contains("lifetime left"), "{why}");
    let other = signer("localhost");
    let why = due(&other, "api.localhost", &fresh, now).expect("another CA");
    assert!(why.contains("does not verify"), "{why}");
}
