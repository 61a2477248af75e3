//! The pages' language: the organisation's by default, the browser's when it names bokmål or English, and the
//! reader's choice from the switch on every page, remembered in a cookie; the JSON API stays English and UTC.

use axum::http::{StatusCode, header};
use dashboard::{ROUTES, RouteMethod};
use serde_json::Value;
use sync_store::testing::TestDatabase;

use super::{TOKEN, World, get, send};

/// The pages a browser opens (every GET that answers HTML), with the query they need.
fn pages() -> Vec<String> {
    ROUTES
        .iter()
        .filter(|r| r.method == RouteMethod::Get && !r.public)
        .filter(|r| !r.path.starts_with("/api/") && !r.path.contains('{'))
        .filter(|r| !["/assets/style.css", "/metrics"].contains(&r.path))
        .map(|r| r.path.to_owned())
        .collect()
}

/// The sections of the catalogues: a `section.key` on a page is a text that was never looked up.
const SECTIONS: [&str; 12] = [
    "frame.",
    "nav.",
    "notice.",
    "overview.",
    "finding.",
    "chart.",
    "runs.",
    "failures.",
    "conflicts.",
    "config.",
    "export.",
    "error.",
];

#[tokio::test]
async fn every_page_speaks_the_organisation_s_language_unless_the_browser_asks_for_the_other() {
    let db = TestDatabase::sqlite().await.unwrap();
    let w = World::new(&db).await;
    w.with_conflict_and_failure().await;
    for path in pages() {
        for (accept, lang, nav) in [
            // Neither language named: HLF's configured language, bokmål.
            (None, "nb", "Oversikt"),
            (Some("de-DE, fr;q=0.8"), "nb", "Oversikt"),
            (Some("nb-NO,nb;q=0.9,en;q=0.5"), "nb", "Oversikt"),
            (Some("nn"), "nb", "Oversikt"),
            (Some("en-GB,en;q=0.9"), "en", "Overview"),
            (Some("de, en;q=0.5"), "en", "Overview"),
        ] {
            let req = get(&path).bearer(TOKEN);
            let req = match accept {
                Some(value) => req.language(value),
                None => req.no_language(),
            };
            let (status, _, page) = send(&w.router, req).await;
            assert_eq!(status, StatusCode::OK, "{path} {accept:?}: {page}");
            assert!(
                page.contains(&format!("<html lang=\"{lang}\">")),
                "{path} {accept:?}: {page}"
            );
            assert!(page.contains(&format!(">{nav}</a>")), "{path} {accept:?}");
            // The switch is on every page, to both languages, back to this page.
            for code in ["nb", "en"] {
                assert!(
                    page.contains(&format!("/lang/{code}?back=")),
                    "{path}: the switch to {code}"
                );
            }
            // No catalogue key and no unfilled placeholder reaches a reader.
            let text: String = page
                .split('<')
                .filter_map(|p| p.split_once('>').map(|(_, t)| t))
                .collect();
            for section in SECTIONS {
                for (at, _) in text.match_indices(section) {
                    let word_start = !text[..at].ends_with(|c: char| c.is_alphanumeric() || c == '_');
                    let key_goes_on =
                        text[at + section.len()..].starts_with(|c: char| c.is_ascii_lowercase() || c == '_');
                    assert!(!(word_start && key_goes_on), "{path}: a raw key at {}", &text[at..]);
                }
            }
            assert!(!text.contains("{n}") && !text.contains(".other"), "{path}: {text}");
        }
    }
    db.cleanup().await.unwrap();
}

