//! The health verdict against the Dataverse emulator after real syncs through the engine: healthy with WhoAmI,
//! then an expired client secret seen by the probe and by the next run.

use std::sync::Arc;
use std::time::Duration;

use dataverse_sim::{DEFAULT_CLIENT_ID, Simulator};
use dynamics_client::{ClientOptions, DynamicsClient};
use health_monitor::{Authentication, Connectivity, HealthMonitor, Probe, Status};
use integration_config::{IntegrationConfig, RetrySettings};
use sync_engine::{NOTE_AADSTS, SyncService, SystemClock};
use sync_store::RunStatus;

use crate::{Fixture, day, each_database};

#[tokio::test]
async fn synced_organisation_is_healthy_and_an_expired_secret_makes_it_unhealthy() {
    each_database(|db| async move {
        let sim = Simulator::builder().start().await.unwrap();
        let text = format!(
            "mapping = \"builtin:hlf-default\"\n[[organisations]]\nid = \"hlf\"\nname = \"HLF\"\nauthority_host = \"{}\"\n",
            sim.authority_url()
        );
        let config = IntegrationConfig::from_toml(
            &text,
            "test.toml",
            std::path::Path::new("."),
            &sim.worker_environment("DYNAMICS"),
        )
        .unwrap();
        let organisation = config.organisations[0].clone();
        let client = DynamicsClient::for_organisation(
            &organisation,
            ClientOptions {
                extra_root_certificates: vec![sim.ca_certificate_pem().unwrap().as_bytes().to_vec()],
                retry: RetrySettings {
                    max_attempts: 1,
                    initial_backoff: Duration::from_millis(10),
                    ..config.retry.clone()
                },
                ..ClientOptions::default()
            },
        )
        .unwrap();
        let f = Fixture::new(&db, config.clone()).await;
        f.mentor("1001", day(2030, 1, 1)).await;
        sim.state()
            .insert(
                "contacts",
                serde_json::json!({"hlf_membernumber": "1001", "firstname": "Kari", "lastname": "Nordmann"}),
            )
            .unwrap();
        let service = SyncService::new(
            &organisation,
            &config,
            client.clone(),
            Arc::new(f.store.clone()),
            f.store.clone(),
            Arc::new(SystemClock),
        )
        .unwrap();
        assert_eq!(service.run().await.unwrap().status, RunStatus::Succeeded);
        let monitor = HealthMonitor::new(&config, f.store.clone(), Arc::new(f.store.clone()), Arc::new(SystemClock));

        let before = sim.state().rows("contacts");
        let health = monitor.check(&organisation, Probe::Dynamics(&client)).await.unwrap();
        assert_eq!(health.status, Status::Healthy, "{:?}", health.reasons);
        assert!(matches!(health.connectivity, Connectivity::Ok { .. }), "{:?}", health.connectivity);
        assert_eq!(health.authentication, Authentication::Ok);
        assert!(health.last_success.pull.is_some() && health.last_success.push.is_some());
        assert_eq!(health.cache.entries, 1);
        assert_eq!(sim.state().rows("contacts"), before, "a health check never writes to Dynamics");

        // HLF IT lets the secret expire; tokens already issued stop working too.
        sim.faults().expire_secret(DEFAULT_CLIENT_ID).unwrap();
        sim.faults().revoke_tokens();
        let health = monitor.check(&organisation, Probe::Dynamics(&client)).await.unwrap();
        assert_eq!(health.status, Status::Unhealthy);
        assert!(
            matches!(&health.authentication, Authentication::Failed { aadsts: Some(7_000_222), message } if message.contains("CLIENT_SECRET")),
            "{:?}",
            health.authentication
        );
        assert!(health.reasons[0].starts_with("authentication failed"), "{:?}", health.reasons);

        // The engine notes the code of the run it fails, so a probe-less check (and the alert) sees it too.
        let report = service.run().await.unwrap();
        assert_eq!(report.status, RunStatus::Failed);
        assert_eq!(report.metrics.notes.get(NOTE_AADSTS).map(String::as_str), Some("7000222"));
        let e = monitor.evaluate(&organisation, Probe::Skip).await.unwrap();
        assert_eq!(e.raised, vec!["auth-expired"]);
        let json = serde_json::to_string(&e.health).unwrap();
        assert!(!json.contains(dataverse_sim::DEFAULT_CLIENT_SECRET), "{json}");
        sim.shutdown().await;
        db
    })
    .await;
}
