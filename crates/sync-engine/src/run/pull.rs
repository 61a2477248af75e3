//! Pull: what changed in Dynamics since the last run, into the app.
//!
//! With change tracking (the table has it and the configuration allows it) the delta is read unfiltered, so
//! deletions are seen, and an organisation's entity filter is applied by asking Dynamics which of the page's
//! relevant rows (linked ones, and unlinked ones whose member number an app mentor has) match it: one extra request
//! for the page (its GETs grouped in one `$batch`), none for the rows no mentor cares about. A linked contact that no longer matches, or that is
//! deactivated, leaves the sync (its membership ends in the app and the contact is released). Without change
//! tracking, a `modifiedon` watermark with an overlap window is read with the filter, and a second read of the rows
//! that changed outside it finds the linked contacts that left it; deletions are then not visible to the pull.

use std::collections::{BTreeMap, BTreeSet};

use dynamics_client::{Change, ChangeRead, Filter, Literal, Order, Query, Row};
use futures::StreamExt;
use sync_store::{Direction, Link, MentorSnapshot, Watermark};
use tracing::{info, warn};
use uuid::Uuid;

use super::record::Why;
use super::{Run, Subject};
use crate::decide::{LinkStatus, in_scope, link_status};
use crate::error::Result;
use crate::record::changed_at;
use crate::service::MENTOR;

/// What is known about a page's rows and the organisation's entity filter.
#[derive(Debug, Clone, Copy)]
enum FilterAnswer<'f> {
    /// No filter, or the rows were read with it.
    Matched,
    /// The rows were read without the filter: ask Dynamics which match it.
    Ask(&'f str),
    /// The rows were read as not matching it.
    Outside,
}

