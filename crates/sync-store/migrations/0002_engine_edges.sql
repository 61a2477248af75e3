-- The events of a year in production (issue 13): a write recorded before it is sent, per-field change times,
-- contacts released by mentors who left, took another member number or lost their contact's scope, and conflicts
-- that close by themselves.

-- The values of a write sent to Dynamics whose answer was not recorded yet (JSON object of app field -> value).
ALTER TABLE sync_link ADD COLUMN pending TEXT;
-- Per field, each side's unsynced value and when it was first seen (JSON).
ALTER TABLE sync_link ADD COLUMN seen TEXT;
-- The app's change time (updated_at) of the record the last decision saw: the same time again means nothing changed
-- in the app since, whatever the clocks of the app and the sync say.
ALTER TABLE sync_link ADD COLUMN app_changed_at BIGINT;

-- Contacts no app mentor claims any more, hidden from the public site by the next runs until that write succeeds.
CREATE TABLE sync_release (
    organisation_id TEXT NOT NULL,
    record_kind     TEXT NOT NULL,
    dynamics_id     TEXT NOT NULL,
    app_id          TEXT NOT NULL,
    etag            TEXT,
    reason          TEXT NOT NULL,
    since           BIGINT NOT NULL,
    attempts        BIGINT NOT NULL,
    last_error      TEXT,
    PRIMARY KEY (organisation_id, record_kind, dynamics_id)
);

-- A conflict settled by both sides coming to agree is closed, like an applied one.
DROP INDEX sync_conflict_open;
CREATE UNIQUE INDEX sync_conflict_open ON sync_conflict (organisation_id, record_kind, app_id, field)
    WHERE state IN ('open', 'resolved');
