//! The [`AppStore`] contract as executable checks (feature `testing`): any implementation, the reference store's or
//! a backend's over its own tables, runs [`app_store_conformance`] in its tests. docs/app-store.md states the
//! contract in words; each check here names the rule it holds.
//!
//! The suite needs a way to put mentors and certifications into the app as the app itself would (the trait only
//! lets the sync read and write what it owns): an [`AppFixture`]. Each check uses organisations of its own (ids
//! starting `conformance-`), so the suite runs against a database that holds other data too.

use std::fmt;

use async_trait::async_trait;
use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use uuid::Uuid;

use crate::app::AppStore;
use crate::error::{Error, Result};
use crate::model::{Certification, ChangeCursor, Mentor, MentorSnapshot, PullOutcome, PullUpdate};

/// What the suite needs besides the [`AppStore`] under test: writing app data as the app writes it.
#[async_trait]
pub trait AppFixture: Send + Sync {
    /// The implementation under test.
    fn app(&self) -> &dyn AppStore;
    /// Makes an organisation exist (a no-op where the app has no table of organisations).
    async fn add_organisation(&self, id: &str) -> Result<()>;
    /// Creates or replaces a mentor as the app would, keeping the given `updated_at`.
    async fn put_mentor(&self, mentor: &Mentor) -> Result<()>;
    /// Creates or replaces a certification as the app would, keeping the given `updated_at`.
    async fn put_certification(&self, certification: &Certification) -> Result<()>;
}

/// The outcome of [`app_store_conformance`]: each rule that does not hold, with what was seen.
#[derive(Debug, Default)]
pub struct ConformanceReport {
    /// Rules checked.
    pub checked: usize,
    /// `rule: what was seen` for each rule broken.
    pub failures: Vec<String>,
}

impl ConformanceReport {
    /// Panics listing every broken rule (for a test).
    #[track_caller]
    #[allow(clippy::panic)]
    pub fn assert_passed(&self) {
        if !self.failures.is_empty() {
            panic!("{self}");
        }
    }
}

impl fmt::Display for ConformanceReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "AppStore conformance: {} of {} rules hold",
            self.checked - self.failures.len(),
            self.checked
        )?;
        for failure in &self.failures {
            writeln!(f, "  broken: {failure}")?;
        }
        Ok(())
    }
}

/// Runs every check of the contract against `fixture`. `run` makes the organisation ids unique to this call (use a
/// fresh value per test run when the database is shared).
pub async fn app_store_conformance(fixture: &dyn AppFixture, run: &str) -> ConformanceReport {
    let f = fixture;
    let mut report = ConformanceReport::default();
    let mut record = |rule: &str, outcome: std::result::Result<(), String>| {
        report.checked += 1;
        if let Err(seen) = outcome {
            report.failures.push(format!("{rule}: {seen}"));
        }
    };
    record("every read is scoped to its organisation", scoping(f, run).await);
    record(
        "writes never touch another organisation's mentors",
        write_scoping(f, run).await,
    );
    record(
        "changed mentors come in (change time, id) order and resume after the cursor",
        cursor_order(f, run).await,
    );
    record(
        "a certification change is a change of its mentor, at its own time",
        certification_changes(f, run).await,
    );
    record(
        "`since` includes changes at that instant",
        since_inclusive(f, run).await,
    );
    record(
        "apply_pull writes only what it is given and never moves updated_at",
        pull_writes(f, run).await,
    );
    record(
        "apply_pull is stale, writing nothing, when the app edited the mentor since",
        pull_stale(f, run).await,
    );
    record(
        "a missing mentor or a refused value is a record-level error, and apply_pulls goes on",
        pull_errors(f, run).await,
    );
    record(
        "set_dynamics_contact links and unlinks without moving updated_at",
        linking(f, run).await,
    );
    record(
        "mentors, all_mentors and member-number look-ups leave out what does not exist",
        lookups(f, run).await,
    );
    report
}

fn at(minutes: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).single().unwrap_or_default() + Duration::minutes(minutes)
}

