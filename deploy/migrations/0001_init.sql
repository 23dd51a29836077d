-- Every shard database has the same schema; a row lives only on the shard its key hashes to.
--   user shard   (shard_for(user_id)):        users, enrolments, quiz_attempts
--   email shard  (shard_for(lower(email))):   email_index
--   course shard (shard_for(course_id)):      courses, course_members, documents, jobs with a course
--   code shard   (shard_for(join_code)):      join_codes
-- Ids are UUIDs generated in the application, so the shard is known before the insert.

CREATE TABLE IF NOT EXISTS users (
    id            uuid PRIMARY KEY,
    email         text NOT NULL UNIQUE,
    password_hash text NOT NULL,
    role          text NOT NULL CHECK (role IN ('student', 'instructor', 'admin')),
    display_name  text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);

-- Written before the user row: login by email reads this shard, then the user's shard.
CREATE TABLE IF NOT EXISTS email_index (
    email      text PRIMARY KEY,
    user_id    uuid NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS enrolments (
    user_id   uuid NOT NULL,
    course_id uuid NOT NULL,
    role      text NOT NULL CHECK (role IN ('student', 'instructor')),
    joined_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, course_id)
);

CREATE TABLE IF NOT EXISTS courses (
    id          uuid PRIMARY KEY,
    title       text NOT NULL,
    description text NOT NULL DEFAULT '',
    owner_id    uuid NOT NULL,
    join_code   text NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- The membership check of every course-scoped endpoint reads only this shard.
CREATE TABLE IF NOT EXISTS course_members (
    course_id uuid NOT NULL REFERENCES courses (id) ON DELETE CASCADE,
    user_id   uuid NOT NULL,
    role      text NOT NULL CHECK (role IN ('student', 'instructor')),
    joined_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (course_id, user_id)
);

CREATE TABLE IF NOT EXISTS join_codes (
    code       text PRIMARY KEY,
    course_id  uuid NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS documents (
    id          uuid NOT NULL,
    course_id   uuid NOT NULL REFERENCES courses (id) ON DELETE CASCADE,
    version     integer NOT NULL DEFAULT 1 CHECK (version >= 1),
    filename    text NOT NULL,
    sha256      text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    size_bytes  bigint NOT NULL CHECK (size_bytes >= 0),
    object_key  text NOT NULL,
    status      text NOT NULL DEFAULT 'uploaded',
    pages       integer,
    chunks      integer,
    error       text,
    uploaded_by uuid NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (id, version),
    UNIQUE (course_id, sha256, version)
);
CREATE INDEX IF NOT EXISTS documents_course_idx ON documents (course_id, created_at);

-- Durable record of a job; Redis holds the live view (core/jobs.py).
CREATE TABLE IF NOT EXISTS jobs (
    id          uuid PRIMARY KEY,
    kind        text NOT NULL,
    user_id     uuid NOT NULL,
    course_id   uuid,
    document_id uuid,
    status      text NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'failed')),
    pages_done  integer NOT NULL DEFAULT 0,
    pages_total integer,
    error       text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS jobs_user_idx ON jobs (user_id, created_at);

CREATE TABLE IF NOT EXISTS quiz_attempts (
    id         uuid PRIMARY KEY,
    user_id    uuid NOT NULL,
    course_id  uuid NOT NULL,
    quiz_id    text NOT NULL,
    score      numeric NOT NULL,
    max_score  numeric NOT NULL,
    answers    jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS quiz_attempts_user_idx ON quiz_attempts (user_id, created_at);
