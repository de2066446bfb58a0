//! Static-file edges found by probing as an attacker would: `If-Match` (412), `Range` headers
//! that must be ignored or tolerated rather than refused, paths that name a static root in
//! another spelling (merged slashes, encoded letters), and redirects that stay on this host.

use http::StatusCode;

use crate::static_files::{JS, Site};

#[tokio::test]
async fn if_match_that_names_another_version_is_412() {
    let site = Site::start(&[]).await;
    let first = site.get("/static/hello.txt", &[]).await;
    let etag = first.headers()["etag"].to_str().expect("etag").to_owned();
    let stale = site
        .get("/static/hello.txt", &[("if-match", "\"nope\"")])
        .await;
    assert_eq!(stale.status(), StatusCode::PRECONDITION_FAILED);
    let resumed = site
        .get(
            "/static/hello.txt",
            &[("if-match", "\"nope\""), ("range", "bytes=0-1")],
        )
        .await;
    assert_eq!(resumed.status(), StatusCode::PRECONDITION_FAILED);
    for ok in [etag.as_str(), "*", &format!("\"x\", {etag}")] {
        let resp = site.get("/static/hello.txt", &[("if-match", ok)]).await;
        assert_eq!(resp.status(), StatusCode::OK, "If-Match: {ok}");
    }
    let weak = format!("W/{etag}");
    let resp = site.get("/static/hello.txt", &[("if-match", &weak)]).await;
    assert_eq!(
        resp.status(),
        StatusCode::PRECONDITION_FAILED,
        "weak never matches"
    );
}

#[tokio::test]
async fn ranges_in_other_units_or_spellings_are_ignored_or_tolerated() {
    let site = Site::start(&[]).await;
    let len = JS.len() * 100;
    for (range, status, body_len) in [
        ("items=0-9", StatusCode::OK, len),
        ("BYTES=0-9", StatusCode::PARTIAL_CONTENT, 10),
        ("bytes= 0-9", StatusCode::PARTIAL_CONTENT, 10),
        ("bytes=0-9,", StatusCode::PARTIAL_CONTENT, 10),
        ("bytes=0-9,20-29", StatusCode::OK, len),
        ("bytes=999999-", StatusCode::RANGE_NOT_SATISFIABLE, 0),
    ] {
        let resp = site
            .get(
                "/static/app.js",
                &[("range", range), ("accept-encoding", "identity")],
            )
            .await;
        assert_eq!(resp.status(), status, "Range: {range}");
        if status != StatusCode::RANGE_NOT_SATISFIABLE {
            let body = resp.bytes().await.expect("body");
            assert_eq!(body.len(), body_len, "Range: {range}");
        }
    }
}

#[tokio::test]
async fn other_spellings_of_a_static_path_are_static_too() {
    let site = Site::start(&[]).await;
    // The upstream is a closed port: anything forwarded would be a 502.
    for target in [
        "//static/hello.txt",
        "/%73tatic/hello.txt",
        "/static//hello.txt",
    ] {
        let answer = site.raw("GET", target).await;
        assert_eq!(answer.status, 200, "{target}: {}", answer.head);
        assert_eq!(answer.body, b"hello\n", "{target}");
    }
    // ... and so the static rules hold for them: no dotfile by the back door.
    for target in ["/%73tatic/.env", "//static/.env", "/%73tatic/%2eenv"] {
        let answer = site.raw("GET", target).await;
        assert_eq!(answer.status, 404, "{target}: {}", answer.head);
    }
}

#[tokio::test]
async fn a_folder_redirect_stays_on_this_host() {
    let site = Site::start(&[]).await;
    let answer = site.raw("GET", "/static//sub").await;
    assert_eq!(answer.status, 301, "{}", answer.head);
    assert_eq!(answer.header("location"), Some("/static/sub/"));
}
