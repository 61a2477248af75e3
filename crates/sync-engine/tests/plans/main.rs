//! Every statement a sync issues to the store is served by an index, on SQLite and on PostgreSQL: the statements are
//! captured as sqlx logs them while real runs go through the events of a year (new mentors, mentors Dynamics does not
//! know, failed records, edits on both sides, held and resolved conflicts, a revoked certification, a deleted
//! contact, certifications expiring by time), and each is explained on the database it ran on. A scan of a whole
//! table shows up here, not as a run that slows down with every organisation added.
//!
//! A test binary of its own: the capture is process-wide, so no other test's statements mix in.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stderr)]

#[path = "../support/mod.rs"]
#[allow(dead_code)]
mod support;

use std::collections::BTreeSet;
use std::sync::{LazyLock, Mutex};

use serde_json::json;
use sync_store::testing::TestDatabase;
use sync_store::{AppStore, Side};
use tracing::field::{Field, Visit};
use tracing_subscriber::Layer;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;

use support::{DEFAULT_CONFIG, World, at, day, revoke, shared_phone_mapping};

/// Every distinct statement sqlx ran since the last [`take`].
static STATEMENTS: LazyLock<Mutex<BTreeSet<String>>> = LazyLock::new(|| Mutex::new(BTreeSet::new()));

/// Collects the SQL of sqlx's `sqlx::query` events: the full text in `db.statement`, or in `summary` when the
/// statement is short enough to be its own summary.
struct Capture;

#[derive(Default)]
struct Statement {
    summary: String,
    full: String,
}

impl Visit for Statement {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "summary" => value.clone_into(&mut self.summary),
            "db.statement" => value.clone_into(&mut self.full),
            _ => {}
        }
    }

    fn record_debug(&mut self, _field: &Field, _value: &dyn std::fmt::Debug) {}
}

impl<S: tracing::Subscriber> Layer<S> for Capture {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: tracing_subscriber::layer::Context<'_, S>) {
        let mut statement = Statement::default();
        event.record(&mut statement);
        let sql = if statement.full.trim().is_empty() {
            statement.summary
        } else {
            statement.full
        };
        let sql = sql.split_whitespace().collect::<Vec<_>>().join(" ");
        if !sql.is_empty() {
            STATEMENTS.lock().unwrap().insert(sql);
        }
    }
}

fn capture() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        let layer = Capture.with_filter(Targets::new().with_target("sqlx::query", tracing::Level::TRACE));
        tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer)).unwrap();
    });
}

fn take() -> BTreeSet<String> {
    std::mem::take(&mut *STATEMENTS.lock().unwrap())
}

/// The store's own statements that read or change its tables (not the migrations, the schema or the session).
fn explainable(sql: &str) -> bool {
    let verb = sql.split_whitespace().next().unwrap_or("").to_ascii_uppercase();
    ["SELECT", "INSERT", "UPDATE", "DELETE", "WITH"].contains(&verb.as_str()) && !sql.contains("_sqlx_migrations")
}