fn mentor(org: &str, id: &str, member: Option<&str>, updated: i64) -> Mentor {
    Mentor {
        id: id.to_owned(),
        organisation_id: org.to_owned(),
        member_number: member.map(str::to_owned),
        given_name: Some("Kari".to_owned()),
        family_name: Some("Nordmann".to_owned()),
        email: Some(format!("{id}@example.invalid")),
        phone: Some("+47 900 00 000".to_owned()),
        coordinator_email: None,
        dynamics_contact_id: None,
        updated_at: at(updated),
    }
}

fn certification(mentor_id: &str, updated: i64) -> Certification {
    Certification {
        id: format!("cert-{mentor_id}"),
        mentor_id: mentor_id.to_owned(),
        kind: "likeperson".to_owned(),
        issued_on: NaiveDate::from_ymd_opt(2025, 1, 1).unwrap_or_default(),
        expires_on: NaiveDate::from_ymd_opt(2027, 1, 1).unwrap_or_default(),
        revoked_at: None,
        updated_at: at(updated),
    }
}

/// An organisation id unique to this check and run.
async fn org(f: &dyn AppFixture, run: &str, name: &str) -> std::result::Result<String, String> {
    let id = format!("conformance-{run}-{name}");
    f.add_organisation(&id)
        .await
        .map_err(|e| format!("adding organisation {id}: {e}"))?;
    Ok(id)
}

fn err(what: &str) -> impl Fn(Error) -> String + '_ {
    move |e| format!("{what} failed: {e}")
}

fn ids(snapshots: &[MentorSnapshot]) -> Vec<String> {
    snapshots.iter().map(|s| s.mentor.id.clone()).collect()
}

fn expect<T: PartialEq + fmt::Debug>(what: &str, seen: T, wanted: T) -> std::result::Result<(), String> {
    if seen == wanted {
        Ok(())
    } else {
        Err(format!("{what}: got {seen:?}, expected {wanted:?}"))
    }
}

async fn put(f: &dyn AppFixture, mentor: &Mentor) -> std::result::Result<(), String> {
    f.put_mentor(mentor).await.map_err(err("put_mentor"))
}

async fn one(f: &dyn AppFixture, org: &str, id: &str) -> std::result::Result<MentorSnapshot, String> {
    f.app()
        .mentors(org, &[id.to_owned()])
        .await
        .map_err(err("mentors"))?
        .pop()
        .ok_or_else(|| format!("mentor {id} of {org} is not found"))
}

async fn scoping(f: &dyn AppFixture, run: &str) -> std::result::Result<(), String> {
    let (a, b) = (org(f, run, "scope-a").await?, org(f, run, "scope-b").await?);
    let (ma, mb) = (format!("{a}-m1"), format!("{b}-m1"));
    // The same member number in both organisations: numbers are unique within one only.
    put(f, &mentor(&a, &ma, Some("1001"), 0)).await?;
    put(f, &mentor(&b, &mb, Some("1001"), 0)).await?;
    let app = f.app();
    let changed = app
        .changed_mentors(&a, None, None, 100)
        .await
        .map_err(err("changed_mentors"))?;
    expect(
        "changed_mentors of A",
        changed.iter().map(|(_, s)| s.mentor.id.clone()).collect(),
        vec![ma.clone()],
    )?;
    expect(
        "mentors(A, [B's id])",
        ids(&app
            .mentors(&a, std::slice::from_ref(&mb))
            .await
            .map_err(err("mentors"))?),
        vec![],
    )?;
    expect(
        "all_mentors of A",
        ids(&app.all_mentors(&a, None, 100).await.map_err(err("all_mentors"))?),
        vec![ma.clone()],
    )?;
    let by_number = app
        .mentor_by_member_number(&a, "1001")
        .await
        .map_err(err("mentor_by_member_number"))?;
    expect(
        "mentor_by_member_number(A, 1001)",
        by_number.map(|s| s.mentor.id),
        Some(ma.clone()),
    )?;
    expect(
        "mentors_by_member_numbers(B, [1001])",
        ids(&app
            .mentors_by_member_numbers(&b, &["1001".to_owned()])
            .await
            .map_err(err("mentors_by_member_numbers"))?),
        vec![mb.clone()],
    )?;
    expect(
        "existing_mentors(A, [A's, B's])",
        app.existing_mentors(&a, &[ma.clone(), mb.clone()])
            .await
            .map_err(err("existing_mentors"))?,
        vec![ma],
    )
}

