//! Integration tests of the Dynamics client against wiremock fakes serving Microsoft's documented payloads from
//! `fixtures/dataverse/`.

// Test helpers may unwrap and panic: that is how they report a failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod auth;
mod batch;
mod changes;
mod errors;
mod metadata;
mod query;
mod retry;
mod safe_writes;
mod write;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use dynamics_client::{ClientOptions, DynamicsClient, StaticTokenSource, VirtualClock};
use integration_config::{InstanceUrl, IntegrationConfig, OrganisationConfig, RetrySettings};
use wiremock::MockServer;

/// The token every fake Dynamics expects, unless a test says otherwise.
pub(crate) const TOKEN: &str = "test-bearer-token-value";
pub(crate) const SECRET: &str = "test~client.secret_value-123";

/// A wiremock Dynamics and a client pointed at it, with virtual time.
pub(crate) struct Fake {
    pub(crate) server: MockServer,
    pub(crate) client: DynamicsClient,
    pub(crate) clock: Arc<VirtualClock>,
}

impl Fake {
    pub(crate) async fn new() -> Self {
        Self::with_options(|_| {}).await
    }

    pub(crate) async fn with_options(adjust: impl FnOnce(&mut ClientOptions)) -> Self {
        let server = MockServer::start().await;
        let clock = Arc::new(VirtualClock::new());
        let mut options = ClientOptions {
            clock: clock.clone(),
            retry: RetrySettings {
                request_timeout: Duration::from_secs(5),
                ..RetrySettings::default()
            },
            ..ClientOptions::default()
        };
        adjust(&mut options);
        let instance = InstanceUrl::parse(&server.uri()).unwrap();
        let client = DynamicsClient::new(&instance, Arc::new(StaticTokenSource::new(TOKEN)), options).unwrap();
        Fake { server, client, clock }
    }

    /// The API base as Dataverse would write it in links.
    pub(crate) fn base(&self) -> String {
        format!("{}/api/data/v9.2/", self.server.uri())
    }

    /// A fixture with `{base}` replaced by this server's API base.
    pub(crate) fn fixture(&self, name: &str) -> String {
        fixture(name).replace("{base}", &self.base())
    }
}

pub(crate) fn fixture(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/dataverse")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
}

pub(crate) fn mentor_mapping() -> field_mapping::RecordMapping {
    field_mapping::FieldMapping::from_toml(field_mapping::HLF_DEFAULT_MAPPING)
        .unwrap()
        .record("mentor")
        .unwrap()
        .clone()
}

/// An organisation configured through the real loader, with Dynamics at `instance` and Azure AD at its public
/// authority (tests reroute that with a transport).
pub(crate) fn organisation(instance: &str) -> OrganisationConfig {
    let env: BTreeMap<String, String> = [
        ("DYNAMICS_TENANT_ID", "72f988bf-86f1-41af-91ab-2d7cd011db47"),
        ("DYNAMICS_CLIENT_ID", "0b6f3c1e-9a63-4c62-8b1e-2f6f1c9b7d11"),
        ("DYNAMICS_CLIENT_SECRET", SECRET),
        ("DYNAMICS_INSTANCE_URL", instance),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let text = "mapping = \"builtin:hlf-default\"\n[[organisations]]\nid = \"hlf\"\nname = \"HLF\"\n";
    let config = IntegrationConfig::from_toml(text, "test.toml", Path::new("."), &env).unwrap();
    config.organisations.into_iter().next().unwrap()
}
