//! From the app's rows to mapping records and back: the computed certification fields (status by the
//! organisation's local date), the membership fields, and the update the sync writes into the app.

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use field_mapping::{AppRecord, AppValue, RecordMapping};
use sync_store::{Certification, MentorSnapshot, PullUpdate};

use crate::error::{Error, Result};

/// The app fields the engine can read and write. A mapping naming any other field is refused at start.
pub const KNOWN_FIELDS: [&str; 13] = [
    "member_number",
    "given_name",
    "family_name",
    "email",
    "phone",
    "certification_status",
    "certification_expiry",
    "show_on_public_site",
    "app_synced_on",
    "membership_status",
    "membership_type",
    "paid_until",
    "contact_state",
];

/// The field stamped with the time of each write to Dynamics. It never causes a write by itself.
pub const SYNC_STAMP: &str = "app_synced_on";

/// How a failed record's reason starts when the sync looked the mentor up by member number in Dynamics and found no
/// contact (with or without the organisation's contact filter). The CSV export keeps such mentors out of its import
/// files: importing them would create a new contact.
pub const NO_CONTACT_REASON: &str = "no contact in Dynamics";

/// Fields whose failure to sync notifies the mentor's coordinator.
pub(crate) const CERTIFICATION_FIELDS: [&str; 3] =
    ["certification_status", "certification_expiry", "show_on_public_site"];

/// A mentor's certification status on a given local date.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CertificationView {
    /// `active`, `expired`, `revoked` or `none`.
    pub status: &'static str,
    /// The expiry date that status refers to.
    pub expires_on: Option<NaiveDate>,
}

/// The local calendar date of `now` in the organisation's time zone.
pub fn local_today(now: DateTime<Utc>, time_zone: Tz) -> NaiveDate {
    now.with_timezone(&time_zone).date_naive()
}

/// The status on `today`: active while a certification that is not revoked has `expires_on >= today` (the expiry
/// day itself is still valid); otherwise revoked or expired, by the most recent certification; `none` without any.
pub fn certification_view(certifications: &[Certification], today: NaiveDate) -> CertificationView {
    let valid = certifications
        .iter()
        .filter(|c| c.revoked_at.is_none() && c.expires_on >= today)
        .max_by_key(|c| c.expires_on);
    if let Some(valid) = valid {
        return CertificationView {
            status: "active",
            expires_on: Some(valid.expires_on),
        };
    }
    match certifications.iter().max_by_key(|c| (c.expires_on, c.updated_at)) {
        None => CertificationView {
            status: "none",
            expires_on: None,
        },
        Some(latest) => CertificationView {
            status: if latest.revoked_at.is_some() {
                "revoked"
            } else {
                "expired"
            },
            expires_on: Some(latest.expires_on),
        },
    }
}

/// When the app last changed anything about the mentor (the row or any of their certifications).
pub fn changed_at(snapshot: &MentorSnapshot) -> DateTime<Utc> {
    snapshot
        .certifications
        .iter()
        .map(|c| c.updated_at)
        .chain(std::iter::once(snapshot.mentor.updated_at))
        .max()
        .unwrap_or(snapshot.mentor.updated_at)
}

/// When the app last changed the row that holds `field`: the mentor's row for its own fields, the certifications
/// for the certification fields. `newest-wins` compares this (not the mentor's newest change anywhere) with
/// Dynamics' edit of the field.
pub(crate) fn field_changed_at(snapshot: &MentorSnapshot, field: &str) -> DateTime<Utc> {
    match field {
        "certification_status" | "certification_expiry" | "show_on_public_site" => snapshot
            .certifications
            .iter()
            .map(|c| c.updated_at)
            .max()
            .unwrap_or(snapshot.mentor.updated_at),
        _ => snapshot.mentor.updated_at,
    }
}

/// Checks that the mapping's mentor record names only fields the engine knows.
pub(crate) fn check_fields(mapping: &RecordMapping) -> Result<()> {
    match mapping
        .fields()
        .iter()
        .find(|f| !KNOWN_FIELDS.contains(&f.field.as_str()))
    {
        Some(unknown) => Err(Error::Mapping(format!(
            "field `{}` is not one the app knows; use one of {}",
            unknown.field,
            KNOWN_FIELDS.join(", ")
        ))),
        None => Ok(()),
    }
}

fn text(value: Option<&String>) -> AppValue {
    value.map_or(AppValue::Null, |v| AppValue::Text(v.clone()))
}

fn choice(value: Option<&String>) -> AppValue {
    value.map_or(AppValue::Null, |v| AppValue::Choice(v.clone()))
}

/// The app's side of a mentor in mapping terms, with the certification fields as of `today` (the organisation's
/// local date). `app_synced_on` is taken from `shadow`, so it never differs. The CSV fallback exports these values,
/// so the file and the API path always agree on a mentor's status.
pub fn app_record(
    mapping: &RecordMapping,
    snapshot: &MentorSnapshot,
    today: NaiveDate,
    shadow: Option<&AppRecord>,
) -> AppRecord {
    let mentor = &snapshot.mentor;
    let membership = snapshot.membership.as_ref();
    let view = certification_view(&snapshot.certifications, today);
    let mut record = AppRecord::new();
    for spec in mapping.fields() {
        let value = match spec.field.as_str() {
            "member_number" => text(mentor.member_number.as_ref()),
            "given_name" => text(mentor.given_name.as_ref()),
            "family_name" => text(mentor.family_name.as_ref()),
            "email" => text(mentor.email.as_ref()),
            "phone" => text(mentor.phone.as_ref()),
            "certification_status" => AppValue::Choice(view.status.to_owned()),
            "certification_expiry" => view.expires_on.map_or(AppValue::Null, AppValue::Date),
            "show_on_public_site" => AppValue::Bool(view.status == "active"),
            SYNC_STAMP => shadow
                .and_then(|s| s.get(SYNC_STAMP))
                .cloned()
                .unwrap_or(AppValue::Null),
            "membership_status" => choice(membership.and_then(|m| m.status.as_ref())),
            "membership_type" => choice(membership.and_then(|m| m.membership_type.as_ref())),
            "paid_until" => membership
                .and_then(|m| m.paid_until)
                .map_or(AppValue::Null, AppValue::Date),
            "contact_state" => choice(membership.and_then(|m| m.contact_state.as_ref())),
            _ => continue,
        };
        record.insert(spec.field.clone(), spec.normalise(&value));
    }
    record
}

