//! Error answers over HTTP, and the guarantee that no secret or bearer token reaches an error or its Debug form.

use dynamics_client::{Error, Query, Row};
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

use super::{Fake, TOKEN};

#[tokio::test]
async fn documented_error_bodies_become_typed_errors() {
    type Expect = fn(&Error) -> bool;
    let cases: [(u16, &str, Expect); 5] = [
        (404, "error-not-found-by-key.json", |e| {
            matches!(e, Error::NotFound { .. })
        }),
        (403, "error-privilege-denied.json", |e| {
            matches!(e, Error::PrivilegeDenied { .. })
        }),
        (
            400,
            "error-unknown-column.json",
            |e| matches!(e, Error::UnknownColumn { column } if column == "hlf_showonpublicsite"),
        ),
        (412, "error-concurrency.json", |e| matches!(e, Error::Concurrency)),
        (400, "error-duplicate-key.json", |e| {
            matches!(e, Error::Duplicate { .. })
        }),
    ];
    for (status, file, expected) in cases {
        let fake = Fake::new().await;
        Mock::given(method("GET"))
            .and(path("/api/data/v9.2/contacts"))
            .respond_with(ResponseTemplate::new(status).set_body_string(fake.fixture(file)))
            .mount(&fake.server)
            .await;
        let error = fake.client.all_rows::<Row>(&Query::new("contacts")).await.unwrap_err();
        assert!(expected(&error), "{file}: {error:?}");
        let printed = format!("{error} {error:?}");
        assert!(!printed.contains(TOKEN), "the bearer token leaked: {printed}");
    }
}

#[tokio::test]
async fn no_error_or_debug_output_carries_the_bearer_token() {
    let fake = Fake::new().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(500).set_body_string("<html>Internal error</html>"))
        .mount(&fake.server)
        .await;
    let error = fake.client.who_am_i().await.unwrap_err();
    let printed = format!("{error} {error:?} {:?}", fake.client);
    assert!(!printed.contains(TOKEN), "{printed}");
    assert!(printed.contains("Internal error"), "{printed}");
}