async fn write_scoping(f: &dyn AppFixture, run: &str) -> std::result::Result<(), String> {
    let (a, b) = (org(f, run, "wscope-a").await?, org(f, run, "wscope-b").await?);
    let mb = format!("{b}-m1");
    put(f, &mentor(&b, &mb, Some("2001"), 0)).await?;
    let before = one(f, &b, &mb).await?;
    let update = PullUpdate {
        given_name: Some(Some("Other".to_owned())),
        ..PullUpdate::default()
    };
    // Through A, B's mentor does not exist.
    match f.app().apply_pull(&a, &mb, &update).await {
        Err(e) if e.is_record_level() => {}
        other => {
            return Err(format!(
                "apply_pull(A, B's mentor): got {other:?}, expected a record-level error"
            ));
        }
    }
    let _ = f.app().set_dynamics_contact(&a, &mb, Some(Uuid::from_u128(7))).await;
    expect("B's mentor after writes through A", one(f, &b, &mb).await?, before)
}

async fn cursor_order(f: &dyn AppFixture, run: &str) -> std::result::Result<(), String> {
    let o = org(f, run, "cursor").await?;
    // Ten mentors, two at each of five instants, put in an order that is neither.
    let mut wanted = Vec::new();
    for i in [3, 0, 4, 1, 2] {
        for suffix in ["b", "a"] {
            put(f, &mentor(&o, &format!("{o}-{i}{suffix}"), None, i)).await?;
        }
    }
    for i in 0..5 {
        for suffix in ["a", "b"] {
            wanted.push(format!("{o}-{i}{suffix}"));
        }
    }
    let mut seen = Vec::new();
    let mut cursor: Option<ChangeCursor> = None;
    for _ in 0..10 {
        let page = f
            .app()
            .changed_mentors(&o, None, cursor.as_ref(), 3)
            .await
            .map_err(err("changed_mentors"))?;
        if page.len() > 3 {
            return Err(format!("a page of limit 3 held {}", page.len()));
        }
        let Some((last, _)) = page.last() else { break };
        cursor = Some(last.clone());
        for (c, s) in &page {
            if c.id != s.mentor.id {
                return Err(format!("cursor id {} beside mentor {}", c.id, s.mentor.id));
            }
            seen.push(s.mentor.id.clone());
        }
    }
    expect("ids read page by page", seen, wanted)
}

async fn certification_changes(f: &dyn AppFixture, run: &str) -> std::result::Result<(), String> {
    let o = org(f, run, "certs").await?;
    let (early, late) = (format!("{o}-early"), format!("{o}-late"));
    put(f, &mentor(&o, &early, None, 0)).await?;
    put(f, &mentor(&o, &late, None, 5)).await?;
    // The early mentor's certification changes after the late mentor's row.
    f.put_certification(&certification(&early, 10))
        .await
        .map_err(err("put_certification"))?;
    let changed = f
        .app()
        .changed_mentors(&o, Some(at(6)), None, 10)
        .await
        .map_err(err("changed_mentors"))?;
    let seen: Vec<(String, DateTime<Utc>)> = changed.iter().map(|(c, _)| (c.id.clone(), c.changed_at)).collect();
    expect("changes since minute 6", seen, vec![(early.clone(), at(10))])?;
    let certifications = &changed
        .first()
        .map(|(_, s)| s.certifications.clone())
        .unwrap_or_default();
    expect("the snapshot's certifications", certifications.len(), 1)
}

async fn since_inclusive(f: &dyn AppFixture, run: &str) -> std::result::Result<(), String> {
    let o = org(f, run, "since").await?;
    put(f, &mentor(&o, &format!("{o}-before"), None, 0)).await?;
    put(f, &mentor(&o, &format!("{o}-at"), None, 1)).await?;
    let changed = f
        .app()
        .changed_mentors(&o, Some(at(1)), None, 10)
        .await
        .map_err(err("changed_mentors"))?;
    expect(
        "changed since minute 1",
        changed.iter().map(|(_, s)| s.mentor.id.clone()).collect(),
        vec![format!("{o}-at")],
    )
}

