//! Listening sockets: bound with `SO_REUSEPORT` so each worker can open its own on the same
//! address (the kernel spreads new connections over them), yet an address another program
//! already listens on is still refused, as a plain bind would be.

use std::io;
use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpSocket};

/// Pending connections each listening socket holds (tokio's and std's default).
const BACKLOG: u32 = 1024;

/// Bind a TCP listener, naming `var` and the address in the error.
///
/// Workers sharing one socket (`dup`) left the load on whichever one woke first: a burst of
/// connections arrives as one readiness event, and the woken worker accepts them all. Each
/// worker's own socket ([`worker_listener`]) lets the kernel spread them.
pub async fn bind(var: &str, addr: SocketAddr) -> Result<TcpListener, BindError> {
    let bound = refuse_if_in_use(addr).and_then(|()| reuseport(addr));
    bound.map_err(|source| BindError {
        var: var.to_owned(),
        addr,
        source,
    })
}

/// Another socket on `listener`'s address for one more worker, when `listener` was bound by
/// [`bind`]; `None` when it was not (`SO_REUSEPORT` unset, e.g. a listener a test bound), and
/// the caller shares `listener` instead.
pub fn worker_listener(listener: &TcpListener) -> Option<std::net::TcpListener> {
    let own = listener.local_addr().and_then(reuseport).ok()?;
    own.into_std().ok()
}

/// `SO_REUSEPORT` lets any socket of the same user with the option join the address; a plain
/// bind first (with `SO_REUSEADDR`, as tokio's own bind, so `TIME_WAIT` does not count) keeps
/// "address in use" for a second proxy or any other program listening there. An ephemeral
/// port (`:0`) is always new.
fn refuse_if_in_use(addr: SocketAddr) -> io::Result<()> {
    if addr.port() == 0 {
        return Ok(());
    }
    let probe = socket_for(addr)?;
    probe.set_reuseaddr(true)?;
    probe.bind(addr)
}

fn reuseport(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = socket_for(addr)?;
    socket.set_reuseaddr(true)?;
    socket.set_reuseport(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

fn socket_for(addr: SocketAddr) -> io::Result<TcpSocket> {
    if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
}

/// A listener that could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("{var}={addr}: cannot listen: {source}")]
pub struct BindError {
    pub var: String,
    pub addr: SocketAddr,
    #[source]
    pub source: io::Error,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loopback() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 0))
    }

    #[tokio::test]
    async fn a_worker_gets_its_own_socket_on_the_same_address() {
        let first = bind("X", loopback()).await.expect("bind");
        let own = worker_listener(&first).expect("a second socket joins the address");
        assert_eq!(own.local_addr().ok(), first.local_addr().ok());
        // Both sockets accept: each has its own queue, not a shared one.
        let own = TcpListener::from_std(own).expect("register");
        let addr = first.local_addr().expect("addr");
        let clients: Vec<_> = (0..64)
            .map(|_| std::net::TcpStream::connect(addr).expect("connect"))
            .collect();
        let mut accepted = [0usize; 2];
        for (i, l) in [&first, &own].into_iter().enumerate() {
            while let Ok(Ok(_)) =
                tokio::time::timeout(std::time::Duration::from_millis(200), l.accept()).await
            {
                accepted[i] += 1;
            }
        }
        assert_eq!(accepted[0] + accepted[1], clients.len());
        assert!(
            accepted.iter().all(|&n| n > 0),
            "the kernel spread 64 connections over both sockets: {accepted:?}"
        );
    }

    #[tokio::test]
    async fn an_address_in_use_is_still_refused() {
        let first = bind("PROXY_HTTPS_LISTEN", loopback()).await.expect("bind");
        let addr = first.local_addr().expect("addr");
        let err = bind("PROXY_HTTPS_LISTEN", addr).await.expect_err("in use");
        assert_eq!(err.source.kind(), io::ErrorKind::AddrInUse, "{err}");
        assert!(
            err.to_string()
                .starts_with(&format!("PROXY_HTTPS_LISTEN={addr}: cannot listen"))
        );
        // And so is a port a program bound without SO_REUSEPORT.
        let plain = std::net::TcpListener::bind(loopback()).expect("plain");
        let taken = plain.local_addr().expect("addr");
        assert!(bind("X", taken).await.is_err());
    }

    #[test]
    fn a_listener_bound_without_the_option_is_shared_instead() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("rt");
        rt.block_on(async {
            let plain = TcpListener::bind(loopback()).await.expect("bind");
            assert!(worker_listener(&plain).is_none());
        });
    }
}