#[tokio::test]
async fn the_switch_remembers_the_choice_in_a_cookie_and_comes_back_to_the_page() {
    let db = TestDatabase::sqlite().await.unwrap();
    let w = World::new(&db).await;
    let (status, headers, _) = send(&w.router, get("/lang/en?back=/runs%3Forg%3Dhlf").bearer(TOKEN)).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers[header::LOCATION], "/runs?org=hlf");
    let cookie = headers[header::SET_COOKIE].to_str().unwrap().to_owned();
    assert!(cookie.starts_with("hlf_dashboard_lang=en;"), "{cookie}");
    for attribute in ["Path=/", "Max-Age=31536000", "SameSite=Lax", "HttpOnly"] {
        assert!(cookie.contains(attribute), "{cookie} lacks {attribute}");
    }
    // The cookie wins over the browser's language.
    let (_, _, page) = send(
        &w.router,
        get("/runs")
            .bearer(TOKEN)
            .language("nb")
            .header("cookie", "hlf_dashboard_lang=en"),
    )
    .await;
    assert!(
        page.contains("<html lang=\"en\">") && page.contains("<h1>Runs</h1>"),
        "{page}"
    );
    let (_, _, page) = send(
        &w.router,
        get("/runs")
            .bearer(TOKEN)
            .header("cookie", "theme=dark; hlf_dashboard_lang=nb"),
    )
    .await;
    assert!(
        page.contains("<html lang=\"nb\">") && page.contains("<h1>Kjøringer</h1>"),
        "{page}"
    );
    // The current language is marked for a screen reader.
    assert!(page.contains("lang=\"nb\" aria-current=\"true\""), "{page}");

    // An unknown language is refused, in the reader's language, and sets nothing.
    let (status, headers, page) = send(&w.router, get("/lang/de?back=/").bearer(TOKEN)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(headers.get(header::SET_COOKIE).is_none());
    assert!(
        page.contains("unknown language") && page.contains("<html lang=\"en\">"),
        "{page}"
    );
    // The switch needs the admin credential like every page.
    let (status, _, body) = send(&w.router, get("/lang/en")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body.starts_with("Sign in"), "{body}");
    // The login prompt's text, too, is in the reader's language.
    let (status, _, body) = send(&w.router, get("/").no_language()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body.starts_with("Logg inn"), "{body}");
    db.cleanup().await.unwrap();
}

#[tokio::test]
async fn the_switch_never_sends_anyone_to_another_site() {
    let db = TestDatabase::sqlite().await.unwrap();
    let w = World::new(&db).await;
    let app = axum::Router::new().nest("/admin/integration", w.dashboard.router());
    for (back, expected) in [
        ("/admin/integration/conflicts", "/admin/integration/conflicts"),
        ("/admin/integration", "/admin/integration"),
        // Outside the dashboard, or another site in disguise: the overview.
        ("/admin/other", "/admin/integration"),
        ("https://evil.example/", "/admin/integration"),
        ("//evil.example/admin/integration/", "/admin/integration"),
        ("/admin/integration/%5C%5Cevil.example", "/admin/integration"),
        ("/admin/integration/x%0D%0ASet-Cookie:%20a=b", "/admin/integration"),
        ("", "/admin/integration"),
        // Not a header value: never a 500.
        ("/admin/integration/%C3%A6", "/admin/integration"),
    ] {
        let uri = format!("/admin/integration/lang/nb?back={back}");
        let (status, headers, body) = send(&app, get(&uri).bearer(TOKEN)).await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{back}: {body}");
        assert_eq!(headers[header::LOCATION], expected, "{back}");
        let cookie = headers[header::SET_COOKIE].to_str().unwrap();
        assert!(cookie.contains("Path=/admin/integration;"), "{cookie}");
    }
    let (_, _, page) = send(&app, get("/admin/integration/alerts").bearer(TOKEN)).await;
    assert!(
        page.contains("href=\"/admin/integration/lang/nb?back=/admin/integration/alerts\""),
        "{page}"
    );
    db.cleanup().await.unwrap();
}

#[tokio::test]
async fn errors_read_in_the_reader_s_language_and_the_json_api_stays_english_and_utc() {
    let db = TestDatabase::sqlite().await.unwrap();
    let w = World::new(&db).await;
    w.with_conflict_and_failure().await;
    let (status, _, page) = send(&w.router, get("/runs?org=nope").bearer(TOKEN).no_language()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        page.contains("<html lang=\"nb\">") && page.contains("<h1>Ikke funnet</h1>"),
        "{page}"
    );
    assert!(page.contains("Tilbake til oversikten"), "{page}");
    // The details are as the log has them, marked as English for a screen reader.
    assert!(
        page.contains("<span lang=\"en\">organisation nope not found</span>"),
        "{page}"
    );
    let (_, _, page) = send(&w.router, get("/runs?org=nope").bearer(TOKEN)).await;
    assert!(
        page.contains("<h1>Not found</h1>") && !page.contains("lang=\"en\"><span"),
        "{page}"
    );

    let (status, _, body) = send(&w.router, get("/api/overview").bearer(TOKEN).language("nb")).await;
    assert_eq!(status, StatusCode::OK);
    let overview: Value = serde_json::from_str(&body).unwrap();
    let org = &overview["organisations"][0];
    let started = org["last_run"]["started_at"].as_str().unwrap();
    assert!(started.ends_with('Z') || started.ends_with("+00:00"), "{started}");
    assert!(chrono::DateTime::parse_from_rfc3339(started).is_ok(), "{started}");
    assert!(
        org["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r.as_str().unwrap().is_ascii()),
        "the API's reasons are the monitor's English: {org}"
    );
    db.cleanup().await.unwrap();
}