async fn pull_writes(f: &dyn AppFixture, run: &str) -> std::result::Result<(), String> {
    let o = org(f, run, "pull").await?;
    let id = format!("{o}-m");
    put(f, &mentor(&o, &id, Some("3001"), 0)).await?;
    let update = PullUpdate {
        given_name: Some(Some("Ola".to_owned())),
        phone: Some(None),
        membership_status: Some(Some("active".to_owned())),
        paid_until: Some(NaiveDate::from_ymd_opt(2026, 12, 31)),
        source_modified_on: Some(at(30)),
        ..PullUpdate::default()
    };
    let outcome = f.app().apply_pull(&o, &id, &update).await.map_err(err("apply_pull"))?;
    expect("outcome", outcome, PullOutcome::Applied)?;
    let after = one(f, &o, &id).await?;
    expect("given_name (set)", after.mentor.given_name.as_deref(), Some("Ola"))?;
    expect("phone (cleared)", after.mentor.phone.as_deref(), None)?;
    expect(
        "family_name (not given: kept)",
        after.mentor.family_name.as_deref(),
        Some("Nordmann"),
    )?;
    expect(
        "member_number (not given: kept)",
        after.mentor.member_number.as_deref(),
        Some("3001"),
    )?;
    expect("updated_at", after.mentor.updated_at, at(0))?;
    let membership = after.membership.unwrap_or_default();
    expect("membership status", membership.status.as_deref(), Some("active"))?;
    expect(
        "paid until",
        membership.paid_until,
        NaiveDate::from_ymd_opt(2026, 12, 31),
    )?;
    // Not an app change: the change feed does not return it.
    let changed = f
        .app()
        .changed_mentors(&o, Some(at(1)), None, 10)
        .await
        .map_err(err("changed_mentors"))?;
    expect("changes after the pull", changed.len(), 0)
}

async fn pull_stale(f: &dyn AppFixture, run: &str) -> std::result::Result<(), String> {
    let o = org(f, run, "stale").await?;
    let id = format!("{o}-m");
    put(f, &mentor(&o, &id, None, 0)).await?;
    // The engine read the mentor at minute 0; the app edits it at minute 2.
    let mut edited = mentor(&o, &id, None, 2);
    edited.email = Some("edited@example.invalid".to_owned());
    put(f, &edited).await?;
    let update = PullUpdate {
        email: Some(Some("from-dynamics@example.invalid".to_owned())),
        if_updated_at: Some(at(0)),
        ..PullUpdate::default()
    };
    let outcome = f.app().apply_pull(&o, &id, &update).await.map_err(err("apply_pull"))?;
    expect("outcome", outcome, PullOutcome::Stale)?;
    expect(
        "email",
        one(f, &o, &id).await?.mentor.email.as_deref(),
        Some("edited@example.invalid"),
    )?;
    let fresh = PullUpdate {
        if_updated_at: Some(at(2)),
        ..update
    };
    let outcome = f.app().apply_pull(&o, &id, &fresh).await.map_err(err("apply_pull"))?;
    expect("outcome with the current updated_at", outcome, PullOutcome::Applied)
}

async fn pull_errors(f: &dyn AppFixture, run: &str) -> std::result::Result<(), String> {
    let o = org(f, run, "errors").await?;
    let (m1, m2, m3) = (format!("{o}-1"), format!("{o}-2"), format!("{o}-3"));
    put(f, &mentor(&o, &m1, Some("4001"), 0)).await?;
    put(f, &mentor(&o, &m2, Some("4002"), 0)).await?;
    put(f, &mentor(&o, &m3, Some("4003"), 0)).await?;
    let name = |n: &str| PullUpdate {
        given_name: Some(Some(n.to_owned())),
        ..PullUpdate::default()
    };
    let updates = vec![
        (m1.clone(), name("One")),
        (format!("{o}-missing"), name("Nobody")),
        // Dynamics renumbered m2 to m3's number: the app must refuse it.
        (
            m2.clone(),
            PullUpdate {
                member_number: Some(Some("4003".to_owned())),
                ..name("Two")
            },
        ),
        (m3.clone(), name("Three")),
    ];
    let results = f.app().apply_pulls(&o, &updates).await.map_err(err("apply_pulls"))?;
    expect("results", results.len(), 4)?;
    let shape: Vec<&str> = results
        .iter()
        .map(|r| match r {
            Ok(PullOutcome::Applied) => "applied",
            Ok(PullOutcome::Stale) => "stale",
            Err(e) if e.is_record_level() => "record error",
            Err(_) => "run error",
        })
        .collect();
    expect(
        "outcomes in order",
        shape,
        vec!["applied", "record error", "record error", "applied"],
    )?;
    expect("m1", one(f, &o, &m1).await?.mentor.given_name.as_deref(), Some("One"))?;
    expect("m3", one(f, &o, &m3).await?.mentor.given_name.as_deref(), Some("Three"))?;
    let m2_after = one(f, &o, &m2).await?;
    expect(
        "m2's number (refused)",
        m2_after.mentor.member_number.as_deref(),
        Some("4002"),
    )?;
    match f.app().apply_pull(&o, &format!("{o}-missing"), &name("x")).await {
        Err(e) if e.is_record_level() => Ok(()),
        other => Err(format!("apply_pull of a missing mentor: got {other:?}")),
    }
}

