//! Property: random sequences of the events of a year in production, under a random conflict strategy, with and
//! without an entity filter, converge after two clean runs to what the specification defines.
//!
//! Events: app and Dynamics edits of a shared field (phone), Dynamics edits of a Dynamics-owned field (first
//! name), certifications revoked, renewed and expired, member numbers moving between mentors, mentors leaving the
//! app, contacts deleted, re-created, deactivated and reactivated in Dynamics, app edits made during a run, runs
//! killed at random points, and runs killed after Dynamics carried a request out but before its answer arrived.
//!
//! What must hold afterwards:
//! - no run without injected faults failed as a whole;
//! - no contact is on the public site (or active) unless a mentor in the app with its member number, an active
//!   certification and a link to it is behind it: nobody gone or expired stays shown;
//! - every mentor whose member number an active contact (within the filter) carries is linked to it, not failing,
//!   and that contact shows the mentor's certification; a mentor that fails has no such contact;
//! - the Dynamics-owned field is in the app as Dynamics has it;
//! - the shared field agrees on both sides unless a conflict is held under `manual`; the agreed value is one a
//!   user wrote (never an invented one); for a mentor whose contact never changed, the only side that edited it
//!   wins and a held conflict keeps each side's last value;
//! - no conflict is open over equal values; no contact was created by the sync; without held conflicts the
//!   reconcile finds no divergence.
//!
//! `PROPTEST_CASES=150` runs a longer search than CI's 24 cases.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use field_mapping::AppValue;
use proptest::prelude::*;
use serde_json::{Value, json};
use sync_store::testing::TestDatabase;
use sync_store::{AppStore, ConflictState, FailureState, RunStatus};
use uuid::Uuid;

use super::{DEFAULT_CONFIG, Hooked, World, day, mentor_id, shared_phone_mapping};

/// Mentor slots in the app.
const MENTORS: usize = 3;
/// Member numbers (and contacts) in Dynamics: mentors start with the first three.
const NUMBERS: usize = 5;

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
    /// The app gives a mentor another member number (if no other mentor has it).
    Renumber(usize, usize),
    /// A mentor leaves the app.
    RemoveMentor(usize),
    /// HLF staff delete a contact.
    DeleteContact(usize),
    /// HLF staff register a member again: a new contact with the number, if none has it.
    RecreateContact(usize),
    /// HLF staff deactivate a contact.
    Deactivate(usize),
    /// HLF staff reactivate a contact.
    Reactivate(usize),
    /// A sync run to its end.
    Run,
    /// A run during which the app changes a mentor's phone as the pull writes into the app.
    RunWithAppEdit(usize, u8),
    /// A sync run killed after this many microseconds (the future is dropped: nothing after that point runs).
    Crash(u64),
    /// A run whose first write after the pull is carried out by Dynamics but answered too late: the worker is killed
    /// after this many milliseconds, before it could record the answer.
    CrashAfterWrite(u64),
    /// Time passes.
    Wait(u8),
}

