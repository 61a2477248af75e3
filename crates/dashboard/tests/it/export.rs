//! The CSV fallback from the dashboard: the export page and the download, with the credential and a CSRF token.

use axum::http::StatusCode;

use super::{TOKEN, World, day, each, get, post, send};

/// The header row of the default mapping's import file, after the UTF-8 byte-order mark.
const HEADER: &str = "\u{feff}Medlemsnummer,Likepersonstatus,Sertifisering utløper,Vis på nettsiden\r\n";

#[tokio::test]
async fn the_full_export_downloads_as_a_csv_attachment_with_the_display_names() {
    each(|db| async move {
        let w = World::new(&db).await;
        w.mentor("8001", "Nordmann", None, day(2027, 6, 30)).await;
        w.mentor("8002", "Hansen", None, day(2026, 1, 31)).await;

        let (status, _, page) = send(&w.router, get("/export").bearer(TOKEN)).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        for shown in [
            "docs/csv-fallback.md",
            r#"action="/export""#,
            r#"name="kind" value="full""#,
            r#"name="kind" value="delta""#,
            "Download the full export (CSV)",
            "2 mentors",
        ] {
            assert!(page.contains(shown), "the export page shows {shown}: {page}");
        }

        let token = w.csrf_token().await;
        let (status, headers, body) = send(
            &w.router,
            post("/export", &format!("org=hlf&kind=full&part=1&csrf={token}")).bearer(TOKEN),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(headers["content-type"], "text/csv; charset=utf-8");
        assert_eq!(headers["cache-control"], "no-store");
        let disposition = headers["content-disposition"].to_str().unwrap();
        assert!(
            disposition.starts_with("attachment; filename=\"hlf-mentors-full-20260601T003000Z-1.csv\""),
            "{disposition}"
        );
        assert!(body.starts_with(HEADER), "{body:?}");
        assert!(body.contains("\r\n8001,active,2027-06-30,Yes\r\n"), "{body:?}");
        assert!(body.contains("\r\n8002,expired,2026-01-31,No\r\n"), "{body:?}");
        assert!(!body.contains(TOKEN) && !body.contains(dataverse_sim::DEFAULT_CLIENT_SECRET));

        // Never synced, so the delta holds both.
        let (status, _, delta) = send(
            &w.router,
            post("/export", &format!("org=hlf&kind=delta&part=1&csrf={token}")).bearer(TOKEN),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{delta}");
        assert!(
            delta.starts_with(HEADER) && delta.contains("8001") && delta.contains("8002"),
            "{delta:?}"
        );
        drop(w);
        db
    })
    .await;
}

#[tokio::test]
async fn a_download_without_a_token_is_refused_and_a_wrong_request_is_not_found_or_bad() {
    let db = sync_store::testing::TestDatabase::sqlite().await.unwrap();
    let w = World::new(&db).await;
    w.mentor("8001", "Nordmann", None, day(2027, 6, 30)).await;
    let token = w.csrf_token().await;
    let cases = [
        ("no token", "org=hlf&kind=full&part=1".to_owned(), StatusCode::FORBIDDEN),
        (
            "an unknown organisation",
            format!("org=nope&kind=full&part=1&csrf={token}"),
            StatusCode::NOT_FOUND,
        ),
        (
            "a part past the last",
            format!("org=hlf&kind=full&part=2&csrf={token}"),
            StatusCode::NOT_FOUND,
        ),
        (
            "no errors file when every mentor can be imported",
            format!("org=hlf&kind=full&part=errors&csrf={token}"),
            StatusCode::NOT_FOUND,
        ),
        (
            "part zero",
            format!("org=hlf&kind=full&part=0&csrf={token}"),
            StatusCode::BAD_REQUEST,
        ),
    ];
    for (what, form, expected) in cases {
        let (status, headers, body) = send(&w.router, post("/export", &form).bearer(TOKEN)).await;
        assert_eq!(status, expected, "{what}: {body}");
        assert!(!body.contains("8001"), "{what}: no mentor data in a refusal: {body}");
        assert_ne!(
            headers.get("content-type").map(|v| v.to_str().unwrap()),
            Some("text/csv; charset=utf-8"),
            "{what}"
        );
    }
    drop(w);
    db.cleanup().await.unwrap();
}

/// The only exported values a person types are member numbers (names are not exported). A member number that a
/// spreadsheet would run as a formula cannot be matched by the import, so it goes to the errors file, where the
/// cell is neutralised with a leading apostrophe.
#[tokio::test]
async fn a_formula_looking_member_number_is_neutralised_in_the_downloaded_errors_file() {
    let db = sync_store::testing::TestDatabase::sqlite().await.unwrap();
    let w = World::new(&db).await;
    w.mentor("8001", "Nordmann", None, day(2027, 6, 30)).await;
    w.mentor("=1+2", "Formel", None, day(2027, 6, 30)).await;
    let (_, _, page) = send(&w.router, get("/export").bearer(TOKEN)).await;
    assert!(page.contains(r#"name="part" value="errors""#), "{page}");
    let token = w.csrf_token().await;
    let (status, _, import) = send(
        &w.router,
        post("/export", &format!("org=hlf&kind=full&part=1&csrf={token}")).bearer(TOKEN),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{import}");
    assert!(!import.contains("=1+2"), "left out of the import file: {import:?}");
    let (status, headers, errors) = send(
        &w.router,
        post("/export", &format!("org=hlf&kind=full&part=errors&csrf={token}")).bearer(TOKEN),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{errors}");
    assert!(
        headers["content-disposition"]
            .to_str()
            .unwrap()
            .ends_with("-errors.csv\""),
        "{headers:?}"
    );
    assert!(errors.starts_with('\u{feff}'), "{errors:?}");
    assert!(errors.contains(",'=1+2,"), "neutralised: {errors:?}");
    assert!(!errors.contains(",=1+2,"), "{errors:?}");
    drop(w);
    db.cleanup().await.unwrap();
}
