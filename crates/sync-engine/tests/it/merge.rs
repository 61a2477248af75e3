//! Property: random edit sequences on both sides, a random conflict strategy and runs killed at random points
//! converge, after two clean runs, to what the specification defines:
//! - app-owned fields (certification): Dynamics shows what the app's certifications say today, whatever happened;
//! - Dynamics-owned fields (first name): the app holds Dynamics' last value;
//! - the shared field (phone): with `app-wins`, `dynamics-wins` or `newest-wins` both sides hold the same value, one
//!   that a side's user wrote last (never an older or invented one), and the only side that edited it wins; with
//!   `manual` both sides agree, or they differ and a conflict waits for an admin with each side's last value kept;
//! - no contact is created or duplicated, and nothing is left in the failed-record queue.

use std::collections::BTreeMap;
use std::time::Duration;

use field_mapping::HLF_DEFAULT_MAPPING;
use proptest::prelude::*;
use serde_json::json;
use sync_store::testing::TestDatabase;
use sync_store::{AppStore, ConflictState, FailureState};

use super::{DEFAULT_CONFIG, World, day, mentor_id};

const MENTORS: usize = 3;

#[derive(Debug, Clone)]
enum Op {
    /// The app changes a mentor's phone.
    AppPhone(usize, u8),
    /// Dynamics staff change a contact's phone.
    DynamicsPhone(usize, u8),
    /// Dynamics staff change a contact's first name (Dynamics-owned).
    DynamicsName(usize, u8),
    /// The app revokes, renews or lets expire a certification (app-owned).
    AppCertification(usize, u8),
    /// A sync run to its end.
    Run,
    /// A sync run killed after this many microseconds (the future is dropped: nothing after that point runs).
    Crash(u64),
    /// Time passes.
    Wait(u8),
}

fn op() -> impl Strategy<Value = Op> {
    let m = 0..MENTORS;
    prop_oneof![
        (m.clone(), 0u8..4).prop_map(|(m, v)| Op::AppPhone(m, v)),
        (m.clone(), 0u8..4).prop_map(|(m, v)| Op::DynamicsPhone(m, v)),
        (m.clone(), 0u8..4).prop_map(|(m, v)| Op::DynamicsName(m, v)),
        (m, 0u8..3).prop_map(|(m, v)| Op::AppCertification(m, v)),
        Just(Op::Run),
        (0u64..60_000).prop_map(Op::Crash),
        (1u8..90).prop_map(Op::Wait),
    ]
}

fn strategy() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        Just("app-wins"),
        Just("dynamics-wins"),
        Just("newest-wins"),
        Just("manual")
    ]
}

fn shared_phone_mapping() -> String {
    HLF_DEFAULT_MAPPING.replace(
        "field = \"phone\"\ncolumn = \"mobilephone\"\nowner = \"dynamics\"",
        "field = \"phone\"\ncolumn = \"mobilephone\"\nowner = \"shared\"",
    )
}

fn member(m: usize) -> String {
    (8100 + m).to_string()
}

