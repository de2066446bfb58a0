//! The live error page: `PROXY_ERROR_PAGE` edited while the real proxy serves (in place, by an
//! editor's write-then-rename, or deleted), seen through real 502 answers over TLS. A valid edit
//! is served on the next error; an edit that does not compile, or a deleted file, keeps the old
//! page serving and logs why, naming the file and the line.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::{Captured, TestProxy, client, closed_port, eventually};

const DEADLINE: Duration = Duration::from_secs(10);

/// A proxy with nothing behind it (every request is a 502) and its page in a fresh folder.
async fn proxy_with_page(first: &str) -> (TestProxy, PathBuf, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let page = dir.path().join("error.html");
    std::fs::write(&page, first).expect("write page");
    let down = closed_port().await.to_string();
    let page_str = page.to_str().expect("utf-8").to_owned();
    let proxy = TestProxy::start(&down, &[("PROXY_ERROR_PAGE", page_str.as_str())]).await;
    // A served error means `run` started, so the page's folder watch is in place.
    assert_eq!(body(&proxy).await, "v1 502");
    (proxy, page, dir)
}

/// The body of the next error answer.
async fn body(proxy: &TestProxy) -> String {
    let resp = client()
        .get(proxy.url("/missing"))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 502);
    resp.text().await.expect("body")
}

async fn await_page(proxy: &TestProxy, want: &str) {
    let seen = eventually(DEADLINE, || async { body(proxy).await == want }).await;
    assert!(seen, "the proxy never served {want:?}");
}

async fn await_log(captured: &Captured, want: &str) -> String {
    let seen = eventually(DEADLINE, || async { captured.text().contains(want) }).await;
    let log = captured.text();
    assert!(seen, "no {want:?} in the log:\n{log}");
    log
}

/// Save the way editors do: write a temporary file beside it, then rename it over the page.
fn save_by_rename(page: &Path, text: &str) {
    let tmp = page.with_file_name(".error.html.swp");
    std::fs::write(&tmp, text).expect("write temp");
    std::fs::rename(&tmp, page).expect("rename over");
}

#[tokio::test]
async fn an_edit_is_served_on_the_next_error() {
    let (proxy, page, _dir) = proxy_with_page("v1 {{ status }}").await;
    std::fs::write(&page, "v2 {{ status }}").expect("edit in place");
    await_page(&proxy, "v2 502").await;
}

#[tokio::test]
async fn an_atomic_rename_save_is_picked_up_twice() {
    let (proxy, page, _dir) = proxy_with_page("v1 {{ status }}").await;
    save_by_rename(&page, "v2 {{ status }}");
    await_page(&proxy, "v2 502").await;
    save_by_rename(&page, "v3 {{ status }}");
    await_page(&proxy, "v3 502").await;
}

#[tokio::test]
async fn an_edit_that_does_not_compile_keeps_the_old_page_and_logs_file_and_line() {
    let (captured, _guard) = Captured::info();
    let (proxy, page, _dir) = proxy_with_page("v1 {{ status }}").await;
    save_by_rename(&page, "<p>fine</p>\n{% if %}\n");
    let log = await_log(&captured, "new error page refused").await;
    let line = log
        .lines()
        .find(|l| l.contains("new error page refused"))
        .unwrap_or_default();
    assert!(line.contains("ERROR"), "{line}");
    assert!(
        line.contains(&format!("PROXY_ERROR_PAGE={}: line 2:", page.display())),
        "{line}"
    );
    assert_eq!(body(&proxy).await, "v1 502");
    // A misspelt variable only fails when rendered: refused the same way.
    save_by_rename(&page, "v2 {{ stauts }}");
    await_log(&captured, "fails to render").await;
    assert_eq!(body(&proxy).await, "v1 502");
    // Fixed: taken.
    save_by_rename(&page, "v3 {{ status }}");
    await_page(&proxy, "v3 502").await;
}

#[tokio::test]
async fn a_deleted_page_keeps_the_old_one_until_it_is_back() {
    let (captured, _guard) = Captured::info();
    let (proxy, page, _dir) = proxy_with_page("v1 {{ status }}").await;
    std::fs::remove_file(&page).expect("delete");
    await_log(&captured, "cannot read the template").await;
    assert_eq!(body(&proxy).await, "v1 502");
    std::fs::write(&page, "v2 {{ status }}").expect("write again");
    await_page(&proxy, "v2 502").await;
}
