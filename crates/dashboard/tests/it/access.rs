//! Access control, CSRF and security headers, over every route of the route table.

use axum::http::{Method, StatusCode};
use dashboard::{ROUTES, RouteMethod};
use serde_json::json;
use sync_store::{Direction, FailureState};

use super::{TOKEN, World, each, get, post, send};

/// A concrete path for a route: parameters get a value that exists nowhere.
fn concrete(path: &str) -> String {
    path.replace("{id}", "00000000-no-such-id")
}

fn method(route: &dashboard::Route) -> Method {
    match route.method {
        RouteMethod::Get => Method::GET,
        RouteMethod::Post => Method::POST,
    }
}

const SECURITY_HEADERS: [(&str, &str); 5] = [
    ("cross-origin-resource-policy", "same-origin"),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "no-referrer"),
    ("cache-control", "no-store"),
];

#[track_caller]
fn assert_security_headers(what: &str, headers: &axum::http::HeaderMap) {
    for (name, value) in SECURITY_HEADERS {
        assert_eq!(
            headers.get(name).and_then(|v| v.to_str().ok()),
            Some(value),
            "{what}: header {name} in {headers:?}"
        );
    }
    let csp = headers
        .get("content-security-policy")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    for directive in ["default-src 'self'", "script-src 'none'", "frame-ancestors 'none'"] {
        assert!(csp.contains(directive), "{what}: CSP {csp:?} lacks {directive}");
    }
    assert!(!csp.contains("unsafe-inline"), "{what}: {csp}");
}

#[tokio::test]
async fn every_route_but_the_liveness_probe_refuses_a_missing_or_wrong_credential() {
    let db = sync_store::testing::TestDatabase::sqlite().await.unwrap();
    let w = World::new(&db).await;
    assert!(ROUTES.len() > 20, "the table lists every route");
    let wrong: [(&str, String); 5] = [
        ("none", String::new()),
        ("wrong bearer", "Bearer not-the-token".into()),
        ("token with a suffix", format!("Bearer {TOKEN}x")),
        // "admin:wrong"
        ("wrong basic", "Basic YWRtaW46d3Jvbmc=".into()),
        ("another scheme", format!("Token {TOKEN}")),
    ];
    for (n, route) in ROUTES.iter().enumerate() {
        let path = concrete(route.path);
        for (what, authorization) in &wrong {
            // Each route from its own address: so many wrong credentials from one would be limited (another test).
            let client = std::net::SocketAddr::from(([10, 0, 0, u8::try_from(n).unwrap()], 40_000));
            let mut request = get(&path).method(method(route)).from(client);
            if !authorization.is_empty() {
                request = request.header("authorization", authorization);
            }
            let (status, headers, body) = send(&w.router, request).await;
            let label = format!("{:?} {path} with {what}", route.method);
            assert_security_headers(&label, &headers);
            if route.public {
                assert_eq!(status, StatusCode::OK, "{label}: {body}");
                continue;
            }
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{label}: {body}");
            let prompt = headers
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            assert!(
                prompt.starts_with("Basic realm="),
                "{label}: a browser must be prompted: {prompt:?}"
            );
            assert!(
                !body.contains("hlf"),
                "{label}: nothing is shown before signing in: {body}"
            );
        }
    }
    assert_eq!(
        ROUTES.iter().filter(|r| r.public).map(|r| r.path).collect::<Vec<_>>(),
        ["/healthz"],
        "only the liveness probe is public"
    );
    drop(w);
    db.cleanup().await.unwrap();
}

