//! Unit tests of the HTTP/2 upstream's name resolution (one lookup at a time, a cancelled
//! lookup leaves nothing behind, a failed one is remembered), with a resolver that counts.

use super::*;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Call 0 gives port 1; call 1 takes 300 ms and gives port 2; later calls give port 2.
struct Moving(Arc<AtomicUsize>);

impl super::super::dial::Lookup for Moving {
    fn lookup(
        &self,
        _host: &str,
        _port: u16,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = io::Result<Vec<SocketAddr>>> + Send>>
    {
        let n = self.0.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            if n == 1 {
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            let port = if n == 0 { 1 } else { 2 };
            Ok(vec![SocketAddr::from(([127, 0, 0, 1], port))])
        })
    }
}

/// A name that does not resolve (after 50 ms, so that concurrent requests overlap).
struct Unresolvable(Arc<AtomicUsize>);

impl super::super::dial::Lookup for Unresolvable {
    fn lookup(
        &self,
        _host: &str,
        _port: u16,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = io::Result<Vec<SocketAddr>>> + Send>>
    {
        self.0.fetch_add(1, Ordering::SeqCst);
        Box::pin(async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            Err(io::Error::other("no such host"))
        })
    }
}

fn upstream(lookup: Arc<dyn super::super::dial::Lookup>) -> H2Upstream {
    let dialer = Dialer::new(lookup, Duration::from_secs(1), Duration::ZERO);
    let tls = crate::upstream::tls_config(None).expect("tls");
    let pool = H2Pool {
        connections: 1,
        max_requests: 10,
        lifetime: Duration::from_secs(60),
    };
    let up = Upstream {
        host: "app".into(),
        port: 8000,
    };
    H2Upstream::new(tls, dialer, &up, pool, false).expect("upstream")
}

#[tokio::test]
async fn a_request_dropped_mid_lookup_does_not_freeze_the_address_list() {
    let calls = Arc::new(AtomicUsize::new(0));
    let up = upstream(Arc::new(Moving(calls.clone())));
    let first = up.addresses().await.expect("first");
    assert_eq!(first[0].port(), 1);
    tokio::time::sleep(RESOLVE_EVERY + Duration::from_millis(100)).await;
    // A client that goes away while the name is being resolved.
    let _ = tokio::time::timeout(Duration::from_millis(20), up.addresses()).await;
    tokio::time::sleep(RESOLVE_EVERY + Duration::from_millis(100)).await;
    let later = up.addresses().await.expect("later");
    assert_eq!(
        later[0].port(),
        2,
        "the name was asked again (lookups: {calls:?})"
    );
}

#[tokio::test]
async fn a_failed_lookup_is_remembered_and_made_once_for_concurrent_requests() {
    let calls = Arc::new(AtomicUsize::new(0));
    let up = upstream(Arc::new(Unresolvable(calls.clone())));
    let all = futures_util::future::join_all((0..20).map(|_| up.addresses())).await;
    assert!(all.iter().all(|r| r.is_err()));
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "one lookup for 20 requests"
    );
    // Within RESOLVE_EVERY the failure is answered from memory, as unresolved (503).
    let again = up.addresses().await.expect_err("still unresolved");
    assert!(crate::upstream::is_unresolved(&again));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}
