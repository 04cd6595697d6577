//! Against a real HTTP server on 127.0.0.1, started by each test.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap as Headers, StatusCode};
use axum::routing::any;
use sfn_worker_core::{CancelReason, HandlerFactory, TaskContext};

use super::*;

/// Serve `app` on a free port; returns its base URL.
async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

fn http(params: serde_json::Value) -> Arc<dyn Handler> {
    Http.build(serde_json::from_value(params).unwrap()).unwrap()
}

async fn call(h: &Arc<dyn Handler>, input: &str) -> Result<String, TaskError> {
    h.call(input.to_owned(), TaskContext::local("t")).await
}

#[tokio::test]
async fn a_2xx_json_answer_is_the_output_and_the_input_is_the_body() {
    let app = Router::new().route(
        "/echo",
        any(|headers: Headers, body: Bytes| async move {
            assert_eq!(headers["content-type"], "application/json");
            let mut v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            v["seen"] = true.into();
            v.to_string()
        }),
    );
    let base = serve(app).await;
    let h = http(serde_json::json!({ "url": format!("{base}/echo") }));
    assert_eq!(
        call(&h, r#"{"a":1}"#).await.unwrap(),
        r#"{"a":1,"seen":true}"#
    );
}

#[tokio::test]
async fn an_empty_2xx_body_is_an_empty_object_and_a_non_json_one_is_invalid() {
    let app = Router::new()
        .route("/empty", any(|| async { StatusCode::NO_CONTENT }))
        .route("/text", any(|| async { "hello" }));
    let base = serve(app).await;
    let h = http(serde_json::json!({ "url": format!("{base}/empty") }));
    assert_eq!(call(&h, "{}").await.unwrap(), "{}");
    let h = http(serde_json::json!({ "url": format!("{base}/text") }));
    let err = call(&h, "{}").await.unwrap_err();
    assert_eq!(err.error(), INVALID_RESPONSE);
    assert!(err.cause().contains("hello"), "{}", err.cause());
}

#[tokio::test]
async fn client_and_server_errors_are_told_apart_with_status_and_a_bounded_body() {
    let app = Router::new()
        .route(
            "/missing",
            any(|| async { (StatusCode::NOT_FOUND, "no such order") }),
        )
        .route(
            "/broken",
            any(|| async { (StatusCode::SERVICE_UNAVAILABLE, "x".repeat(10_000)) }),
        );
    let base = serve(app).await;
    let err = call(
        &http(serde_json::json!({ "url": format!("{base}/missing") })),
        "{}",
    )
    .await
    .unwrap_err();
    assert_eq!(err.error(), CLIENT_ERROR);
    assert_eq!(err.cause(), "HTTP 404 Not Found: no such order");
    let err = call(
        &http(serde_json::json!({ "url": format!("{base}/broken") })),
        "{}",
    )
    .await
    .unwrap_err();
    assert_eq!(err.error(), SERVER_ERROR);
    assert!(err.cause().starts_with("HTTP 503 Service Unavailable: xxx"));
    assert!(
        err.cause().len() < CAUSE_BODY_BYTES + 100,
        "cause is bounded"
    );
}

#[tokio::test]
async fn a_slow_answer_is_a_timeout() {
    let app = Router::new().route(
        "/slow",
        any(|| async {
            tokio::time::sleep(Duration::from_secs(10)).await;
            "{}"
        }),
    );
    let base = serve(app).await;
    let h = http(serde_json::json!({ "url": format!("{base}/slow"), "timeout_secs": 1 }));
    let start = Instant::now();
    let err = call(&h, "{}").await.unwrap_err();
    assert_eq!(err.error(), TIMEOUT, "{}", err.cause());
    assert!(start.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn nobody_listening_is_a_connect_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let h = http(serde_json::json!({ "url": format!("http://127.0.0.1:{port}/") }));
    assert_eq!(call(&h, "{}").await.unwrap_err().error(), CONNECT_ERROR);
}

#[tokio::test]
async fn a_body_over_the_bound_is_refused() {
    let app = Router::new().route(
        "/big",
        any(|| async { format!("\"{}\"", "y".repeat(5000)) }),
    );
    let base = serve(app).await;
    let h = http(serde_json::json!({ "url": format!("{base}/big"), "max_response_bytes": 1000 }));
    assert_eq!(
        call(&h, "{}").await.unwrap_err().error(),
        RESPONSE_TOO_LARGE
    );
    let h = http(serde_json::json!({ "url": format!("{base}/big"), "max_response_bytes": 6000 }));
    assert!(call(&h, "{}").await.is_ok());
}

#[tokio::test]
async fn cancellation_aborts_the_request() {
    let dropped = Arc::new(AtomicBool::new(false));
    struct Flag(Arc<AtomicBool>);
    impl Drop for Flag {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let d = dropped.clone();
    let app = Router::new().route(
        "/hang",
        any(move || {
            let flag = Flag(d.clone());
            async move {
                tokio::time::sleep(Duration::from_secs(30)).await;
                drop(flag);
                "{}"
            }
        }),
    );
    let base = serve(app).await;
    let h = http(serde_json::json!({ "url": format!("{base}/hang") }));
    let (ctx, c) = TaskContext::local_cancellable("t");
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        c.cancel(CancelReason::TaskClosed);
    });
    let start = Instant::now();
    let err = h.call("{}".into(), ctx).await.unwrap_err();
    assert_eq!(err.error(), CANCELLED);
    assert!(start.elapsed() < Duration::from_secs(2));
    // The server sees the connection go: its handler future is dropped.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !dropped.load(Ordering::SeqCst) {
        assert!(
            Instant::now() < deadline,
            "the server never saw the request aborted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn method_and_headers_including_one_from_the_environment() {
    let app = Router::new().route(
        "/h",
        any(|method: axum::http::Method, headers: Headers| async move {
            serde_json::json!({
                "method": method.as_str(),
                "key": headers.get("x-api-key").and_then(|v| v.to_str().ok()),
                "home": headers.get("x-home").and_then(|v| v.to_str().ok()),
            })
            .to_string()
        }),
    );
    let base = serve(app).await;
    let h = http(serde_json::json!({
        "url": format!("{base}/h"), "method": "put",
        "headers": { "X-Api-Key": "k1", "X-Home": { "env": "HOME" } }
    }));
    let out: serde_json::Value = serde_json::from_str(&call(&h, "{}").await.unwrap()).unwrap();
    let home = std::env::var("HOME").unwrap();
    assert_eq!(
        out,
        serde_json::json!({ "method": "PUT", "key": "k1", "home": home })
    );
}

#[test]
fn bad_params_are_refused_at_load() {
    let build = |p: serde_json::Value| {
        Http.build(serde_json::from_value(p).unwrap())
            .err()
            .unwrap()
            .to_string()
    };
    assert!(build(serde_json::json!({ "url": "not a url" })).starts_with("url:"));
    assert!(build(serde_json::json!({ "url": "ftp://x/" })).starts_with("url:"));
    assert!(
        build(serde_json::json!({ "url": "http://x/", "method": "GE T" })).starts_with("method:")
    );
    let err = build(
        serde_json::json!({ "url": "http://x/", "headers": { "A": { "env": "SFN_WORKER_TEST_UNSET_VARIABLE" } } }),
    );
    assert_eq!(
        err,
        "headers.A: environment variable SFN_WORKER_TEST_UNSET_VARIABLE is not set"
    );
    assert!(
        build(serde_json::json!({ "url": "http://x/", "timeout_secs": u64::MAX }))
            .starts_with("timeout_secs: expected at most")
    );
}

/// What a server saw: (method, path, the X-Home and X-Team headers, body).
type Seen = Arc<std::sync::Mutex<Vec<(String, String, Option<String>, Option<String>, String)>>>;

/// A server that records requests; `/to?u=URL&s=STATUS` redirects there.
async fn recording() -> (String, Seen) {
    let seen: Seen = Arc::default();
    let s = seen.clone();
    let app = Router::new().fallback(any(
        move |method: axum::http::Method, uri: axum::http::Uri, headers: Headers, body: Bytes| {
            let s = s.clone();
            async move {
                let h = |n: &str| {
                    headers
                        .get(n)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned)
                };
                s.lock().unwrap().push((
                    method.to_string(),
                    uri.path().to_owned(),
                    h("x-home"),
                    h("x-team"),
                    String::from_utf8_lossy(&body).into_owned(),
                ));
                let query = uri.query().unwrap_or_default().to_owned();
                let param = |k: &str| {
                    query
                        .split('&')
                        .find_map(|kv| kv.strip_prefix(&format!("{k}=")))
                        .map(str::to_owned)
                };
                match (param("u"), param("s")) {
                    (Some(u), Some(status)) => (
                        StatusCode::from_u16(status.parse().unwrap()).unwrap(),
                        [("location", u)],
                        String::new(),
                    )
                        .into_response(),
                    _ => r#"{"done":true}"#.into_response(),
                }
            }
        },
    ));
    (serve(app).await, seen)
}

use axum::response::IntoResponse;

#[tokio::test]
async fn secret_headers_never_follow_a_redirect_to_another_origin() {
    let (a, seen_a) = recording().await;
    let (b, seen_b) = recording().await;
    let headers = serde_json::json!({ "X-Home": { "env": "HOME" }, "X-Team": "orders" });
    // Same origin: everything is sent again, with the body (307).
    let h = http(serde_json::json!({
        "url": format!("{a}/to?s=307&u={a}/final"), "headers": headers.clone()
    }));
    assert_eq!(call(&h, r#"{"n":1}"#).await.unwrap(), r#"{"done":true}"#);
    let home = std::env::var("HOME").unwrap();
    {
        let a = seen_a.lock().unwrap();
        assert_eq!(a.len(), 2);
        assert_eq!(a[1].0, "POST");
        assert_eq!(
            a[1].2.as_deref(),
            Some(home.as_str()),
            "same origin keeps it"
        );
        assert_eq!(a[1].4, r#"{"n":1}"#);
    }
    // Another origin (another port), once allowed: the secret stays behind,
    // the rest goes.
    let h = http(serde_json::json!({
        "url": format!("{a}/to?s=308&u={b}/final"), "headers": headers,
        "redirects": "any-origin"
    }));
    assert_eq!(call(&h, r#"{"n":2}"#).await.unwrap(), r#"{"done":true}"#);
    let b = seen_b.lock().unwrap();
    assert_eq!(b.len(), 1);
    assert_eq!((b[0].0.as_str(), b[0].1.as_str()), ("POST", "/final"));
    assert_eq!(b[0].2, None, "the secret header went to another origin");
    assert_eq!(b[0].3.as_deref(), Some("orders"));
    assert_eq!(b[0].4, r#"{"n":2}"#);
}

#[tokio::test]
async fn a_redirect_that_would_turn_post_into_get_is_not_followed() {
    let (a, seen) = recording().await;
    for status in [301, 302, 303] {
        let h = http(serde_json::json!({ "url": format!("{a}/to?s={status}&u={a}/final") }));
        let err = call(&h, "{}").await.unwrap_err();
        assert_eq!(err.error(), UNEXPECTED_STATUS, "{status}");
        assert!(err.cause().contains("POST into GET"), "{}", err.cause());
    }
    assert!(
        seen.lock().unwrap().iter().all(|r| r.1 != "/final"),
        "followed a redirect it should not have"
    );
    // A GET is redirected as usual.
    let h =
        http(serde_json::json!({ "url": format!("{a}/to?s=302&u={a}/final"), "method": "GET" }));
    assert_eq!(call(&h, "{}").await.unwrap(), r#"{"done":true}"#);
    assert_eq!(seen.lock().unwrap().last().unwrap().1, "/final");
}

#[tokio::test]
async fn a_redirect_to_another_origin_is_refused_by_default_and_followed_when_allowed() {
    let (a, seen_a) = recording().await;
    let (b, seen_b) = recording().await;
    let url = format!("{a}/to?s=307&u={b}/final");
    let h = http(serde_json::json!({ "url": url }));
    let err = call(&h, r#"{"token":"secret"}"#).await.unwrap_err();
    assert_eq!(err.error(), "Http.RedirectRefused", "{}", err.cause());
    assert!(
        err.cause().contains(&format!("{b}/final")),
        "{}",
        err.cause()
    );
    assert!(
        seen_b.lock().unwrap().is_empty(),
        "the body went to another origin"
    );
    assert_eq!(seen_a.lock().unwrap().len(), 1);
    // Allowed: followed, body and all.
    let h = http(serde_json::json!({ "url": url, "redirects": "any-origin" }));
    assert_eq!(call(&h, r#"{"n":1}"#).await.unwrap(), r#"{"done":true}"#);
    assert_eq!(seen_b.lock().unwrap()[0].4, r#"{"n":1}"#);
}

#[tokio::test]
async fn with_redirects_none_even_a_same_origin_redirect_is_refused() {
    let (a, seen) = recording().await;
    let h = http(serde_json::json!({
        "url": format!("{a}/to?s=307&u={a}/final"), "redirects": "none"
    }));
    let err = call(&h, "{}").await.unwrap_err();
    assert_eq!(err.error(), "Http.RedirectRefused", "{}", err.cause());
    assert_eq!(seen.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_redirect_to_a_link_local_address_is_refused_even_when_any_origin_is_allowed() {
    let (a, _) = recording().await;
    for target in [
        "http://169.254.169.254/latest/meta-data/",
        "http://[fe80::1]/",
        "http://[fd00:ec2::254]/latest/meta-data/",
        "http://0.0.0.0/",
    ] {
        let h = http(serde_json::json!({
            "url": format!("{a}/to?s=307&u={target}"),
            "redirects": "any-origin",
            "timeout_secs": 2,
        }));
        let err = call(&h, "{}").await.unwrap_err();
        assert_eq!(
            err.error(),
            "Http.RedirectRefused",
            "{target}: {}",
            err.cause()
        );
    }
}
