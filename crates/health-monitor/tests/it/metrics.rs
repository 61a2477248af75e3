//! The Prometheus exposition, parsed back with an independent parser, and served over HTTP.

use health_monitor::{METRICS_CONTENT_TYPE, metrics_router, render_metrics};
use prometheus_parse::{Scrape, Value};
use sync_engine::{Clock, NOTE_PULL_COMPLETED};
use sync_store::{DirectionMetrics, Divergence, RunKind, RunMetrics, RunStatus};

use crate::{Fixture, SECRET, config, day, each_database};

fn parse(text: &str) -> Scrape {
    Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

/// The value of the sample `name` with these labels (besides `organisation="hlf"`).
#[track_caller]
fn value(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    let sample = scrape
        .samples
        .iter()
        .find(|s| {
            s.metric == name
                && s.labels.get("organisation") == Some("hlf")
                && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v))
        })
        .unwrap_or_else(|| panic!("no sample {name} {labels:?}"));
    match sample.value {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
        _ => panic!("{name} is not a plain value"),
    }
}

/// A partial run with figures, a failed run a minute later, and a reconcile. Returns the partial run's start.
async fn seed(f: &Fixture) -> chrono::DateTime<chrono::Utc> {
    f.mentor("1001", day(2030, 1, 1)).await;
    f.confirmed("1001", "active", true).await;
    let now = f.clock.now();
    let id = f.store.start_run("hlf", RunKind::Sync, now).await.unwrap();
    let mut metrics = RunMetrics {
        pull: DirectionMetrics {
            read: 120,
            written: 7,
            skipped: 113,
            failed: 0,
            conflicts: 1,
        },
        push: DirectionMetrics {
            read: 30,
            written: 28,
            skipped: 0,
            failed: 2,
            conflicts: 0,
        },
        requests: 9,
        throttled: 1,
        duration_ms: 2_500,
        ..RunMetrics::default()
    };
    metrics.notes.insert(NOTE_PULL_COMPLETED.into(), "true".into());
    f.store
        .finish_run(&id, RunStatus::Partial, &metrics, None, now)
        .await
        .unwrap();
    f.clock.advance(chrono::Duration::minutes(1));
    f.failed(None).await;
    let id = f.store.start_run("hlf", RunKind::Reconcile, now).await.unwrap();
    let reconcile = RunMetrics {
        divergence: Some(Divergence {
            records_compared: 100,
            records_differing: 3,
            fields_differing: 4,
        }),
        ..RunMetrics::default()
    };
    f.store
        .finish_run(&id, RunStatus::Succeeded, &reconcile, None, now)
        .await
        .unwrap();
    now
}

#[tokio::test]
async fn exposition_parses_back_with_the_run_log_figures_and_conventional_names() {
    each_database(|db| async move {
        let f = Fixture::new(&db, config("", "")).await;
        let partial_start = seed(&f).await;
        let text = render_metrics(&f.monitor, &f.config.organisations).await.unwrap();
        let scrape = parse(&text);

        // The newest finished sync run is the failed one (all zero); the one before had the figures. The last
        // success and the failure ratio come from the whole log.
        assert_eq!(
            value(
                &scrape,
                "hlf_sync_last_run_records",
                &[("direction", "push"), ("outcome", "failed")]
            ),
            0.0
        );
        assert_eq!(value(&scrape, "hlf_sync_consecutive_failed_runs", &[]), 1.0);
        assert_eq!(value(&scrape, "hlf_sync_run_failure_ratio", &[]), 0.5);
        assert_eq!(value(&scrape, "hlf_sync_runs_total", &[("status", "partial")]), 1.0);
        assert_eq!(value(&scrape, "hlf_sync_runs_total", &[("status", "failed")]), 1.0);
        assert_eq!(value(&scrape, "hlf_sync_divergence_records", &[]), 3.0);
        assert_eq!(value(&scrape, "hlf_sync_divergence_fields", &[]), 4.0);
        let now = partial_start.timestamp() as f64;
        assert_eq!(
            value(
                &scrape,
                "hlf_sync_last_success_timestamp_seconds",
                &[("direction", "pull")]
            ),
            now
        );
        assert_eq!(
            value(
                &scrape,
                "hlf_sync_last_success_timestamp_seconds",
                &[("direction", "push")]
            ),
            now
        );
        assert_eq!(value(&scrape, "hlf_sync_certification_cache_entries", &[]), 1.0);
        assert_eq!(
            value(&scrape, "hlf_sync_health_status", &[]),
            1.0,
            "one failed run: degraded"
        );
        assert_eq!(value(&scrape, "hlf_sync_failed_records", &[("state", "dead")]), 0.0);

        for sample in &scrape.samples {
            assert!(sample.metric.starts_with("hlf_sync_"), "{}", sample.metric);
            assert!(
                sample.metric.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "snake case: {}",
                sample.metric
            );
            if matches!(sample.value, Value::Counter(_)) {
                assert!(
                    sample.metric.ends_with("_total"),
                    "counters end in _total: {}",
                    sample.metric
                );
            }
        }
        for name in scrape.docs.keys() {
            assert!(text.contains(&format!("# TYPE {name} ")), "{name} has a TYPE line");
        }
        assert!(!text.contains(SECRET));
        db
    })
    .await;
}