async fn check(strategy: &'static str, ops: Vec<Op>) {
    let db = TestDatabase::sqlite().await.unwrap();
    let config = format!("{DEFAULT_CONFIG}[conflicts]\ndefault = \"{strategy}\"\n");
    let w = World::with_config(&db, &config, Some(&shared_phone_mapping())).await;
    let mut contacts = Vec::new();
    for m in 0..MENTORS {
        contacts.push(w.contact(&member(m), json!({ "mobilephone": "start", "firstname": "Start" })));
        w.mentor("hlf", &member(m), day(2027, 6, 30)).await;
        let mut snapshot = w
            .store
            .mentors("hlf", &[mentor_id("hlf", &member(m))])
            .await
            .unwrap()
            .remove(0);
        snapshot.mentor.phone = Some("start".into());
        w.store.upsert_mentor(&snapshot.mentor).await.unwrap();
    }
    w.service.run().await.unwrap();
    let contacts_before = w.sim.state().rows("contacts").len();

    // The last value each side's users wrote, and which sides edited the phone at all.
    let mut app_phone: BTreeMap<usize, String> = BTreeMap::new();
    let mut dynamics_phone: BTreeMap<usize, String> = BTreeMap::new();
    let mut dynamics_name: BTreeMap<usize, String> = BTreeMap::new();
    for (step, op) in ops.iter().enumerate() {
        w.clock.advance(chrono::Duration::minutes(1));
        match op {
            Op::AppPhone(m, v) => {
                let value = format!("app-{step}-{v}");
                let mut snapshot = w
                    .store
                    .mentors("hlf", &[mentor_id("hlf", &member(*m))])
                    .await
                    .unwrap()
                    .remove(0);
                snapshot.mentor.phone = Some(value.clone());
                snapshot.mentor.updated_at = sync_engine::Clock::now(&*w.clock);
                w.store.upsert_mentor(&snapshot.mentor).await.unwrap();
                app_phone.insert(*m, value);
            }
            Op::DynamicsPhone(m, v) => {
                let value = format!("dyn-{step}-{v}");
                w.sim
                    .state()
                    .update("contacts", contacts[*m], json!({ "mobilephone": value }))
                    .unwrap();
                dynamics_phone.insert(*m, value);
            }
            Op::DynamicsName(m, v) => {
                let value = format!("Navn{step}x{v}");
                w.sim
                    .state()
                    .update("contacts", contacts[*m], json!({ "firstname": value }))
                    .unwrap();
                dynamics_name.insert(*m, value);
            }
            Op::AppCertification(m, v) => {
                let mut snapshot = w
                    .store
                    .mentors("hlf", &[mentor_id("hlf", &member(*m))])
                    .await
                    .unwrap()
                    .remove(0);
                let now = sync_engine::Clock::now(&*w.clock);
                let certification = &mut snapshot.certifications[0];
                match v {
                    0 => certification.revoked_at = Some(now),
                    1 => {
                        certification.revoked_at = None;
                        certification.expires_on = day(2028, 1, 1);
                    }
                    _ => {
                        certification.revoked_at = None;
                        certification.expires_on = day(2026, 1, 1);
                    }
                }
                certification.updated_at = now;
                w.store.upsert_certification(certification).await.unwrap();
            }
            Op::Run => {
                w.service.run().await.unwrap();
            }
            Op::Crash(micros) => {
                let _ = tokio::time::timeout(Duration::from_micros(*micros), w.service.run()).await;
                // The killed run's SQLite lease lapses with time, as it would for a dead worker.
                w.clock.advance(chrono::Duration::minutes(31));
            }
            Op::Wait(minutes) => w.clock.advance(chrono::Duration::minutes(i64::from(*minutes))),
        }
    }
    w.clock.advance(chrono::Duration::minutes(31));
    w.service.run().await.unwrap();
    w.clock.advance(chrono::Duration::minutes(1));
    w.service.run().await.unwrap();

    let today = sync_engine::local_today(sync_engine::Clock::now(&*w.clock), chrono_tz::Europe::Oslo);
    let conflicts = w.store.pending_conflicts("hlf").await.unwrap();
    for (m, contact) in contacts.iter().enumerate() {
        let snapshot = w
            .store
            .mentors("hlf", &[mentor_id("hlf", &member(m))])
            .await
            .unwrap()
            .remove(0);
        let row = w.row(*contact);
        let shown = sync_engine::certification_view(&snapshot.certifications, today).status == "active";
        assert_eq!(
            row["hlf_showonpublicsite"],
            json!(shown),
            "mentor {m}: app-owned field lost: {row}"
        );
        if let Some(name) = dynamics_name.get(&m) {
            assert_eq!(
                snapshot.mentor.given_name.as_deref(),
                Some(name.as_str()),
                "mentor {m}: first name not pulled"
            );
        }
        let app = snapshot.mentor.phone.clone().unwrap_or_default();
        let dynamics = row["mobilephone"].as_str().unwrap_or_default().to_owned();
        let candidates: Vec<&String> = app_phone.get(&m).into_iter().chain(dynamics_phone.get(&m)).collect();
        let held = conflicts
            .iter()
            .any(|c| c.app_id == mentor_id("hlf", &member(m)) && c.state == ConflictState::Open);
        // Known finding (issue note): a run killed mid-way can leave a conflict open after both sides came to agree;
        // the values have converged, so only a conflict between differing values must keep each side's own.
        if strategy == "manual" && held && app != dynamics {
            assert_eq!(
                Some(&app),
                app_phone.get(&m),
                "mentor {m}: a held conflict keeps the app's value"
            );
            assert_eq!(
                Some(&dynamics),
                dynamics_phone.get(&m),
                "mentor {m}: and Dynamics' value"
            );
            continue;
        }
        assert_eq!(
            app, dynamics,
            "mentor {m} ({strategy}): the sides disagree on the shared field"
        );
        match (app_phone.get(&m), dynamics_phone.get(&m)) {
            (None, None) => assert_eq!(app, "start"),
            (Some(only), None) | (None, Some(only)) => assert_eq!(&app, only, "mentor {m}: the only edit wins"),
            (Some(_), Some(_)) => assert!(candidates.contains(&&app), "mentor {m}: {app} is nobody's last edit"),
        }
    }
    assert_eq!(
        w.sim.state().rows("contacts").len(),
        contacts_before,
        "no contact created"
    );
    for state in [FailureState::Retrying, FailureState::Dead] {
        assert!(
            w.store.failures("hlf", state).await.unwrap().is_empty(),
            "{state:?} records left"
        );
    }
    w.sim.shutdown().await;
    db.cleanup().await.unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn edits_strategies_and_crashes_converge_to_the_specified_state(
        strategy in strategy(),
        ops in proptest::collection::vec(op(), 1..14),
    ) {
        let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
        runtime.block_on(check(strategy, ops));
    }
}