impl Run<'_> {
    pub(super) async fn pull(&mut self) -> Result<()> {
        let table = self.svc.mapping.table().to_owned();
        let filter = self.svc.organisation.filters.get(&table).cloned();
        let watermark = self.svc.store.watermark(self.org(), Direction::Pull, &table).await?;
        if self.svc.sync.change_tracking && self.change_tracking {
            self.pull_tracked(&table, filter.as_deref(), watermark).await
        } else {
            self.pull_modified(&table, filter.as_deref(), watermark).await
        }
    }

    async fn pull_tracked(&mut self, table: &str, filter: Option<&str>, watermark: Watermark) -> Result<()> {
        let select = self.select();
        let query = Query::new(self.svc.mapping.entity_set()).select(&select);
        let client = self.svc.client.clone();
        // A delta link from another instance (the instance URL changed) cannot be followed: start over.
        let api_base = client.api_base().as_str().to_owned();
        // A delta link keeps the columns it was made with: after a mapping change or under schema drift it would
        // read the wrong ones, so it is followed only when its columns are the ones read now.
        let delta_link = watermark.delta_link.as_deref().filter(|link| {
            let ours = link.starts_with(&api_base);
            if !ours {
                warn!(org = %self.org(), "the stored delta link is for another Dynamics instance; reading every contact again");
            }
            let same_columns = selected_columns(link) == select.iter().cloned().collect::<BTreeSet<_>>();
            if ours && !same_columns {
                warn!(org = %self.org(), "the columns read changed since the delta link was made; reading every contact again");
            }
            ours && same_columns
        });
        // A full read (no usable delta link) returns the rows that exist and says nothing of the ones deleted since
        // the last delta: the links it does not return are checked once it is complete.
        let mut full_read = delta_link.is_none();
        let mut stream = match delta_link {
            Some(link) => match client.changes_since(link).await.map_err(|e| self.dynamics(e))? {
                ChangeRead::Changes(stream) => stream,
                ChangeRead::FullResyncNeeded => {
                    warn!(org = %self.org(), "the change-tracking token expired; reading every contact again (full resync)");
                    self.metrics.full_resyncs += 1;
                    full_read = true;
                    client.track_changes(&query).map_err(|e| self.dynamics(e))?
                }
            },
            None => client.track_changes(&query).map_err(|e| self.dynamics(e))?,
        };
        // The ids a full read returned, in arrival order until the last page, then sorted: 16 bytes a contact, half a
        // B-tree set's size, and no ordered insert of a random id for every contact.
        let mut seen: Vec<Uuid> = Vec::new();
        let answer = filter.map_or(FilterAnswer::Matched, FilterAnswer::Ask);
        while let Some(page) = stream.next().await {
            let page = page.map_err(|e| self.dynamics(e))?;
            self.keep_lock().await?;
            let mut rows = Vec::new();
            for change in page.changes {
                match change {
                    Change::Upsert(row) => {
                        if full_read && let Some(id) = self.row_id(&row) {
                            seen.push(id);
                        }
                        rows.push(row);
                    }
                    Change::Deleted(id) => self.pull_deletion(id).await?,
                }
            }
            self.pull_rows(rows, answer).await?;
            if full_read && page.delta_link.is_some() {
                seen.sort_unstable();
                seen.dedup();
                self.linked_but_unseen(&seen).await?;
            }
            // Writes gather across pages into full batches; the delta link (on the last page) is saved only once
            // every write before it is done.
            if self.pending.len() >= self.sizer.size() || page.delta_link.is_some() {
                self.flush().await?;
            }
            // Under schema drift nothing is written, so the delta link stays where it was: the changes it would
            // skip are read again once the drift is fixed.
            if let Some(link) = page.delta_link {
                let mark = Watermark {
                    delta_link: Some(link),
                    ..Watermark::default()
                };
                self.save_watermark(Direction::Pull, table, mark).await?;
            }
        }
        Ok(())
    }

    async fn pull_modified(&mut self, table: &str, filter: Option<&str>, watermark: Watermark) -> Result<()> {
        let mapping = &self.svc.mapping;
        let select = self.select();
        let since = watermark
            .at
            .map(|at| at - chrono::Duration::from_std(self.svc.sync.overlap).unwrap_or_default());
        let mut query = Query::new(mapping.entity_set())
            .select(&select)
            .order_by(mapping.modified_on(), Order::Asc)
            .order_by(mapping.primary_id(), Order::Asc);
        if let Some(filter) = filter {
            query = query.filter(Filter::raw(filter));
        }
        if let Some(since) = since {
            query = query.filter(Filter::ge(mapping.modified_on(), Literal::DateTime(since)));
        }
        let mut pages = Box::pin(self.svc.client.pages::<Row>(&query));
        let mut mark = watermark.at;
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.dynamics(e))?;
            self.keep_lock().await?;
            let newest = page.rows.iter().filter_map(|r| self.meta(r).ok()?.modified_on).max();
            self.pull_rows(page.rows, FilterAnswer::Matched).await?;
            mark = mark.max(newest);
            if self.pending.len() >= self.sizer.size() {
                self.flush().await?;
            }
            // The watermark moves only when every write of the pages it covers is done.
            if self.pending.is_empty() {
                self.save_watermark(
                    Direction::Pull,
                    table,
                    Watermark {
                        at: mark,
                        ..Watermark::default()
                    },
                )
                .await?;
            }
        }
        drop(pages);
        if let (Some(filter), Some(since)) = (filter, since) {
            self.pull_left_filter(filter, since, &select).await?;
        }
        self.flush().await?;
        self.save_watermark(
            Direction::Pull,
            table,
            Watermark {
                at: mark,
                ..Watermark::default()
            },
        )
        .await
    }

    /// Rows changed since `since` that do not match the filter: the linked ones left it.
    async fn pull_left_filter(
        &mut self,
        filter: &str,
        since: chrono::DateTime<chrono::Utc>,
        select: &[String],
    ) -> Result<()> {
        let mapping = &self.svc.mapping;
        let query = Query::new(mapping.entity_set())
            .select(select)
            .filter(Filter::raw(filter).not())
            .filter(Filter::ge(mapping.modified_on(), Literal::DateTime(since)));
        let mut pages = Box::pin(self.svc.client.pages::<Row>(&query));
        while let Some(page) = pages.next().await {
            let page = match page {
                Ok(page) => page,
                Err(e) if e.is_run_level() => return Err(self.dynamics(e)),
                Err(e) => {
                    // Some filters cannot be negated (query functions such as `In`): say so and go on.
                    warn!(org = %self.org(), error = %e, "cannot read the contacts that left the entity filter; they are found once change tracking is used");
                    return Ok(());
                }
            };
            self.keep_lock().await?;
            self.pull_rows(page.rows, FilterAnswer::Outside).await?;
        }
        Ok(())
    }

    /// Moves a watermark or the delta link. Not in a dry run, and not under schema drift: nothing was written then,
    /// so the changes it would pass over must be read again once writes are possible.
    pub(super) async fn save_watermark(&self, direction: Direction, table: &str, mark: Watermark) -> Result<()> {
        if !self.apply() || !self.writes_enabled {
            return Ok(());
        }
        Ok(self
            .svc
            .store
            .set_watermark(self.org(), direction, table, &mark, self.now)
            .await?)
    }

    /// After a full read: the linked contacts it did not return were deleted while no delta link could tell (the
    /// token expired during a long outage, or the link was unusable). Each is checked in bulk, and the ones Dynamics
    /// no longer has are handled as deletions, before the new delta link is saved. `seen` is sorted.
    async fn linked_but_unseen(&mut self, seen: &[Uuid]) -> Result<()> {
        let mut unseen = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = self
                .svc
                .store
                .link_ids_page(self.org(), MENTOR, after.as_deref(), 1000)
                .await?;
            let Some((last, _)) = page.last() else { break };
            after = Some(last.clone());
            let full = page.len() == 1000;
            unseen.extend(
                page.into_iter()
                    .filter(|(_, id)| seen.binary_search(id).is_err())
                    .map(|(_, id)| id),
            );
            if !full {
                break;
            }
        }
        if unseen.is_empty() {
            return Ok(());
        }
        let primary_id = self.svc.mapping.primary_id().to_owned();
        let present = self.rows_by_id(&unseen, &[primary_id]).await?;
        for id in unseen.into_iter().filter(|id| !present.contains_key(id)) {
            info!(org = %self.org(), contact = %id, "a linked contact was deleted in Dynamics while no delta could tell; handling it as a deletion");
            self.pull_deletion(id).await?;
        }
        Ok(())
    }

    async fn pull_deletion(&mut self, id: Uuid) -> Result<()> {
        if self.apply() {
            // A released contact that is deleted needs no hiding.
            self.cancel_release(id).await?;
        }
        if let Some(link) = self.svc.store.link_by_dynamics_id(self.org(), MENTOR, id).await? {
            let subject = Subject {
                app_id: link.app_id.clone(),
                member_number: None,
                coordinator: None,
            };
            let outcome = self.deleted(link).await;
            self.isolate(&subject, Direction::Pull, false, outcome).await?;
        }
        Ok(())
    }

    /// Applies a page of changed contacts. First the links that no longer stand end (their mentors left or took
    /// another member number), so their contacts can be taken; then each linked contact is decided (or leaves the
    /// sync's scope), and each unlinked contact whose member number an app mentor has is linked.
    async fn pull_rows(&mut self, rows: Vec<Row>, answer: FilterAnswer<'_>) -> Result<()> {
        let mut metas = Vec::with_capacity(rows.len());
        for row in rows {
            self.metrics.pull.read += 1;
            match self.meta(&row) {
                Ok(meta) => metas.push((meta, row)),
                Err(reason) => warn!(org = %self.org(), reason = %reason, "skipping a malformed row"),
            }
        }
        let ids: Vec<Uuid> = metas.iter().map(|(m, _)| m.id).collect();
        let mut links: BTreeMap<Uuid, Link> = self
            .svc
            .store
            .links_by_dynamics_ids(self.org(), MENTOR, &ids)
            .await?
            .into_iter()
            .map(|l| (l.dynamics_id, l))
            .collect();
        let linked_ids: Vec<String> = links.values().map(|l| l.app_id.clone()).collect();
        let mut by_app_id: BTreeMap<String, MentorSnapshot> = self
            .svc
            .app
            .mentors(self.org(), &linked_ids)
            .await?
            .into_iter()
            .map(|s| (s.mentor.id.clone(), s))
            .collect();
        let etags: BTreeMap<Uuid, Option<String>> = metas.iter().map(|(m, _)| (m.id, m.etag.clone())).collect();

        // Links that no longer stand end first.
        let ending: Vec<(Link, LinkStatus)> = links
            .values()
            .map(|link| {
                let mentor = by_app_id.get(&link.app_id).map(|s| s.mentor.member_number.as_deref());
                (link.clone(), link_status(link, mentor))
            })
            .filter(|(_, status)| *status != LinkStatus::Stands)
            .collect();
        for (mut link, status) in ending {
            links.remove(&link.dynamics_id);
            link.etag = etags.get(&link.dynamics_id).cloned().flatten().or(link.etag);
            let subject = Subject {
                app_id: link.app_id.clone(),
                member_number: None,
                coordinator: None,
            };
            let outcome = match status {
                LinkStatus::MentorGone => self.mentor_gone(link).await,
                _ => {
                    let etag = link.etag.clone();
                    self.release(&link, etag, Why::Renumbered).await
                }
            };
            self.isolate(&subject, Direction::Pull, false, outcome).await?;
        }

        // Unlinked rows are matched to mentors by member number.
        let keys: Vec<String> = metas
            .iter()
            .filter(|(m, _)| !links.contains_key(&m.id))
            .filter_map(|(m, _)| m.key.clone())
            .collect();
        let mut by_key: BTreeMap<String, MentorSnapshot> = self
            .svc
            .app
            .mentors_by_member_numbers(self.org(), &keys)
            .await?
            .into_iter()
            .filter_map(|s| Some((s.mentor.member_number.clone()?, s)))
            .collect();
        let key_app_ids: Vec<String> = by_key.values().map(|s| s.mentor.id.clone()).collect();
        let own_links: BTreeMap<String, Link> = self
            .svc
            .store
            .links(self.org(), MENTOR, &key_app_ids)
            .await?
            .into_iter()
            .map(|l| (l.app_id.clone(), l))
            .collect();

        let matching = match answer {
            FilterAnswer::Ask(filter) => {
                let relevant: Vec<Uuid> = metas
                    .iter()
                    .filter(|(m, _)| {
                        links.contains_key(&m.id) || m.key.as_ref().is_some_and(|k| by_key.contains_key(k))
                    })
                    .map(|(m, _)| m.id)
                    .collect();
                Some(self.matching(filter, &relevant).await?)
            }
            FilterAnswer::Matched | FilterAnswer::Outside => None,
        };
        let matches = |id: Uuid| match answer {
            FilterAnswer::Matched => None,
            FilterAnswer::Outside => Some(false),
            FilterAnswer::Ask(_) => Some(matching.as_ref().is_some_and(|m| m.contains(&id))),
        };

        for (meta, row) in metas {
            if let Some(link) = links.remove(&meta.id) {
                let Some(snapshot) = by_app_id.remove(&link.app_id) else {
                    continue;
                };
                if self.touched.is_decided(&snapshot.mentor.id) {
                    continue;
                }
                if link.etag.is_some()
                    && link.etag == meta.etag
                    && link.pending.is_none()
                    && link.app_changed_at == Some(changed_at(&snapshot))
                    && matches(meta.id) != Some(false)
                {
                    // Seen before (the overlap window reads some rows twice) and unchanged on both sides.
                    self.metrics.pull.skipped += 1;
                    continue;
                }
                let subject = Subject::of(&snapshot);
                let outcome = self
                    .with_row(snapshot, link, &row, Direction::Pull, matches(meta.id), false)
                    .await;
                self.isolate(&subject, Direction::Pull, false, outcome).await?;
                continue;
            }
            let Some(snapshot) = meta.key.as_ref().and_then(|k| by_key.remove(k)) else {
                // A contact that is not a mentor of this organisation: none of the sync's business.
                self.metrics.pull.skipped += 1;
                continue;
            };
            if self.touched.is_decided(&snapshot.mentor.id) {
                continue;
            }
            let subject = Subject::of(&snapshot);
            let outcome = self
                .link_found(
                    snapshot,
                    own_links.get(&subject.app_id).cloned(),
                    &row,
                    matches(meta.id),
                )
                .await;
            self.isolate(&subject, Direction::Pull, false, outcome).await?;
        }
        self.settle().await?;
        self.report_progress();
        Ok(())
    }

    /// An unlinked contact carries the member number of an app mentor: link them, unless the mentor's own link to
    /// another contact stands or the contact is outside the sync's scope.
    async fn link_found(
        &mut self,
        snapshot: MentorSnapshot,
        own: Option<Link>,
        row: &Row,
        matches_filter: Option<bool>,
    ) -> Result<()> {
        if let Some(own) = own {
            match link_status(&own, Some(snapshot.mentor.member_number.as_deref())) {
                // The mentor's link stands (Dynamics renumbered its contact; this is another member now holding
                // the number): nothing to link.
                LinkStatus::Stands => {
                    self.metrics.pull.skipped += 1;
                    return Ok(());
                }
                LinkStatus::Renumbered | LinkStatus::MentorGone => {
                    let etag = own.etag.clone();
                    self.release(&own, etag, Why::Renumbered).await?;
                }
            }
        }
        let read = match self.read(row) {
            Ok(read) => read,
            Err(reason) => {
                return self
                    .queue_failure(&Subject::of(&snapshot), Direction::Pull, &reason, false)
                    .await;
            }
        };
        if !in_scope(&self.svc.mapping, &read.values, matches_filter) {
            self.metrics.pull.skipped += 1;
            return Ok(());
        }
        self.decide(snapshot, None, Some(read), Direction::Pull, false).await
    }

    /// Which of `ids` match the organisation's entity filter, asked of Dynamics in bulk.
    pub(super) async fn matching(&self, filter: &str, ids: &[Uuid]) -> Result<BTreeSet<Uuid>> {
        let mapping = &self.svc.mapping;
        let query = Query::new(mapping.entity_set())
            .select(&[mapping.primary_id()])
            .filter(Filter::raw(filter));
        let ids: Vec<String> = ids.iter().map(Uuid::to_string).collect();
        let rows = self
            .svc
            .client
            .rows_in(&query, mapping.primary_id(), &ids)
            .await
            .map_err(|e| self.dynamics(e))?;
        Ok(rows
            .iter()
            .filter_map(|row| self.meta(row).ok())
            .map(|m| m.id)
            .collect())
    }
}

/// The `$select` columns of a delta link.
fn selected_columns(link: &str) -> BTreeSet<String> {
    url::Url::parse(link)
        .ok()
        .and_then(|url| {
            url.query_pairs()
                .find(|(name, _)| name == "$select")
                .map(|(_, value)| value.split(',').map(str::to_owned).collect())
        })
        .unwrap_or_default()
}
