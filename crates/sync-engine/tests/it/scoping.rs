//! Property: whatever mentors the organisations have, and however their member numbers overlap, a run of HLF's
//! sync writes only to contacts of HLF's own mentors, links only them, and pulls into no other organisation's rows.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use serde_json::json;
use sync_store::AppStore;
use sync_store::testing::TestDatabase;

use super::{World, day, mentor_id};

#[derive(Debug, Clone)]
struct Case {
    /// (organisation, member number, certification state) per mentor.
    mentors: Vec<(&'static str, u32, u8)>,
    /// Member numbers that have a contact in Dynamics.
    contacts: BTreeSet<u32>,
}

fn case() -> impl Strategy<Value = Case> {
    let organisation = prop_oneof![Just("hlf"), Just("other"), Just("third")];
    // A small pool of member numbers, so organisations collide on them often.
    let mentor = (organisation, 100u32..130, 0u8..4);
    (
        proptest::collection::vec(mentor, 1..20),
        proptest::collection::btree_set(100u32..130, 0..30),
    )
        .prop_map(|(mentors, contacts)| Case { mentors, contacts })
}

async fn check(case: Case) {
    let db = TestDatabase::sqlite().await.unwrap();
    let w = World::new(&db).await;
    w.store
        .upsert_organisation("third", "A third organisation")
        .await
        .unwrap();
    let mut contact_ids = BTreeMap::new();
    for number in &case.contacts {
        contact_ids.insert(*number, w.contact(&number.to_string(), json!({})));
    }
    let mut seen = BTreeSet::new();
    let mut hlf_numbers = BTreeSet::new();
    for (organisation, number, state) in &case.mentors {
        // One mentor per organisation and member number (the app's unique index).
        if !seen.insert((*organisation, *number)) {
            continue;
        }
        let expires = match state {
            0 => day(2027, 6, 30),
            1 => day(2026, 1, 1),
            _ => day(2026, 6, 1),
        };
        w.mentor(organisation, &number.to_string(), expires).await;
        if *organisation == "hlf" {
            hlf_numbers.insert(*number);
        }
    }
    let before: BTreeMap<u32, serde_json::Value> = contact_ids.iter().map(|(n, id)| (*n, w.row(*id))).collect();
    let others_before = other_rows(&w).await;

    w.service.run().await.unwrap();

    for (number, id) in &contact_ids {
        let after = w.row(*id);
        if !hlf_numbers.contains(number) {
            assert_eq!(
                after, before[number],
                "contact {number} is not an HLF mentor's but was written"
            );
        }
    }
    for (organisation, number) in &seen {
        let links = w
            .store
            .links("hlf", "mentor", &[mentor_id(organisation, &number.to_string())])
            .await
            .unwrap();
        if *organisation != "hlf" {
            assert!(
                links.is_empty(),
                "{organisation}'s mentor {number} was linked into HLF's sync"
            );
        }
    }
    assert_eq!(
        other_rows(&w).await,
        others_before,
        "another organisation's app rows were changed"
    );
    db.cleanup().await.unwrap();
}

/// Everything about the other organisations' mentors, for before/after comparison.
async fn other_rows(w: &World) -> Vec<String> {
    let mut out = Vec::new();
    for organisation in ["other", "third"] {
        for snapshot in w.store.all_mentors(organisation, None, 1000).await.unwrap() {
            out.push(format!("{snapshot:?}"));
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn no_other_organisation_reaches_hlfs_dynamics(case in case()) {
        let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
        runtime.block_on(check(case));
    }
}
