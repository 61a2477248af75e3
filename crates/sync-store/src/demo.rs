//! Demo data for the embedded default (`sync-worker demo`): HLF's mentors with certifications in every state, a
//! few whose member numbers Dynamics does not know, and another organisation's mentors that must never reach HLF's
//! Dynamics. Deterministic: the same spec gives the same rows.

use chrono::{DateTime, Duration, NaiveDate, Utc};

use crate::db::Store;
use crate::error::Result;
use crate::model::{Certification, Mentor};

/// What to seed.
#[derive(Debug, Clone)]
pub struct DemoSpec {
    /// HLF's organisation id.
    pub organisation_id: String,
    /// The other organisation's id.
    pub other_organisation_id: String,
    /// The first member number; mentors take consecutive numbers from here (matching the emulator's generator).
    pub first_member_number: u32,
    /// How many HLF mentors have a contact in Dynamics.
    pub mentors: u32,
    /// The local date the demo treats as today.
    pub today: NaiveDate,
    /// The time the app rows were last changed.
    pub now: DateTime<Utc>,
}

impl DemoSpec {
    /// The id of the `index`-th mentor seeded for `organisation` (HLF's mentors without a contact come after its
    /// `mentors`). Ids never carry the member number: they appear in logs, member numbers must not.
    pub fn mentor_id(&self, organisation: &str, index: u32) -> String {
        match index.checked_sub(self.mentors) {
            Some(n) if organisation == self.organisation_id => format!("{organisation}-mentor-unregistered-{}", n + 1),
            _ => format!("{organisation}-mentor-{:04}", index + 1),
        }
    }
}

/// What was seeded, for the demo's summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DemoSummary {
    /// HLF mentors with a valid certification.
    pub valid: u32,
    /// Whose certification expires today (valid until midnight, suppressed by the next nightly run).
    pub expiring_today: u32,
    /// Whose certification has expired.
    pub expired: u32,
    /// Whose certification was revoked.
    pub revoked: u32,
    /// Without any certification.
    pub uncertified: u32,
    /// HLF mentors whose member number Dynamics does not know.
    pub unknown_in_dynamics: u32,
    /// The other organisation's mentors.
    pub other_organisation: u32,
}

const GIVEN: [&str; 10] = [
    "Kari", "Ola", "Ingrid", "Per", "Anne", "Lars", "Sigrid", "Nils", "Åse", "Bjørn",
];
const FAMILY: [&str; 10] = [
    "Nordmann",
    "Hansen",
    "Johansen",
    "Olsen",
    "Larsen",
    "Andersen",
    "Pedersen",
    "Nilsen",
    "Kristiansen",
    "Ødegård",
];
const REGIONS: [&str; 4] = ["oslo", "vest", "midt", "nord"];

impl Store {
    /// Seeds the demo's app-side data.
    pub async fn seed_demo(&self, spec: &DemoSpec) -> Result<DemoSummary> {
        self.upsert_organisation(&spec.organisation_id, "Hørselshemmedes Landsforbund (demo)")
            .await?;
        self.upsert_organisation(&spec.other_organisation_id, "En annen organisasjon (demo)")
            .await?;
        let mut summary = DemoSummary::default();
        for i in 0..spec.mentors {
            let member = spec.first_member_number + i;
            let expires = match i % 10 {
                0 => Some((spec.today - Duration::days(20), false)),
                1 => Some((spec.today, false)),
                2 => Some((spec.today + Duration::days(400), true)),
                3 => None,
                _ => Some((spec.today + Duration::days(200 + i64::from(i) * 3), false)),
            };
            match (i % 10, expires) {
                (0, _) => summary.expired += 1,
                (1, _) => summary.expiring_today += 1,
                (2, _) => summary.revoked += 1,
                (3, _) => summary.uncertified += 1,
                _ => summary.valid += 1,
            }
            self.seed_mentor(spec, &spec.organisation_id, member, i, expires)
                .await?;
        }
        for (n, member) in [899_990u32, 899_991].into_iter().enumerate() {
            let index = spec.mentors + u32::try_from(n).unwrap_or(0);
            let expires = Some((spec.today + Duration::days(365), false));
            self.seed_mentor(spec, &spec.organisation_id, member, index, expires)
                .await?;
            summary.unknown_in_dynamics += 1;
        }
        for i in 0..10 {
            // Same member numbers as HLF's first mentors: only organisation scoping keeps them apart.
            let expires = Some((spec.today + Duration::days(365), false));
            self.seed_mentor(
                spec,
                &spec.other_organisation_id,
                spec.first_member_number + i,
                i,
                expires,
            )
            .await?;
            summary.other_organisation += 1;
        }
        Ok(summary)
    }

    async fn seed_mentor(
        &self,
        spec: &DemoSpec,
        organisation: &str,
        member: u32,
        index: u32,
        certification: Option<(NaiveDate, bool)>,
    ) -> Result<()> {
        let id = spec.mentor_id(organisation, index);
        let pick =
            |list: &[&str], salt: u32| list[usize::try_from((index + salt) % 10).unwrap_or(0) % list.len()].to_owned();
        self.upsert_mentor(&Mentor {
            id: id.clone(),
            organisation_id: organisation.to_owned(),
            member_number: Some(member.to_string()),
            given_name: Some(pick(&GIVEN, 0)),
            family_name: Some(pick(&FAMILY, 3)),
            email: Some(format!("member{member}@example.invalid")),
            phone: None,
            coordinator_email: Some(format!("koordinator.{}@hlf.example", pick(&REGIONS, 0))),
            dynamics_contact_id: None,
            updated_at: spec.now,
        })
        .await?;
        if let Some((expires_on, revoked)) = certification {
            self.upsert_certification(&Certification {
                id: format!("{id}-cert"),
                mentor_id: id,
                kind: "likeperson".to_owned(),
                issued_on: expires_on - Duration::days(730),
                expires_on,
                revoked_at: revoked.then_some(spec.now - Duration::days(3)),
                updated_at: spec.now,
            })
            .await?;
        }
        Ok(())
    }
}
