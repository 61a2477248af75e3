//! Contacts read in bulk: mentors whose contact must be read afresh (a retry, a resolution, a write whose outcome is
//! unknown) and mentors with no contact yet, looked up by member number. They gather across pages of app rows (up to
//! 5,000) and go out as `In` queries grouped in one `$batch` ([`dynamics_client::DynamicsClient::rows_in`]), never
//! one request per mentor.

use std::collections::{BTreeMap, BTreeSet};

use dynamics_client::{Filter, Query, Row};
use sync_store::{Direction, Link, MentorSnapshot};
use uuid::Uuid;

use super::record::Why;
use super::{Run, Subject};
use crate::decide::{Claim, LinkStatus, claim, in_scope, link_status};
use crate::error::Result;
use crate::service::MENTOR;

/// A mentor waiting for its contact.
#[derive(Debug, Clone)]
pub(crate) enum Need {
    /// No contact yet: look it up by member number (already checked to be a valid key).
    Lookup(MentorSnapshot),
    /// Read its linked contact afresh and decide against it.
    Reread(MentorSnapshot, Box<Link>),
}

impl Run<'_> {
    /// Reads or looks up every waiting mentor's contact in bulk, then decides each (its problems isolated). Deciding
    /// may queue more (a renumbered mentor is looked up again), so this runs until nothing waits.
    pub(super) async fn resolve_needs(&mut self) -> Result<()> {
        while !self.needs.is_empty() {
            let needs = std::mem::take(&mut self.needs);
            let mut lookups = Vec::new();
            let mut rereads = Vec::new();
            for need in needs {
                match need {
                    Need::Lookup(snapshot) => lookups.push(snapshot),
                    Need::Reread(snapshot, link) => rereads.push((snapshot, *link)),
                }
            }
            self.reread_all(rereads).await?;
            self.look_up_all(lookups).await?;
        }
        Ok(())
    }

    fn filter(&self) -> Option<String> {
        self.svc.organisation.filters.get(self.svc.mapping.table()).cloned()
    }

    async fn reread_all(&mut self, items: Vec<(MentorSnapshot, Link)>) -> Result<()> {
        if items.is_empty() {
            return Ok(());
        }
        let ids: Vec<Uuid> = items.iter().map(|(_, l)| l.dynamics_id).collect();
        let rows = self.rows_by_id(&ids, &self.select()).await?;
        // With an entity filter, Dynamics says which of them still match it.
        let matching = match self.filter() {
            Some(filter) => {
                let found: Vec<Uuid> = rows.keys().copied().collect();
                Some(self.matching(&filter, &found).await?)
            }
            None => None,
        };
        for (snapshot, link) in items {
            let subject = Subject::of(&snapshot);
            let outcome = match rows.get(&link.dynamics_id) {
                None => self.deleted(link).await,
                Some(row) => {
                    let matches = matching.as_ref().map(|m| m.contains(&link.dynamics_id));
                    self.with_row(snapshot, link, row, Direction::Push, matches, false)
                        .await
                }
            };
            self.isolate(&subject, Direction::Push, false, outcome).await?;
        }
        Ok(())
    }

    /// The contacts with these ids that still exist, read in bulk (a few GETs in one `$batch`), by id.
    pub(super) async fn rows_by_id<S: AsRef<str>>(&self, ids: &[Uuid], select: &[S]) -> Result<BTreeMap<Uuid, Row>> {
        let mapping = &self.svc.mapping;
        let ids: Vec<String> = ids.iter().map(Uuid::to_string).collect();
        let query = Query::new(mapping.entity_set()).select(select);
        let rows = self
            .svc
            .client
            .rows_in(&query, mapping.primary_id(), &ids)
            .await
            .map_err(|e| self.dynamics(e))?;
        Ok(rows
            .into_iter()
            .filter_map(|row| Some((self.meta(&row).ok()?.id, row)))
            .collect())
    }

    async fn look_up_all(&mut self, items: Vec<MentorSnapshot>) -> Result<()> {
        if items.is_empty() {
            return Ok(());
        }
        let mapping = &self.svc.mapping;
        let key_column = mapping.alternate_key().column.clone();
        let key_field = mapping.alternate_key().read_key();
        let numbers: Vec<String> = items
            .iter()
            .filter_map(|s| s.mentor.member_number.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let mut query = Query::new(mapping.entity_set()).select(&self.select());
        if let Some(filter) = self.filter() {
            query = query.filter(Filter::raw(filter));
        }
        let rows = self
            .svc
            .client
            .rows_in(&query, &key_column, &numbers)
            .await
            .map_err(|e| self.dynamics(e))?;
        // Dataverse compares text case-insensitively, so the numbers are matched the same way.
        let by_number: BTreeMap<String, Row> = rows
            .into_iter()
            .filter_map(|row| {
                let number = row.get(&key_field)?.as_str()?.to_lowercase();
                Some((number, row))
            })
            .collect();
        // The links already on the contacts found, and whether they still stand.
        let found: Vec<Uuid> = by_number
            .values()
            .filter_map(|row| self.meta(row).ok())
            .map(|m| m.id)
            .collect();
        let held: BTreeMap<Uuid, Link> = self
            .svc
            .store
            .links_by_dynamics_ids(self.org(), MENTOR, &found)
            .await?
            .into_iter()
            .map(|l| (l.dynamics_id, l))
            .collect();
        let holders: Vec<String> = held.values().map(|l| l.app_id.clone()).collect();
        let holder_numbers: BTreeMap<String, Option<String>> = self
            .svc
            .app
            .mentors(self.org(), &holders)
            .await?
            .into_iter()
            .map(|s| (s.mentor.id, s.mentor.member_number))
            .collect();
        for snapshot in items {
            let subject = Subject::of(&snapshot);
            let row = snapshot
                .mentor
                .member_number
                .as_ref()
                .and_then(|n| by_number.get(&n.to_lowercase()));
            let outcome = match row {
                None => {
                    let reason = if self.filter().is_some() {
                        "no contact in Dynamics that matches the organisation's contact filter has the mentor's member number; check the member number in the app or the contact in Dynamics"
                    } else {
                        "no contact in Dynamics has the mentor's member number; check the member number in the app or register the member in Dynamics"
                    };
                    self.queue_failure(&subject, Direction::Push, reason, true).await
                }
                Some(row) => {
                    let row = row.clone();
                    self.take_contact(snapshot, &row, &held, &holder_numbers).await
                }
            };
            self.isolate(&subject, Direction::Push, false, outcome).await?;
        }
        Ok(())
    }

    /// A mentor found its contact: take it, unless another mentor's link to it still stands.
    async fn take_contact(
        &mut self,
        snapshot: MentorSnapshot,
        row: &Row,
        held: &BTreeMap<Uuid, Link>,
        holder_numbers: &BTreeMap<String, Option<String>>,
    ) -> Result<()> {
        let subject = Subject::of(&snapshot);
        let read = match self.read(row) {
            Ok(read) => read,
            Err(reason) => return self.queue_failure(&subject, Direction::Push, &reason, true).await,
        };
        if !in_scope(&self.svc.mapping, &read.values, None) {
            let reason = "the contact with the mentor's member number is deactivated in Dynamics; reactivate it or correct the member number";
            return self.queue_failure(&subject, Direction::Push, reason, true).await;
        }
        // The link on the contact now (an earlier mentor of this page may have taken it over meanwhile).
        let existing = match held.get(&read.meta.id) {
            Some(link) => self
                .svc
                .store
                .link_by_dynamics_id(self.org(), MENTOR, link.dynamics_id)
                .await?
                .filter(|current| current.app_id == link.app_id),
            None => None,
        };
        let status = existing.as_ref().map(|other| {
            let number = holder_numbers.get(&other.app_id).map(Option::as_deref);
            link_status(other, number)
        });
        match (claim(status), existing) {
            (Claim::Free, _) | (_, None) => {}
            (Claim::TakeOver, Some(other)) => {
                // The other mentor left the app or took another number: the contact passes to this mentor. It is
                // released first, so it is hidden should this mentor not take it after all; linking it cancels that.
                tracing::info!(org = %self.org(), mentor = %subject.app_id, previous = %other.app_id, contact = %other.dynamics_id, "the contact passes to the mentor who now has its member number");
                let why = match status {
                    Some(LinkStatus::MentorGone) => Why::MentorGone,
                    _ => Why::Renumbered,
                };
                self.release(&other, other.etag.clone(), why).await?;
            }
            (Claim::Taken, Some(other)) => {
                let reason = format!(
                    "the contact with the mentor's member number is linked to mentor {}; two mentors cannot share one member: correct the member number of one of them",
                    other.app_id
                );
                return self.queue_failure(&subject, Direction::Push, &reason, true).await;
            }
        }
        self.decide(snapshot, None, Some(read), Direction::Push, false).await
    }
}
