-- A mentor by its organisation and id (issue 15). The store names mentors as `organisation_id = ? AND id IN (...)`;
-- with only the primary key on `id`, SQLite (which has no statistics for a table filled since the last ANALYZE, as in
-- a first sync) served that through an index on `organisation_id` alone and read every mentor of the organisation
-- for each statement, so a first sync's cost grew with the square of its mentors. This index serves both terms, and
-- a page of mentors in id order.
CREATE UNIQUE INDEX peer_mentor_key ON peer_mentor (organisation_id, id);
-- Read by nothing since `peer_mentor_changes` (0004), and covering the guard of a pulled update
-- (`... AND updated_at = ...`), which made SQLite prefer it to the index above for that statement.
DROP INDEX peer_mentor_changed;
