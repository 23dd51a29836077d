-- Study records of students, on the user's shard (shard_for(user_id)), written only by
-- records/study.py. Quiz attempts keep one row per attempt; each answered item is in `answers`.
ALTER TABLE quiz_attempts ADD COLUMN IF NOT EXISTS document_id uuid;
ALTER TABLE quiz_attempts ADD COLUMN IF NOT EXISTS version integer;
ALTER TABLE quiz_attempts ADD CONSTRAINT quiz_attempts_score_check CHECK (score >= 0 AND score <= max_score);
CREATE INDEX IF NOT EXISTS quiz_attempts_quiz_idx ON quiz_attempts (user_id, quiz_id, created_at);

-- FSRS state of one student's card: the scheduler's own JSON, and its next due time.
CREATE TABLE IF NOT EXISTS card_states (
    user_id    uuid NOT NULL,
    card_id    text NOT NULL,
    course_id  uuid NOT NULL,
    state      jsonb NOT NULL,
    due        timestamptz NOT NULL,
    reviews    integer NOT NULL DEFAULT 0 CHECK (reviews >= 0),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, card_id)
);
CREATE INDEX IF NOT EXISTS card_states_due_idx ON card_states (user_id, course_id, due);

-- Every review, keyed by a client-chosen id so a retried POST records it once.
CREATE TABLE IF NOT EXISTS card_reviews (
    id          uuid PRIMARY KEY,
    user_id     uuid NOT NULL,
    card_id     text NOT NULL,
    course_id   uuid NOT NULL,
    rating      smallint NOT NULL CHECK (rating BETWEEN 1 AND 4),
    reviewed_at timestamptz NOT NULL,
    due_before  timestamptz,
    due_after   timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS card_reviews_user_idx ON card_reviews (user_id, reviewed_at);