fn op() -> impl Strategy<Value = Op> {
    let m = 0..MENTORS;
    let c = 0..NUMBERS;
    prop_oneof![
        (m.clone(), 0u8..4).prop_map(|(m, v)| Op::AppPhone(m, v)),
        (c.clone(), 0u8..4).prop_map(|(c, v)| Op::DynamicsPhone(c, v)),
        (c.clone(), 0u8..4).prop_map(|(c, v)| Op::DynamicsName(c, v)),
        (m.clone(), 0u8..3).prop_map(|(m, v)| Op::AppCertification(m, v)),
        (m.clone(), c.clone()).prop_map(|(m, c)| Op::Renumber(m, c)),
        m.clone().prop_map(Op::RemoveMentor),
        c.clone().prop_map(Op::DeleteContact),
        c.clone().prop_map(Op::RecreateContact),
        c.clone().prop_map(Op::Deactivate),
        c.prop_map(Op::Reactivate),
        Just(Op::Run),
        Just(Op::Run),
        (m, 0u8..4).prop_map(|(m, v)| Op::RunWithAppEdit(m, v)),
        (0u64..60_000).prop_map(Op::Crash),
        (50u64..400).prop_map(Op::CrashAfterWrite),
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

fn number(n: usize) -> String {
    (8100 + n).to_string()
}

fn slot(m: usize) -> String {
    mentor_id("hlf", &format!("slot{m}"))
}

/// What the test knows of the world as the operations go.
#[derive(Default)]
struct Model {
    /// Contact id per member number, while it exists.
    contacts: BTreeMap<usize, Uuid>,
    /// Every contact ever made (the sync must make none).
    made: usize,
    /// Mentors still in the app.
    present: BTreeSet<usize>,
    /// Mentors whose number or contact changed: the precise per-side checks of the shared field apply only to the
    /// others.
    unstable: BTreeSet<usize>,
    /// Numbers whose contact changed identity or state.
    touched: BTreeSet<usize>,
    /// The last phone each mentor's app user wrote, and each number's contact's Dynamics user wrote.
    app_phone: BTreeMap<usize, String>,
    dynamics_phone: BTreeMap<usize, String>,
    /// Every phone value any user wrote.
    written: BTreeSet<String>,
}

async fn edit_phone(store: &sync_store::Store, m: usize, value: &str, at: chrono::DateTime<chrono::Utc>) {
    let mut snapshot = store.mentors("hlf", &[slot(m)]).await.unwrap().remove(0);
    snapshot.mentor.phone = Some(value.to_owned());
    snapshot.mentor.updated_at = at;
    store.upsert_mentor(&snapshot.mentor).await.unwrap();
}

async fn check(strategy: &'static str, filtered: bool, ops: Vec<Op>) {
    let db = TestDatabase::sqlite().await.unwrap();
    let config = format!("{DEFAULT_CONFIG}[conflicts]\ndefault = \"{strategy}\"\n");
    let filter = if filtered {
        "[organisations.filters]\ncontact = \"statecode eq 0\"\n"
    } else {
        ""
    };
    let hooked = std::sync::Mutex::new(None);
    let w = World::with_app(&db, &config, Some(&shared_phone_mapping()), filter, |store| {
        let app = Hooked::new(store);
        *hooked.lock().unwrap() = Some(app.clone());
        Arc::new(app)
    })
    .await;
    let app = hooked.lock().unwrap().take().unwrap();
    let mut model = Model::default();
    model.written.insert("start".to_owned());
    for n in 0..NUMBERS {
        let id = w.contact(&number(n), json!({ "mobilephone": "start", "firstname": "Start" }));
        model.contacts.insert(n, id);
        model.made += 1;
    }
    for m in 0..MENTORS {
        w.mentor_slot(m, &number(m)).await;
        model.present.insert(m);
    }
    assert_ne!(w.service.run().await.unwrap().status, RunStatus::Failed);

    let now = |w: &World| sync_engine::Clock::now(&*w.clock);
    for (step, op) in ops.iter().enumerate() {
        w.clock.advance(chrono::Duration::minutes(1));
        match op {
            Op::AppPhone(m, v) => {
                if model.present.contains(m) {
                    let value = format!("app-{step}-{v}");
                    edit_phone(&w.store, *m, &value, now(&w)).await;
                    model.app_phone.insert(*m, value.clone());
                    model.written.insert(value);
                }
            }
            Op::DynamicsPhone(c, v) => {
                if let Some(id) = model.contacts.get(c) {
                    let value = format!("dyn-{step}-{v}");
                    w.sim
                        .state()
                        .update("contacts", *id, json!({ "mobilephone": value }))
                        .unwrap();
                    model.dynamics_phone.insert(*c, value.clone());
                    model.written.insert(value);
                }
            }
            Op::DynamicsName(c, v) => {
                if let Some(id) = model.contacts.get(c) {
                    w.sim
                        .state()
                        .update("contacts", *id, json!({ "firstname": format!("Navn{step}x{v}") }))
                        .unwrap();
                }
            }
            Op::AppCertification(m, v) => {
                if model.present.contains(m) {
                    let mut snapshot = w.store.mentors("hlf", &[slot(*m)]).await.unwrap().remove(0);
                    let certification = &mut snapshot.certifications[0];
                    match v {
                        0 => certification.revoked_at = Some(now(&w)),
                        1 => {
                            certification.revoked_at = None;
                            certification.expires_on = day(2028, 1, 1);
                        }
                        _ => {
                            certification.revoked_at = None;
                            certification.expires_on = day(2026, 1, 1);
                        }
                    }
                    certification.updated_at = now(&w);
                    w.store.upsert_certification(certification).await.unwrap();
                }
            }
            Op::Renumber(m, n) => {
                let taken = w
                    .store
                    .mentor_by_member_number("hlf", &number(*n))
                    .await
                    .unwrap()
                    .is_some();
                if model.present.contains(m) && !taken {
                    let mut snapshot = w.store.mentors("hlf", &[slot(*m)]).await.unwrap().remove(0);
                    snapshot.mentor.member_number = Some(number(*n));
                    snapshot.mentor.updated_at = now(&w);
                    w.store.upsert_mentor(&snapshot.mentor).await.unwrap();
                    model.unstable.insert(*m);
                }
            }
            Op::RemoveMentor(m) => {
                if model.present.remove(m) {
                    w.store.delete_mentor("hlf", &slot(*m)).await.unwrap();
                }
            }
            Op::DeleteContact(c) => {
                if let Some(id) = model.contacts.remove(c) {
                    w.sim.state().delete("contacts", id).unwrap();
                    model.touched.insert(*c);
                }
            }
            Op::RecreateContact(c) => {
                if !model.contacts.contains_key(c) {
                    let id = w.contact(&number(*c), json!({ "mobilephone": "start", "firstname": "Start" }));
                    model.contacts.insert(*c, id);
                    model.made += 1;
                    model.touched.insert(*c);
                    model.dynamics_phone.remove(c);
                }
            }
            Op::Deactivate(c) | Op::Reactivate(c) => {
                if let Some(id) = model.contacts.get(c) {
                    let state = if matches!(op, Op::Deactivate(_)) {
                        (1, 2)
                    } else {
                        (0, 1)
                    };
                    w.sim
                        .state()
                        .update("contacts", *id, json!({ "statecode": state.0, "statuscode": state.1 }))
                        .unwrap();
                    model.touched.insert(*c);
                }
            }
            Op::Run => {
                let report = w.service.run().await.unwrap();
                assert_ne!(report.status, RunStatus::Failed, "step {step}: {report:?}");
            }
            Op::RunWithAppEdit(m, v) => {
                if model.present.contains(m) {
                    let value = format!("race-{step}-{v}");
                    model.app_phone.insert(*m, value.clone());
                    model.written.insert(value.clone());
                    let (store, fired, at, m) = (w.store.clone(), Arc::new(AtomicBool::new(false)), now(&w), *m);
                    app.on(
                        "apply_pull",
                        Box::new(move || {
                            let (store, fired, value) = (store.clone(), fired.clone(), value.clone());
                            Box::pin(async move {
                                if !fired.swap(true, Ordering::SeqCst) {
                                    edit_phone(&store, m, &value, at).await;
                                }
                            })
                        }),
                    );
                    let report = w.service.run().await.unwrap();
                    app.clear();
                    // The hook may not have fired (no pull write this run): then the edit happens after it.
                    if w.store.mentors("hlf", &[slot(m)]).await.unwrap()[0]
                        .mentor
                        .phone
                        .as_deref()
                        != model.app_phone.get(&m).map(String::as_str)
                    {
                        let value = model.app_phone[&m].clone();
                        edit_phone(&w.store, m, &value, now(&w)).await;
                    }
                    assert_ne!(report.status, RunStatus::Failed, "step {step}: {report:?}");
                }
            }
            Op::Crash(micros) => {
                let _ = tokio::time::timeout(Duration::from_micros(*micros), w.service.run()).await;
                // The killed run's SQLite lease lapses with time, as it would for a dead worker.
                w.clock.advance(chrono::Duration::minutes(31));
            }
            Op::CrashAfterWrite(millis) => {
                let (faults, armed) = (w.sim.faults(), Arc::new(AtomicBool::new(false)));
                faults.set_hang_duration(Duration::from_secs(30));
                app.on(
                    "changed_mentors",
                    Box::new(move || {
                        if !armed.swap(true, Ordering::SeqCst) {
                            faults.answer_late_next(1);
                        }
                        Box::pin(async {})
                    }),
                );
                let _ = tokio::time::timeout(Duration::from_millis(*millis), w.service.run()).await;
                app.clear();
                w.sim.faults().clear();
                w.clock.advance(chrono::Duration::minutes(31));
            }
            Op::Wait(minutes) => w.clock.advance(chrono::Duration::minutes(i64::from(*minutes))),
        }
    }
    w.clock.advance(chrono::Duration::minutes(31));
    for _ in 0..2 {
        let report = w.service.run().await.unwrap();
        assert_ne!(report.status, RunStatus::Failed, "a clean run: {report:?}");
        w.clock.advance(chrono::Duration::minutes(1));
    }
    verify(&w, strategy, filtered, &model).await;
    w.sim.shutdown().await;
    db.cleanup().await.unwrap();
}

async fn verify(w: &World, strategy: &str, filtered: bool, model: &Model) {
    let today = sync_engine::local_today(sync_engine::Clock::now(&*w.clock), chrono_tz::Europe::Oslo);
    let rows: Vec<Value> = w.sim.state().rows("contacts");
    assert_eq!(
        rows.len(),
        model.contacts.len(),
        "the sync never creates or deletes contacts"
    );
    let conflicts = w.store.pending_conflicts("hlf").await.unwrap();
    let mut failing: BTreeSet<String> = BTreeSet::new();
    for state in [FailureState::Retrying, FailureState::Dead] {
        failing.extend(
            w.store
                .failures("hlf", state)
                .await
                .unwrap()
                .into_iter()
                .map(|f| f.record_key),
        );
    }
    let mentors = w
        .store
        .mentors("hlf", &(0..MENTORS).map(slot).collect::<Vec<_>>())
        .await
        .unwrap();
    let by_number: BTreeMap<String, &sync_store::MentorSnapshot> = mentors
        .iter()
        .filter_map(|s| Some((s.mentor.member_number.clone()?, s)))
        .collect();
    let links: BTreeMap<String, sync_store::Link> = w
        .store
        .links_page("hlf", "mentor", None, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|l| (l.app_id.clone(), l))
        .collect();
    let active = |row: &Value| row["statecode"] == 0;
    let certified =
        |s: &sync_store::MentorSnapshot| sync_engine::certification_view(&s.certifications, today).status == "active";

    // Nobody gone, renumbered away or expired stays on the public site.
    for row in &rows {
        let shown = row["hlf_showonpublicsite"] == true || row["hlf_peermentorstatus"] == 100000000;
        if !shown {
            continue;
        }
        let id = Uuid::parse_str(row["contactid"].as_str().unwrap()).unwrap();
        let number = row["hlf_membernumber"].as_str().unwrap_or_default();
        let mentor = by_number.get(number);
        assert!(
            mentor.is_some_and(|s| certified(s)
                && links.get(&s.mentor.id).is_some_and(|l| l.dynamics_id == id)
                && active(row)),
            "contact {number} is shown without a certified mentor linked to it: {row}\nmentors: {mentors:#?}\nlinks: {links:#?}"
        );
    }

    for (m, snapshot) in (0..MENTORS).filter(|m| model.present.contains(m)).zip(&mentors) {
        assert_eq!(snapshot.mentor.id, slot(m));
        let number = snapshot.mentor.member_number.clone().unwrap();
        let contact = rows
            .iter()
            .find(|r| r["hlf_membernumber"] == number.as_str() && active(r));
        let link = links.get(&snapshot.mentor.id);
        let Some(row) = contact else {
            // No active contact has the number: the mentor waits, unlinked (queued if the app changed it since).
            assert!(link.is_none(), "mentor {m} linked without an active contact: {link:?}");
            continue;
        };
        let id = Uuid::parse_str(row["contactid"].as_str().unwrap()).unwrap();
        assert_eq!(
            link.map(|l| l.dynamics_id),
            Some(id),
            "mentor {m} is linked to its contact (filtered: {filtered})"
        );
        assert!(!failing.contains(&snapshot.mentor.id), "mentor {m} is not failing");
        assert_eq!(
            row["hlf_showonpublicsite"],
            json!(certified(snapshot)),
            "mentor {m}: the app-owned field shows the certification: {row}"
        );
        assert_eq!(
            snapshot.mentor.given_name.as_deref(),
            row["firstname"].as_str(),
            "mentor {m}: the Dynamics-owned field reached the app"
        );
        assert_eq!(
            snapshot.membership.as_ref().and_then(|ms| ms.status.as_deref()),
            Some("active"),
            "mentor {m}: the membership follows its contact"
        );
        let app = snapshot.mentor.phone.clone().unwrap_or_default();
        let dynamics = row["mobilephone"].as_str().unwrap_or_default().to_owned();
        let held = conflicts
            .iter()
            .any(|c| c.app_id == snapshot.mentor.id && c.state == ConflictState::Open);
        if held {
            assert_eq!(strategy, "manual", "only manual holds conflicts");
            assert_ne!(app, dynamics, "mentor {m}: a conflict is open over equal values");
        } else {
            assert_eq!(
                app, dynamics,
                "mentor {m} ({strategy}): the sides disagree on the shared field"
            );
        }
        assert!(model.written.contains(&app), "mentor {m}: {app} is nobody's edit");
        assert!(
            model.written.contains(&dynamics),
            "mentor {m}: {dynamics} is nobody's edit"
        );
        let n = (0..NUMBERS).find(|n| self::number(*n) == number).unwrap();
        if model.unstable.contains(&m) || model.touched.contains(&n) || n != m {
            continue;
        }
        // The mentor kept its contact all along: the precise rules of the shared field.
        match (model.app_phone.get(&m), model.dynamics_phone.get(&n)) {
            (None, None) => assert_eq!(app, "start"),
            (Some(only), None) if !held => assert_eq!(&app, only, "mentor {m}: the only edit wins"),
            (None, Some(only)) if !held => assert_eq!(&app, only, "mentor {m}: the only edit wins"),
            (Some(a), Some(d)) if held => {
                assert_eq!(
                    (&app, &dynamics),
                    (a, d),
                    "mentor {m}: a held conflict keeps each side's value"
                );
            }
            _ => {}
        }
    }
    for conflict in &conflicts {
        let present = mentors.iter().any(|s| s.mentor.id == conflict.app_id);
        assert!(present, "a conflict of a mentor who left: {conflict:?}");
        if conflict.state == ConflictState::Open
            && let (AppValue::Text(a), AppValue::Text(d)) = (&conflict.app_value, &conflict.dynamics_value)
        {
            assert_ne!(a, d, "a conflict held over equal values: {conflict:?}");
        }
    }
    if conflicts.is_empty() {
        let report = w.service.reconcile().await.unwrap();
        assert_eq!(report.divergence.records_differing, 0, "{report:?}");
    }
    assert!(model.made >= model.contacts.len());
}

impl World {
    /// Adds the mentor of slot `m` with `member` and a certification valid until mid-2027.
    async fn mentor_slot(&self, m: usize, member: &str) {
        self.mentor("hlf", &format!("slot{m}"), day(2027, 6, 30)).await;
        let mut snapshot = self.store.mentors("hlf", &[slot(m)]).await.unwrap().remove(0);
        snapshot.mentor.member_number = Some(member.to_owned());
        snapshot.mentor.phone = Some("start".into());
        snapshot.mentor.given_name = Some("Start".into());
        self.store.upsert_mentor(&snapshot.mentor).await.unwrap();
    }
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(24)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn the_events_of_a_year_converge_to_the_specified_state(
        strategy in strategy(),
        filtered in any::<bool>(),
        ops in proptest::collection::vec(op(), 1..16),
    ) {
        let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
        runtime.block_on(check(strategy, filtered, ops));
    }
}