async fn linking(f: &dyn AppFixture, run: &str) -> std::result::Result<(), String> {
    let o = org(f, run, "link").await?;
    let (m1, m2) = (format!("{o}-1"), format!("{o}-2"));
    put(f, &mentor(&o, &m1, None, 0)).await?;
    put(f, &mentor(&o, &m2, None, 0)).await?;
    let contact = Uuid::from_u128(0x5eed);
    f.app()
        .set_dynamics_contacts(
            &o,
            &[(m1.clone(), Some(contact)), (m2.clone(), Some(Uuid::from_u128(2)))],
        )
        .await
        .map_err(err("set_dynamics_contacts"))?;
    let linked = one(f, &o, &m1).await?;
    expect("linked contact", linked.mentor.dynamics_contact_id, Some(contact))?;
    expect("updated_at after linking", linked.mentor.updated_at, at(0))?;
    f.app()
        .set_dynamics_contact(&o, &m1, None)
        .await
        .map_err(err("set_dynamics_contact"))?;
    expect("unlinked", one(f, &o, &m1).await?.mentor.dynamics_contact_id, None)?;
    expect(
        "the other link",
        one(f, &o, &m2).await?.mentor.dynamics_contact_id,
        Some(Uuid::from_u128(2)),
    )
}

async fn lookups(f: &dyn AppFixture, run: &str) -> std::result::Result<(), String> {
    let o = org(f, run, "lookups").await?;
    for (i, member) in [(1, Some("5001")), (2, None), (3, Some("5003"))] {
        put(f, &mentor(&o, &format!("{o}-{i}"), member, 0)).await?;
    }
    let app = f.app();
    let wanted = vec![format!("{o}-1"), format!("{o}-nobody")];
    expect(
        "mentors with an unknown id",
        ids(&app.mentors(&o, &wanted).await.map_err(err("mentors"))?),
        vec![format!("{o}-1")],
    )?;
    let first = app.all_mentors(&o, None, 2).await.map_err(err("all_mentors"))?;
    expect(
        "all_mentors, first 2",
        ids(&first),
        vec![format!("{o}-1"), format!("{o}-2")],
    )?;
    let rest = app
        .all_mentors(&o, Some(&format!("{o}-2")), 2)
        .await
        .map_err(err("all_mentors"))?;
    expect("all_mentors after the second", ids(&rest), vec![format!("{o}-3")])?;
    let mut numbers = ids(&app
        .mentors_by_member_numbers(&o, &["5003".to_owned(), "5001".to_owned(), "9999".to_owned()])
        .await
        .map_err(err("mentors_by_member_numbers"))?);
    numbers.sort();
    expect("by member numbers", numbers, vec![format!("{o}-1"), format!("{o}-3")])?;
    expect(
        "unknown member number",
        app.mentor_by_member_number(&o, "9999")
            .await
            .map_err(err("mentor_by_member_number"))?
            .map(|s| s.mentor.id),
        None,
    )
}

/// The reference store is its own fixture: the app's writes are its `upsert_*` methods.
#[async_trait]
impl AppFixture for crate::db::Store {
    fn app(&self) -> &dyn AppStore {
        self
    }

    async fn add_organisation(&self, id: &str) -> Result<()> {
        self.upsert_organisation(id, id).await
    }

    async fn put_mentor(&self, mentor: &Mentor) -> Result<()> {
        self.upsert_mentor(mentor).await
    }

    async fn put_certification(&self, certification: &Certification) -> Result<()> {
        self.upsert_certification(certification).await
    }
}
