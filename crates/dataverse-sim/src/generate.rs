//! The scale-mode generator: many contacts (some of them peer mentors) from a seed, for benchmarks.

use chrono::{Duration, NaiveDate};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde_json::{Map, Value, json};

/// How many rows to generate, and from which seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GenerateSpec {
    /// Contacts to create.
    pub contacts: usize,
    /// How many of them are peer mentors (with a certification status and expiry).
    pub mentors: usize,
    /// The seed: the same seed gives the same rows, ids included.
    pub seed: u64,
}

const GIVEN: [&str; 12] = [
    "Kari", "Ola", "Ingrid", "Per", "Anne", "Lars", "Sigrid", "Nils", "Marit", "Jon", "Hilde", "Odd",
];
const FAMILY: [&str; 12] = [
    "Nordmann", "Hansen", "Johansen", "Olsen", "Larsen", "Andersen", "Pedersen", "Nilsen", "Berg", "Haugen", "Dahl",
    "Lie",
];

/// Generates the contact rows (member numbers from 500000 upwards).
pub(crate) fn contacts(spec: &GenerateSpec) -> Vec<Map<String, Value>> {
    let mut rng = StdRng::seed_from_u64(spec.seed);
    let base = NaiveDate::from_ymd_opt(2026, 1, 1).unwrap_or_default();
    (0..spec.contacts)
        .map(|i| {
            let mut id_bytes = [0u8; 16];
            rng.fill(&mut id_bytes[..]);
            let id = uuid::Builder::from_random_bytes(id_bytes).into_uuid();
            let given = GIVEN[rng.random_range(0..GIVEN.len())];
            let family = FAMILY[rng.random_range(0..FAMILY.len())];
            let mentor = i < spec.mentors;
            let expiry = base + Duration::days(rng.random_range(-400..800));
            let paid = base + Duration::days(rng.random_range(-365..365));
            let status = if mentor { json!(if rng.random_bool(0.1) { 100000002 } else { 100000000 }) } else { json!(100000003) };
            let row = json!({
                "contactid": id.to_string(),
                "firstname": given,
                "lastname": family,
                "emailaddress1": format!("member{}@example.invalid", 500000 + i),
                "mobilephone": format!("+47 4{:07}", rng.random_range(0..10_000_000u32)),
                "statecode": 0,
                "statuscode": 1,
                "hlf_membernumber": (500000 + i).to_string(),
                "hlf_peermentorstatus": status,
                "hlf_certificationexpiry": if mentor { json!(expiry.format("%Y-%m-%d").to_string()) } else { Value::Null },
                "hlf_showonpublicsite": mentor,
                "hlf_membershipstatus": 100000000 + rng.random_range(0..3),
                "hlf_membershiptype": 100000000 + rng.random_range(0..4),
                "hlf_paiduntil": paid.format("%Y-%m-%d").to_string(),
            });
            let Value::Object(m) = row else { return Map::new() };
            m
        })
        .collect()
}
