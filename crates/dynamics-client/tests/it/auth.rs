//! The production credential (azure_identity's ClientSecretCredential) against a fake Azure AD, and token refresh
//! after a 401 from Dynamics.

use std::sync::Arc;

use async_trait::async_trait;
use azure_core::http::{AsyncRawResponse, HttpClient, Request};
use dynamics_client::{AuthError, AzureAdTokenSource, ClientOptions, DynamicsClient, Error, TokenSource};
use integration_config::InstanceUrl;
use wiremock::matchers::{body_string_contains, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::{SECRET, fixture, organisation};

/// Sends azure_core's requests to the fake Azure AD instead of login.microsoftonline.com: azure_identity refuses
/// plain-http authorities, so the URL is rewritten below the credential, which stays the production code.
#[derive(Debug)]
struct ToFakeAzureAd {
    target: url::Url,
    http: reqwest::Client,
}

#[async_trait]
impl HttpClient for ToFakeAzureAd {
    async fn execute_request(&self, request: &Request) -> azure_core::Result<AsyncRawResponse> {
        let mut rerouted = request.clone();
        let url = rerouted.url_mut();
        url.set_scheme(self.target.scheme()).unwrap();
        url.set_host(self.target.host_str()).unwrap();
        url.set_port(self.target.port()).unwrap();
        self.http.execute_request(&rerouted).await
    }
}

const TOKEN_PATH: &str = "/72f988bf-86f1-41af-91ab-2d7cd011db47/oauth2/v2.0/token";

async fn azure_ad_source(azure_ad: &MockServer, dynamics: &MockServer) -> Arc<AzureAdTokenSource> {
    let transport = Arc::new(ToFakeAzureAd {
        target: url::Url::parse(&azure_ad.uri()).unwrap(),
        http: reqwest::Client::new(),
    });
    Arc::new(AzureAdTokenSource::with_transport(
        &organisation(&dynamics.uri()),
        transport,
    ))
}

#[tokio::test]
async fn client_credentials_are_posted_and_the_token_is_cached() {
    let azure_ad = MockServer::start().await;
    let dynamics = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(TOKEN_PATH))
        .and(body_string_contains("grant_type=client_credentials"))
        .and(body_string_contains("client_id=0b6f3c1e-9a63-4c62-8b1e-2f6f1c9b7d11"))
        .and(body_string_contains(format!(
            "scope={}",
            urlencode(&format!("{}/.default", dynamics.uri()))
        )))
        .respond_with(ResponseTemplate::new(200).set_body_string(fixture("aad-token.json")))
        .expect(1)
        .mount(&azure_ad)
        .await;
    let source = azure_ad_source(&azure_ad, &dynamics).await;
    let first = source.token().await.unwrap();
    let second = source.token().await.unwrap();
    assert!(first.expires_on().is_some());
    assert_eq!(first.expires_on(), second.expires_on());
    let printed = format!("{first:?}");
    assert!(
        !printed.contains("fixture-access-token"),
        "the token leaked into Debug: {printed}"
    );
}

fn urlencode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

#[track_caller]
fn assert_no_secret(text: &str) {
    assert!(!text.contains(SECRET), "the client secret leaked: {text}");
}

#[tokio::test]
async fn azure_ad_refusals_are_typed_by_aadsts_code_with_what_to_do() {
    let cases = [
        (
            "aad-secret-expired.json",
            401,
            Some(7_000_222),
            "the client secret has expired (AADSTS7000222); HLF IT must create a new secret for the app registration, then update DYNAMICS_CLIENT_SECRET",
        ),
        (
            "aad-invalid-secret.json",
            401,
            Some(7_000_215),
            "Azure AD rejected the client secret (AADSTS7000215); check that DYNAMICS_CLIENT_SECRET holds the secret's value, not its id",
        ),
        (
            "aad-unknown-application.json",
            400,
            Some(700_016),
            "Azure AD does not know this application in the tenant (AADSTS700016); check DYNAMICS_CLIENT_ID and DYNAMICS_TENANT_ID, and ask HLF IT whether the app registration exists",
        ),
        (
            "aad-unknown-tenant.json",
            400,
            Some(90_002),
            "Azure AD does not know this tenant (AADSTS90002); check DYNAMICS_TENANT_ID",
        ),
    ];
    let prerequisites = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/hlf-it-prerequisites.md"),
    )
    .unwrap();
    for (file, status, code, message) in cases {
        let azure_ad = MockServer::start().await;
        let dynamics = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path(TOKEN_PATH))
            .respond_with(ResponseTemplate::new(status).set_body_string(fixture(file)))
            .mount(&azure_ad)
            .await;
        let source = azure_ad_source(&azure_ad, &dynamics).await;
        let error = source.token().await.unwrap_err();
        assert_eq!(error.aadsts_code(), code, "{file}: {error:?}");
        assert_eq!(error.to_string(), message, "{file}");
        assert_no_secret(&format!("{error} {error:?}"));
        assert!(
            prerequisites.contains(message),
            "docs/hlf-it-prerequisites.md must show the operator the exact message for {file}:\n{message}"
        );
    }
}