fn as_text(value: &AppValue) -> Option<String> {
    match value {
        AppValue::Text(t) | AppValue::Choice(t) => Some(t.clone()),
        _ => None,
    }
}

fn as_date(value: &AppValue) -> Option<NaiveDate> {
    match value {
        AppValue::Date(d) => Some(*d),
        _ => None,
    }
}

/// The update that writes Dynamics' values of the given fields into the app.
pub(crate) fn pull_update(values: &[(String, AppValue)], modified_on: Option<DateTime<Utc>>) -> PullUpdate {
    let mut update = PullUpdate::default();
    let mut membership = false;
    for (field, value) in values {
        match field.as_str() {
            "given_name" => update.given_name = Some(as_text(value)),
            "family_name" => update.family_name = Some(as_text(value)),
            "email" => update.email = Some(as_text(value)),
            "phone" => update.phone = Some(as_text(value)),
            "membership_status" => update.membership_status = Some(as_text(value)),
            "membership_type" => update.membership_type = Some(as_text(value)),
            "paid_until" => update.paid_until = Some(as_date(value)),
            "contact_state" => update.contact_state = Some(as_text(value)),
            // Written only when the mapping lets Dynamics own the number (the member was renumbered there).
            "member_number" => update.member_number = Some(as_text(value)),
            // Certification fields are the app's own; nothing to write back.
            _ => continue,
        }
        if matches!(
            field.as_str(),
            "membership_status" | "membership_type" | "paid_until" | "contact_state"
        ) {
            membership = true;
        }
    }
    if membership {
        update.source_modified_on = modified_on;
    }
    update
}

/// Whether a shadow says Dynamics shows the mentor as active or on the public site (the time rule's question).
pub(crate) fn shows_as_visible(shadow: &AppRecord) -> bool {
    shadow.get("show_on_public_site") == Some(&AppValue::Bool(true))
        || shadow.get("certification_status") == Some(&AppValue::Choice("active".to_owned()))
}

/// The certification expiry a shadow records.
pub(crate) fn shadow_expiry(shadow: &AppRecord) -> Option<NaiveDate> {
    shadow.get("certification_expiry").and_then(as_date)
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn cert(expires: (i32, u32, u32), revoked: bool) -> Certification {
        Certification {
            id: format!("c{expires:?}"),
            mentor_id: "m".into(),
            kind: "likeperson".into(),
            issued_on: NaiveDate::from_ymd_opt(2024, 1, 1).unwrap(),
            expires_on: NaiveDate::from_ymd_opt(expires.0, expires.1, expires.2).unwrap(),
            revoked_at: revoked.then(|| Utc.with_ymd_and_hms(2026, 2, 1, 12, 0, 0).unwrap()),
            updated_at: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
        }
    }

    #[track_caller]
    fn check(certs: &[Certification], today: (i32, u32, u32), expected: &str) {
        let today = NaiveDate::from_ymd_opt(today.0, today.1, today.2).unwrap();
        assert_eq!(
            certification_view(certs, today).status,
            expected,
            "{certs:?} on {today}"
        );
    }

    #[test]
    fn status_follows_the_local_date_and_revocation() {
        check(&[], (2026, 3, 1), "none");
        check(&[cert((2026, 3, 29), false)], (2026, 3, 29), "active");
        check(&[cert((2026, 3, 29), false)], (2026, 3, 30), "expired");
        check(&[cert((2027, 1, 1), true)], (2026, 3, 1), "revoked");
        check(
            &[cert((2026, 1, 1), false), cert((2027, 1, 1), false)],
            (2026, 6, 1),
            "active",
        );
        check(
            &[cert((2026, 1, 1), false), cert((2027, 1, 1), true)],
            (2026, 6, 1),
            "revoked",
        );
        check(
            &[cert((2027, 1, 1), true), cert((2026, 12, 31), false)],
            (2026, 6, 1),
            "active",
        );
    }

    #[track_caller]
    fn check_today(utc: &str, expected: (i32, u32, u32)) {
        let now: DateTime<Utc> = utc.parse().unwrap();
        let expected = NaiveDate::from_ymd_opt(expected.0, expected.1, expected.2).unwrap();
        assert_eq!(local_today(now, chrono_tz::Europe::Oslo), expected, "{utc}");
    }

    #[test]
    fn the_local_date_changes_at_oslo_midnight_across_daylight_saving() {
        // Winter: UTC+1.
        check_today("2026-01-14T22:59:59Z", (2026, 1, 14));
        check_today("2026-01-14T23:00:00Z", (2026, 1, 15));
        // Summer: UTC+2.
        check_today("2026-07-14T21:59:59Z", (2026, 7, 14));
        check_today("2026-07-14T22:00:00Z", (2026, 7, 15));
        // The nights of the changes.
        check_today("2026-03-28T22:59:59Z", (2026, 3, 28));
        check_today("2026-03-28T23:00:00Z", (2026, 3, 29));
        check_today("2026-10-24T21:59:59Z", (2026, 10, 24));
        check_today("2026-10-24T22:00:00Z", (2026, 10, 25));
    }
}