#[tokio::test]
async fn every_page_answers_the_admin_with_security_headers_in_a_browser_and_as_json() {
    each(|db| async move {
        let w = World::new(&db).await;
        w.with_conflict_and_failure().await;
        for route in ROUTES
            .iter()
            .filter(|r| r.method == RouteMethod::Get && !r.path.contains('{'))
        {
            let (status, headers, body) = send(&w.router, get(route.path).bearer(TOKEN)).await;
            assert_eq!(status, StatusCode::OK, "GET {}: {body}", route.path);
            let content_type = headers
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            if route.path.starts_with("/api/") {
                assert!(
                    content_type.starts_with("application/json"),
                    "{}: {content_type}",
                    route.path
                );
                serde_json::from_str::<serde_json::Value>(&body).unwrap();
            }
            if route.path == "/assets/style.css" {
                assert!(content_type.starts_with("text/css"));
                continue;
            }
            assert_security_headers(route.path, &headers);
            assert!(!body.contains("<script"), "{}: no script anywhere", route.path);
            assert!(
                !body.contains(dataverse_sim::DEFAULT_CLIENT_SECRET) && !body.contains(TOKEN),
                "{}: secrets are never shown",
                route.path
            );
        }
        // A browser's login prompt: any user name and the token as the password. The name proves nothing in bearer
        // mode, so the admin is recorded under a fixed one, never the name the client sent.
        let basic = format!("Basic {}", base64(&format!("kari\u{1b}[31m:{TOKEN}")));
        let (status, _, body) = send(&w.router, get("/").header("authorization", &basic)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(body.contains("Signed in as admin (bearer token)"), "{body}");
        assert!(!body.contains("kari"), "{body}");
        drop(w);
        db
    })
    .await;
}

#[tokio::test]
async fn a_post_without_a_valid_token_or_from_another_site_changes_nothing() {
    each(|db| async move {
        let w = World::new(&db).await;
        w.with_conflict_and_failure().await;
        let form = "org=hlf&key=hlf-899990&direction=push";
        let token = w.csrf_token().await;
        let refused = [
            ("no token", post("/failures/requeue", form).bearer(TOKEN)),
            (
                "a forged token",
                post("/failures/requeue", &format!("{form}&csrf=1780000000.00ff")).bearer(TOKEN),
            ),
            (
                "another site's form",
                post("/failures/requeue", &format!("{form}&csrf={token}"))
                    .bearer(TOKEN)
                    .header("origin", "https://evil.example")
                    .header("sec-fetch-site", "cross-site"),
            ),
            (
                "an API call without the header",
                post("/api/failures/requeue", "")
                    .bearer(TOKEN)
                    .json(&json!({ "org": "hlf", "key": "hlf-899990", "direction": "push" })),
            ),
        ];
        for (what, request) in refused {
            let (status, headers, body) = send(&w.router, request).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{what}: {body}");
            assert_security_headers(what, &headers);
            let failure = w
                .store
                .failure("hlf", "mentor", "hlf-899990", Direction::Push)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(failure.state, FailureState::Dead, "{what} must change nothing");
        }
        // GET never acts: the action routes answer only POST.
        let (status, _, _) = send(&w.router, get(&format!("/failures/requeue?{form}")).bearer(TOKEN)).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        // The same request with the token, from the dashboard's own page, is accepted.
        let (status, headers, body) = send(
            &w.router,
            post("/failures/requeue", &format!("{form}&csrf={token}"))
                .bearer(TOKEN)
                .header("origin", "http://127.0.0.1:8088")
                .header("sec-fetch-site", "same-origin"),
        )
        .await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
        assert_eq!(headers["location"], "/failures?notice=requeued");
        drop(w);
        db
    })
    .await;
}

#[tokio::test]
async fn nested_under_a_prefix_links_forms_and_redirects_keep_the_prefix() {
    let db = sync_store::testing::TestDatabase::sqlite().await.unwrap();
    let w = World::new(&db).await;
    w.with_conflict_and_failure().await;
    let app = axum::Router::new().nest("/admin/integration", w.dashboard.router());
    let (status, _, body) = send(&app, get("/admin/integration").bearer(TOKEN)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains(r#"href="/admin/integration/assets/style.css""#), "{body}");
    assert!(body.contains(r#"href="/admin/integration/conflicts""#), "{body}");
    assert!(body.contains(r#"href="/admin/integration/failures?org=hlf""#), "{body}");
    assert!(!body.contains(r#"href="/runs""#), "no link escapes the prefix: {body}");
    let (status, _, page) = send(&app, get("/admin/integration/conflicts").bearer(TOKEN)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains(r#"action="/admin/integration/conflicts/"#), "{page}");
    let (status, _, css) = send(&app, get("/admin/integration/assets/style.css").bearer(TOKEN)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(css.contains("svg.chart"));
    let (status, _, _) = send(&app, get("/admin/integration/healthz")).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = send(&app, get("/admin/integration/runs")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let token = w.csrf_token().await;
    let (status, headers, body) = send(
        &app,
        post(
            "/admin/integration/failures/dismiss",
            &format!("org=hlf&key=hlf-899990&direction=push&csrf={token}"),
        )
        .bearer(TOKEN),
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
    assert_eq!(headers["location"], "/admin/integration/failures?notice=dismissed");
    drop(w);
    db.cleanup().await.unwrap();
}

fn base64(text: &str) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes = text.as_bytes();
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[tokio::test]
async fn another_site_cannot_make_a_signed_in_browser_fetch_any_page() {
    each(|db| async move {
        let w = World::new(&db).await;
        for path in ["/", "/export", "/api/overview", "/failures"] {
            for site in ["cross-site", "same-site"] {
                let (status, _, body) = send(&w.router, get(path).bearer(TOKEN).header("sec-fetch-site", site)).await;
                assert_eq!(status, StatusCode::FORBIDDEN, "{path} from {site}: {body}");
                assert!(body.contains("another site"), "{body}");
            }
            // Typed or bookmarked (`none`), or the dashboard's own links: served.
            for site in ["none", "same-origin"] {
                let (status, _, body) = send(&w.router, get(path).bearer(TOKEN).header("sec-fetch-site", site)).await;
                assert_eq!(status, StatusCode::OK, "{path} from {site}: {body}");
            }
        }
        drop(w);
        db
    })
    .await;
}

#[tokio::test]
async fn failed_sign_ins_are_limited_per_client_address() {
    each(|db| async move {
        let w = World::new(&db).await;
        // A browser's first request, without a credential, is the login prompt: never counted.
        for _ in 0..20 {
            assert_eq!(send(&w.router, get("/")).await.0, StatusCode::UNAUTHORIZED);
        }
        for attempt in 1..=10 {
            let (status, _, _) = send(&w.router, get("/").bearer(&format!("guess-{attempt}"))).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "attempt {attempt}");
        }
        // The eleventh try within the window is refused whatever it sends, the right token included.
        let (status, headers, body) = send(&w.router, get("/").bearer(TOKEN)).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
        let wait: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((1..=900).contains(&wait), "{wait}");
        assert!(!body.contains("guess"), "{body}");
        // Another address is not held back by the guesser's failures.
        let elsewhere = std::net::SocketAddr::from(([192, 0, 2, 7], 50_000));
        let (status, _, _) = send(&w.router, get("/").bearer(TOKEN).from(elsewhere)).await;
        assert_eq!(status, StatusCode::OK);
        drop(w);
        db
    })
    .await;
}

#[tokio::test]
async fn a_metrics_token_reads_the_metrics_and_nothing_else() {
    each(|db| async move {
        let w = World::new(&db).await;
        const METRICS_TOKEN: &str = "metrics-only-token-0123456789abcdef";
        let mut config = w.config.clone();
        config.dashboard.metrics_token = Some((
            "SYNC_METRICS_TOKEN".into(),
            integration_config::SecretSource::value(METRICS_TOKEN),
        ));
        let router = dashboard::Dashboard::new(
            config.clone(),
            w.store.clone(),
            vec![w.service.clone()],
            dashboard::DashboardOptions::default(),
        )
        .unwrap()
        .router();
        let (status, _, body) = send(&router, get("/metrics").bearer(METRICS_TOKEN)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(body.contains("hlf_sync_health_status"), "{body}");
        for path in ["/", "/api/overview", "/export", "/config"] {
            let (status, _, _) = send(&router, get(path).bearer(METRICS_TOKEN)).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{path} is not for the metrics token");
        }
        // The admin credential still reads the metrics.
        assert_eq!(send(&router, get("/metrics").bearer(TOKEN)).await.0, StatusCode::OK);
        // A short token is refused at start, naming its variable.
        config.dashboard.metrics_token = Some((
            "SYNC_METRICS_TOKEN".into(),
            integration_config::SecretSource::value("short"),
        ));
        let error = dashboard::Dashboard::new(config, w.store.clone(), vec![w.service.clone()], Default::default())
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("SYNC_METRICS_TOKEN has 5 characters; use at least 32"),
            "{error}"
        );
        drop(w);
        db
    })
    .await;
}