#[tokio::test]
async fn metrics_route_serves_the_text_format() {
    each_database(|db| async move {
        let f = Fixture::new(&db, config("", "")).await;
        seed(&f).await;
        let router = metrics_router(f.monitor.clone(), f.config.organisations.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move { axum::serve(listener, router).await });
        let answer = reqwest::get(format!("http://{addr}/metrics")).await.unwrap();
        assert_eq!(answer.status(), 200);
        assert_eq!(answer.headers()["content-type"], METRICS_CONTENT_TYPE);
        let scrape = parse(&answer.text().await.unwrap());
        assert_eq!(value(&scrape, "hlf_sync_divergence_records", &[]), 3.0);
        server.abort();
        db
    })
    .await;
}

#[tokio::test]
async fn the_accounting_export_has_series_only_once_it_ran() {
    each_database(|db| async move {
        let f = Fixture::new(&db, config("", "")).await;
        f.succeeded().await;
        let text = render_metrics(&f.monitor, &f.config.organisations).await.unwrap();
        assert!(!text.contains("hlf_sync_postings"), "{text}");

        let now = f.clock.now();
        let id = f.store.start_run("hlf", RunKind::Postings, now).await.unwrap();
        let metrics = RunMetrics {
            postings: Some(sync_store::PostingMetrics {
                exported: 12,
                failed: 1,
                held: 2,
                checked: 40,
                missing: 3,
                differing: 1,
                sample: vec!["P-1".into()],
            }),
            ..RunMetrics::default()
        };
        f.store
            .finish_run(&id, RunStatus::Partial, &metrics, None, now)
            .await
            .unwrap();
        let scrape = parse(&render_metrics(&f.monitor, &f.config.organisations).await.unwrap());
        assert_eq!(
            value(&scrape, "hlf_sync_postings_last_run", &[("outcome", "exported")]),
            12.0
        );
        assert_eq!(
            value(&scrape, "hlf_sync_postings_last_run", &[("outcome", "failed")]),
            1.0
        );
        assert_eq!(
            value(&scrape, "hlf_sync_postings_last_run", &[("outcome", "held")]),
            2.0
        );
        assert_eq!(
            value(&scrape, "hlf_sync_postings_unreconciled", &[("kind", "missing")]),
            3.0
        );
        assert_eq!(
            value(&scrape, "hlf_sync_postings_unreconciled", &[("kind", "differing")]),
            1.0
        );
        assert_eq!(value(&scrape, "hlf_sync_postings_last_run_failed", &[]), 0.0);
        assert_eq!(
            value(&scrape, "hlf_sync_postings_last_run_timestamp_seconds", &[]),
            now.timestamp() as f64
        );
        db
    })
    .await;
}
