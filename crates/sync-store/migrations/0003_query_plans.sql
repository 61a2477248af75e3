-- Every statement a sync issues is served by an index (issue 15; `cargo test -p sync-engine --test plans` reads the
-- plans on SQLite and PostgreSQL).

-- A mentor's conflicts in every state (the open-conflict index is partial, so it cannot serve removing them all
-- when the mentor's link goes).
CREATE INDEX sync_conflict_mentor ON sync_conflict (organisation_id, record_kind, app_id);
-- The mentor of a posting: checking the foreign key when a mentor row is written or removed.
CREATE INDEX posting_mentor ON posting (mentor_id);
