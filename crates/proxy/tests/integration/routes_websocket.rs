//! A dev server's hot-reload WebSocket through a route (issue 23 §4): a real WebSocket server
//! (tungstenite) on plain HTTP behind an `http://` route, a real WebSocket client over TLS in
//! front. Messages both ways, a close from either side, and the channel stays up across a
//! change of the routes.

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::routes::proxy_with_routes;
use crate::support::TestProxy;
use crate::support::raw::{SOON, h1};

/// What the server saw of one connection's end.
#[derive(Debug, PartialEq, Eq)]
enum ServerSaw {
    /// The client's Close frame.
    ClientClosed,
    /// It closed the connection itself (asked to with `close-me`).
    ClosedByServer,
}

/// A hot-reload server: greets each client (`reload`), echoes text (`echo: …`), closes on
/// `close-me`; reports how each connection ended.
async fn dev_server() -> (SocketAddr, mpsc::UnboundedReceiver<ServerSaw>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
                    return;
                };
                let _ = ws.send(Message::text("reload")).await;
                while let Some(Ok(msg)) = ws.next().await {
                    match msg {
                        Message::Text(t) if t.as_str() == "close-me" => {
                            let _ = ws.close(None).await;
                            let _ = tx.send(ServerSaw::ClosedByServer);
                            return;
                        }
                        Message::Text(t) => {
                            let _ = ws.send(Message::text(format!("echo: {t}"))).await;
                        }
                        Message::Close(_) => {
                            // The reply Close frame tungstenite queued goes out with a flush.
                            let _ = ws.flush().await;
                            let _ = tx.send(ServerSaw::ClientClosed);
                            return;
                        }
                        _ => {}
                    }
                }
            });
        }
    });
    (addr, rx)
}

type Client = tokio_tungstenite::WebSocketStream<crate::support::raw::Tls>;

/// A WebSocket client through the proxy's TLS port to `wss://web.localhost/hmr`.
async fn connect(proxy: &TestProxy) -> Client {
    let tls = h1(proxy.https).await;
    let req = "wss://web.localhost/hmr"
        .into_client_request()
        .expect("request");
    let (ws, resp) = tokio::time::timeout(SOON, tokio_tungstenite::client_async(req, tls))
        .await
        .expect("handshake in time")
        .expect("handshake");
    assert_eq!(resp.status(), 101);
    ws
}

/// The next text message (pings and pongs skipped).
async fn next_text(ws: &mut Client) -> String {
    loop {
        let msg = tokio::time::timeout(SOON, ws.next())
            .await
            .expect("a message in time")
            .expect("the channel is open")
            .expect("a frame");
        if let Message::Text(t) = msg {
            return t.as_str().to_owned();
        }
    }
}

#[tokio::test]
async fn a_hot_reload_websocket_works_through_a_route_and_closes_from_either_side() {
    let (server, mut saw) = dev_server().await;
    let routes = format!("web.localhost=http://{server}");
    let proxy = proxy_with_routes(&routes, &[]).await;

    // Messages both ways.
    let mut ws = connect(&proxy).await;
    assert_eq!(next_text(&mut ws).await, "reload", "the server pushes");
    for i in 0..5 {
        ws.send(Message::text(format!("ping {i}")))
            .await
            .expect("send");
        assert_eq!(next_text(&mut ws).await, format!("echo: ping {i}"));
    }
    // The client closes: the server gets the Close frame, the client the close handshake.
    ws.close(None).await.expect("close");
    let end = tokio::time::timeout(SOON, saw.recv())
        .await
        .expect("in time");
    assert_eq!(end, Some(ServerSaw::ClientClosed));
    let after = tokio::time::timeout(SOON, ws.next())
        .await
        .expect("ends in time");
    assert!(
        matches!(after, None | Some(Ok(Message::Close(_)))),
        "{after:?}"
    );

    // The server closes: the client sees its Close frame, then the end.
    let mut ws = connect(&proxy).await;
    assert_eq!(next_text(&mut ws).await, "reload");
    ws.send(Message::text("close-me")).await.expect("send");
    let got = tokio::time::timeout(SOON, ws.next())
        .await
        .expect("in time");
    assert!(matches!(got, Some(Ok(Message::Close(_)))), "{got:?}");
    let end = tokio::time::timeout(SOON, saw.recv())
        .await
        .expect("in time");
    assert_eq!(end, Some(ServerSaw::ClosedByServer));
}

#[tokio::test]
async fn a_hot_reload_websocket_stays_up_while_the_routes_change() {
    let (server, _saw) = dev_server().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("routes");
    let base = format!("web.localhost=http://{server}\n");
    std::fs::write(&file, &base).expect("write");
    let mut opts = crate::support::ProxyOptions::new(&[]);
    let path = file.to_str().expect("utf-8").to_owned();
    opts.env.push(("PROXY_ROUTES_FILE".into(), path));
    let proxy = TestProxy::start_with(opts).await;
    let mut ws = connect(&proxy).await;
    assert_eq!(next_text(&mut ws).await, "reload");
    for i in 0..10 {
        let text = format!("{base}api{i}.localhost=http://127.0.0.1:9\n");
        std::fs::write(&file, text).expect("write");
        proxy.routes.reload().expect("reload");
        let (status, _) = crate::routes::get(&proxy, &format!("api{i}.localhost"), "/").await;
        assert_eq!(
            status, 502,
            "change {i} in force (its upstream refuses: 502, not 404)"
        );
        ws.send(Message::text(format!("after change {i}")))
            .await
            .expect("send");
        assert_eq!(next_text(&mut ws).await, format!("echo: after change {i}"));
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    ws.send(Message::text("still here")).await.expect("send");
    assert_eq!(next_text(&mut ws).await, "echo: still here");
}
