-- The app-side reference schema and the sync state. Written in the SQL that SQLite and PostgreSQL share, so one
-- migration serves both: instants are BIGINT milliseconds since the Unix epoch (UTC), calendar dates are TEXT
-- 'YYYY-MM-DD' (so they compare correctly as text), flags are BIGINT 0/1 (sqlx's Any driver reads no SQLite
-- BOOLEAN), ids are TEXT, structured values are JSON in TEXT.

-- ----- app side (a backend with its own tables implements sync_store::AppStore instead) -----

CREATE TABLE organisation (
    id   TEXT PRIMARY KEY,
    name TEXT NOT NULL
);

CREATE TABLE peer_mentor (
    id                  TEXT PRIMARY KEY,
    organisation_id     TEXT NOT NULL REFERENCES organisation (id),
    member_number       TEXT,
    given_name          TEXT,
    family_name         TEXT,
    email               TEXT,
    phone               TEXT,
    coordinator_email   TEXT,
    dynamics_contact_id TEXT,
    updated_at          BIGINT NOT NULL
);
CREATE INDEX peer_mentor_changed ON peer_mentor (organisation_id, updated_at, id);
CREATE UNIQUE INDEX peer_mentor_member_number ON peer_mentor (organisation_id, member_number);

CREATE TABLE certification (
    id         TEXT PRIMARY KEY,
    mentor_id  TEXT NOT NULL REFERENCES peer_mentor (id),
    kind       TEXT NOT NULL,
    issued_on  TEXT NOT NULL,
    expires_on TEXT NOT NULL,
    revoked_at BIGINT,
    updated_at BIGINT NOT NULL
);
CREATE INDEX certification_mentor ON certification (mentor_id, updated_at);

CREATE TABLE membership (
    mentor_id          TEXT PRIMARY KEY REFERENCES peer_mentor (id),
    status             TEXT,
    membership_type    TEXT,
    paid_until         TEXT,
    contact_state      TEXT,
    source_modified_on BIGINT
);

CREATE TABLE posting (
    id          TEXT PRIMARY KEY,
    mentor_id   TEXT NOT NULL REFERENCES peer_mentor (id),
    amount      TEXT NOT NULL,
    account     TEXT NOT NULL,
    description TEXT,
    approved_at BIGINT,
    exported_at BIGINT
);
CREATE INDEX posting_export ON posting (approved_at, exported_at);

-- ----- sync state -----

-- Per organisation, direction and table: the watermark (pull: Dynamics modifiedon; push: app updated_at) and the
-- change-tracking delta link. Committed only after the rows it covers.
CREATE TABLE sync_watermark (
    organisation_id TEXT NOT NULL,
    direction       TEXT NOT NULL,
    table_name      TEXT NOT NULL,
    watermark       BIGINT,
    delta_link      TEXT,
    updated_at      BIGINT NOT NULL,
    PRIMARY KEY (organisation_id, direction, table_name)
);

-- A linked record: the app row, its Dynamics row, the etag last seen and the shadow (the values both sides last
-- agreed on, as a JSON object of app field -> value).
CREATE TABLE sync_link (
    organisation_id      TEXT NOT NULL,
    record_kind          TEXT NOT NULL,
    app_id               TEXT NOT NULL,
    dynamics_id          TEXT NOT NULL,
    alternate_key        TEXT NOT NULL,
    etag                 TEXT,
    shadow               TEXT NOT NULL,
    visible              BIGINT NOT NULL,
    expires_on           TEXT,
    dynamics_modified_on BIGINT,
    synced_at            BIGINT NOT NULL,
    PRIMARY KEY (organisation_id, record_kind, app_id)
);
CREATE UNIQUE INDEX sync_link_dynamics ON sync_link (organisation_id, record_kind, dynamics_id);
CREATE INDEX sync_link_visible ON sync_link (organisation_id, record_kind, visible, expires_on);

CREATE TABLE sync_run (
    id              TEXT PRIMARY KEY,
    organisation_id TEXT NOT NULL,
    kind            TEXT NOT NULL,
    started_at      BIGINT NOT NULL,
    finished_at     BIGINT,
    status          TEXT NOT NULL,
    error           TEXT,
    metrics         TEXT NOT NULL
);
CREATE INDEX sync_run_recent ON sync_run (organisation_id, started_at);

CREATE TABLE failed_record (
    organisation_id TEXT NOT NULL,
    record_kind     TEXT NOT NULL,
    record_key      TEXT NOT NULL,
    direction       TEXT NOT NULL,
    error           TEXT NOT NULL,
    attempts        BIGINT NOT NULL,
    first_failed_at BIGINT NOT NULL,
    last_failed_at  BIGINT NOT NULL,
    state           TEXT NOT NULL,
    payload         TEXT,
    PRIMARY KEY (organisation_id, record_kind, record_key, direction)
);

CREATE TABLE sync_conflict (
    id                  TEXT PRIMARY KEY,
    organisation_id     TEXT NOT NULL,
    record_kind         TEXT NOT NULL,
    app_id              TEXT NOT NULL,
    field               TEXT NOT NULL,
    shadow_value        TEXT,
    app_value           TEXT NOT NULL,
    dynamics_value      TEXT NOT NULL,
    app_changed_at      BIGINT,
    dynamics_changed_at BIGINT,
    detected_at         BIGINT NOT NULL,
    state               TEXT NOT NULL,
    resolution          TEXT,
    resolved_at         BIGINT,
    resolved_by         TEXT
);
CREATE UNIQUE INDEX sync_conflict_open ON sync_conflict (organisation_id, record_kind, app_id, field) WHERE state <> 'applied';

CREATE TABLE alert (
    id              TEXT PRIMARY KEY,
    organisation_id TEXT NOT NULL,
    cause           TEXT NOT NULL,
    kind            TEXT NOT NULL,
    severity        TEXT NOT NULL,
    message         TEXT NOT NULL,
    state           TEXT NOT NULL,
    raised_at       BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    resolved_at     BIGINT,
    occurrences     BIGINT NOT NULL
);
CREATE UNIQUE INDEX alert_active ON alert (organisation_id, cause) WHERE state <> 'resolved';

CREATE TABLE notification_outbox (
    id              TEXT PRIMARY KEY,
    organisation_id TEXT NOT NULL,
    dedupe_key      TEXT NOT NULL UNIQUE,
    channel         TEXT NOT NULL,
    recipient       TEXT NOT NULL,
    subject         TEXT NOT NULL,
    body            TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    attempts        BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    sent_at         BIGINT,
    last_error      TEXT,
    state           TEXT NOT NULL
);
CREATE INDEX notification_due ON notification_outbox (state, next_attempt_at);

CREATE TABLE certification_cache (
    organisation_id     TEXT NOT NULL,
    mentor_id           TEXT NOT NULL,
    member_number       TEXT,
    status              TEXT NOT NULL,
    expires_on          TEXT,
    show_on_public_site BIGINT NOT NULL,
    as_of               BIGINT NOT NULL,
    PRIMARY KEY (organisation_id, mentor_id)
);

-- One run per organisation at a time. PostgreSQL uses an advisory lock; SQLite this lease row.
CREATE TABLE run_lock (
    organisation_id TEXT PRIMARY KEY,
    holder          TEXT NOT NULL,
    acquired_at     BIGINT NOT NULL,
    expires_at      BIGINT NOT NULL
);
