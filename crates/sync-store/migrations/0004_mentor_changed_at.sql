-- When each mentor last changed for the sync: the later of its own `updated_at` and its certifications' (issue 15).
-- Kept by the reference schema's writes, so the push reads a page of changed mentors through one index range instead
-- of computing every mentor's change time for each page (a cost that grew with the square of the mentors).
ALTER TABLE peer_mentor ADD COLUMN changed_at BIGINT;
UPDATE peer_mentor SET changed_at = COALESCE(
    (SELECT CASE WHEN MAX(c.updated_at) > peer_mentor.updated_at THEN MAX(c.updated_at) END
     FROM certification c WHERE c.mentor_id = peer_mentor.id),
    updated_at);
CREATE INDEX peer_mentor_changes ON peer_mentor (organisation_id, changed_at, id);