#[tokio::test]
async fn an_unreachable_azure_ad_is_reported_as_unavailable() {
    let dynamics = MockServer::start().await;
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let transport = Arc::new(ToFakeAzureAd {
        target: url::Url::parse(&format!("http://{closed}")).unwrap(),
        http: reqwest::Client::new(),
    });
    let source = AzureAdTokenSource::with_transport(&organisation(&dynamics.uri()), transport);
    let error = source.token().await.unwrap_err();
    assert!(matches!(error, AuthError::Unavailable { .. }), "{error:?}");
    assert_no_secret(&format!("{error} {error:?}"));
}

#[tokio::test]
async fn a_401_from_dynamics_fetches_a_new_token_once_then_succeeds() {
    let azure_ad = MockServer::start().await;
    let dynamics = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(TOKEN_PATH))
        .respond_with(ResponseTemplate::new(200).set_body_string(fixture("aad-token.json")))
        .expect(2)
        .mount(&azure_ad)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/data/v9.2/WhoAmI"))
        .respond_with(ResponseTemplate::new(401))
        .up_to_n_times(1)
        .expect(1)
        .mount(&dynamics)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/data/v9.2/WhoAmI"))
        .and(header(
            "authorization",
            "Bearer eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.fixture-access-token.signature",
        ))
        .respond_with(ResponseTemplate::new(200).set_body_string(fixture("whoami.json")))
        .expect(1)
        .mount(&dynamics)
        .await;
    let source = azure_ad_source(&azure_ad, &dynamics).await;
    let instance = InstanceUrl::parse(&dynamics.uri()).unwrap();
    let client = DynamicsClient::new(&instance, source, ClientOptions::default()).unwrap();
    let me = client.who_am_i().await.unwrap();
    assert_eq!(me.user_id.to_string(), "6d6f6f6e-0000-0000-0000-000000000001");
}

#[tokio::test]
async fn a_second_401_means_the_application_user_is_missing() {
    let fake = super::Fake::new().await;
    Mock::given(method("GET"))
        .and(path("/api/data/v9.2/WhoAmI"))
        .respond_with(ResponseTemplate::new(401).set_body_string(
            r#"{"error":{"code":"0x80072560","message":"The user is not a member of the organization."}}"#,
        ))
        .expect(2)
        .mount(&fake.server)
        .await;
    let error = fake.client.who_am_i().await.unwrap_err();
    match &error {
        Error::Unauthorized { message } => assert_eq!(message, "The user is not a member of the organization."),
        other => panic!("expected Unauthorized, got {other:?}"),
    }
    assert!(
        error
            .to_string()
            .contains("Application users in the Power Platform admin center")
    );
}

#[tokio::test]
async fn a_client_secret_rotated_in_its_file_is_used_for_the_next_token_without_a_restart() {
    let azure_ad = MockServer::start().await;
    let dynamics = MockServer::start().await;
    for secret in ["first-secret", "rotated-secret"] {
        Mock::given(method("POST"))
            .and(path(TOKEN_PATH))
            .and(body_string_contains(format!("client_secret={secret}")))
            .respond_with(ResponseTemplate::new(200).set_body_string(fixture("aad-token.json")))
            .expect(1)
            .named(secret)
            .mount(&azure_ad)
            .await;
    }
    let dir = std::env::temp_dir().join(format!("client-secret-rotation-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("client-secret");
    std::fs::write(&file, "first-secret\n").unwrap();
    let mut organisation = organisation(&dynamics.uri());
    organisation.credentials.client_secret = integration_config::SecretSource::file(&file).unwrap();
    let transport = Arc::new(ToFakeAzureAd {
        target: url::Url::parse(&azure_ad.uri()).unwrap(),
        http: reqwest::Client::new(),
    });
    let source = AzureAdTokenSource::with_transport(&organisation, transport);
    source.token().await.unwrap();
    // Cached: the same secret asks Azure AD nothing more.
    source.token().await.unwrap();
    std::fs::write(&file, "rotated-secret\n").unwrap();
    source.token().await.unwrap();
    source.token().await.unwrap();

    std::fs::remove_file(&file).unwrap();
    let error = source.token().await.unwrap_err();
    assert!(matches!(error, AuthError::SecretFile(_)), "{error:?}");
    let text = error.to_string();
    assert!(
        text.contains("client-secret") && text.contains("mounted and readable"),
        "{text}"
    );
    assert!(!text.contains("rotated-secret"), "{text}");
    std::fs::remove_dir_all(&dir).unwrap();
}