/// The steps of a plan that read a whole table, named by their table, and on SQLite the steps that read every row of
/// an organisation for a statement that names its rows by a list of keys (`organisation_id = ? AND id IN (...)`
/// served by an index on `organisation_id` alone: cheap in a test, a cost that grows with the square of the rows in a
/// first sync). PostgreSQL plans such a statement for its values and its statistics, so only scans count there.
fn full_scans(backend: &str, sql: &str, plan: &[String]) -> Vec<String> {
    let names_keys = sql.contains(" IN (?") || sql.contains(" IN ($");
    plan.iter()
        .filter(|step| match backend {
            // `SCAN t USING (COVERING) INDEX i` walks an index; a bare `SCAN t` reads the table. A scan of a subquery's
            // or a CTE's result is not a table.
            "sqlite" => {
                (step.trim_start().starts_with("SCAN ")
                    && !step.contains("USING")
                    && !step.contains("CONSTANT ROW")
                    && !step.contains("VALUES CLAUSE")
                    && !step.contains("SUBQUERY"))
                    || (names_keys && step.trim_start().starts_with("SEARCH ") && step.ends_with("(organisation_id=?)"))
            }
            _ => step.contains("Seq Scan on"),
        })
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_statement_of_a_year_of_runs_is_served_by_an_index() {
    capture();
    for db in TestDatabase::all().await.unwrap() {
        eprintln!("-- on {}", db.name);
        take();
        let config = format!("{DEFAULT_CONFIG}[conflicts.fields]\nphone = \"manual\"\n");
        let w = World::with_config(&db, &config, Some(&shared_phone_mapping())).await;
        // Go-live: 40 mentors with contacts, 3 Dynamics does not know, a second organisation's mentor.
        let mut contacts = Vec::new();
        for n in 0..40 {
            contacts.push(w.contact(&format!("71{n:03}"), json!({ "mobilephone": format!("4{n:03}") })));
            w.mentor("hlf", &format!("71{n:03}"), day(2027, 6, 30)).await;
        }
        for n in 0..3 {
            w.mentor("hlf", &format!("79{n:03}"), day(2027, 6, 30)).await;
        }
        w.mentor("other", "71000", day(2027, 6, 30)).await;
        w.service.run().await.unwrap();
        // The phone changed on both sides: conflicts for an admin.
        for (n, contact) in contacts.iter().enumerate().take(4) {
            let id = support::mentor_id("hlf", &format!("71{n:03}"));
            let mut mentor = w.store.mentors("hlf", &[id]).await.unwrap().remove(0).mentor;
            mentor.phone = Some(format!("9{n:03}"));
            mentor.updated_at = at("2026-06-01T05:00:00Z");
            w.store.upsert_mentor(&mentor).await.unwrap();
            w.sim
                .state()
                .update("contacts", *contact, json!({ "mobilephone": format!("8{n:03}") }))
                .unwrap();
        }
        // A revoked certification, a contact HLF staff delete, a certification that expires by time.
        revoke(&w.store, "71010", at("2026-06-01T05:00:00Z")).await;
        w.sim.state().delete("contacts", contacts[20]).unwrap();
        w.mentor("hlf", "71030", day(2026, 6, 1)).await;
        w.clock.set(at("2026-06-02T01:00:00Z"));
        w.service.run().await.unwrap();
        let held = w.store.pending_conflicts("hlf").await.unwrap();
        assert!(!held.is_empty(), "the workload holds conflicts");
        for (i, conflict) in held.iter().enumerate() {
            let side = if i % 2 == 0 { Side::App } else { Side::Dynamics };
            w.service
                .resolve_conflict(&conflict.id, side, "admin", i == 0)
                .await
                .unwrap();
        }
        // The member Dynamics did not know is registered; the next runs retry and settle everything.
        w.contact("79000", json!({}));
        w.clock.set(at("2026-06-03T01:00:00Z"));
        w.service.run().await.unwrap();
        w.clock.set(at("2026-06-04T01:00:00Z"));
        w.service.run().await.unwrap();
        w.service
            .sync_mentor_now(&support::mentor_id("hlf", "71005"))
            .await
            .unwrap();

        let statements: Vec<String> = take().into_iter().filter(|s| explainable(s)).collect();
        assert!(
            statements.len() > 30,
            "the capture saw only {} statements: {statements:#?}",
            statements.len()
        );
        let mut scans = Vec::new();
        for sql in &statements {
            let plan = db
                .query_plan(sql)
                .await
                .unwrap_or_else(|e| panic!("{}: cannot explain {sql}: {e}", db.name));
            let found = full_scans(db.name, sql, &plan);
            if !found.is_empty() {
                scans.push(format!("{sql}\n    {}", found.join("\n    ")));
            }
        }
        assert!(
            scans.is_empty(),
            "{}: {} of {} statements read a whole table or organisation:\n{}",
            db.name,
            scans.len(),
            statements.len(),
            scans.join("\n")
        );
        eprintln!("{}: {} statements, each served by an index", db.name, statements.len());
        drop(w);
        db.cleanup().await.unwrap();
    }
}
