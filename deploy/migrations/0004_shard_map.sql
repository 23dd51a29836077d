-- The shard map the data was written with, recorded on every shard (core/shard_map.py reads it,
-- db/reshard.py changes it). One row. `databases` is the map keys route by; while a reshard is
-- `moving`, `other_databases` is the map it moves to; in `cleanup` (switched, old copies not
-- yet deleted) it is the map it came from. Identities are host:port/database, never passwords.
CREATE TABLE IF NOT EXISTS shard_map (
    singleton       boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    version         integer NOT NULL CHECK (version >= 1),
    databases       text[] NOT NULL,
    state           text NOT NULL CHECK (state IN ('stable', 'moving', 'cleanup')),
    other_databases text[],
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- Keys a reshard moves away from this shard: `pending` (still served here) or `moved` (copied
-- to shard `target`, verified; this shard's copy is read-only until the cleanup deletes it).
CREATE TABLE IF NOT EXISTS reshard_keys (
    key        text PRIMARY KEY,
    target     integer NOT NULL CHECK (target >= 0),
    state      text NOT NULL CHECK (state IN ('pending', 'moved')),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- The write fence of a move: a write to a row whose key is registered waits while the mover
-- holds the key's registry row (FOR UPDATE, one batch's copy) and is refused once the key is
-- `moved` (its rows now live on the target shard; the caller retries and is routed there).
-- The mover itself sets lakehouse.reshard_mover = on. TG_ARGV names the row's key column(s).
CREATE OR REPLACE FUNCTION reshard_guard() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    r jsonb;
    k text;
    s text;
    t integer;
BEGIN
    IF coalesce(current_setting('lakehouse.reshard_mover', true), '') = 'on' THEN
        RETURN coalesce(NEW, OLD);
    END IF;
    IF TG_OP = 'DELETE' THEN r := to_jsonb(OLD); ELSE r := to_jsonb(NEW); END IF;
    k := coalesce(r ->> TG_ARGV[0], r ->> TG_ARGV[1]);
    SELECT state, target INTO s, t FROM reshard_keys WHERE key = k FOR SHARE;
    IF s = 'moved' THEN
        RAISE EXCEPTION 'key % of % moved to shard % by a reshard; retry the write', k, TG_TABLE_NAME, t
            USING ERRCODE = '55000';
    END IF;
    RETURN coalesce(NEW, OLD);
END
$$;

CREATE OR REPLACE TRIGGER reshard_guard BEFORE INSERT OR UPDATE OR DELETE ON users
    FOR EACH ROW EXECUTE FUNCTION reshard_guard('id');
CREATE OR REPLACE TRIGGER reshard_guard BEFORE INSERT OR UPDATE OR DELETE ON email_index
    FOR EACH ROW EXECUTE FUNCTION reshard_guard('email');
CREATE OR REPLACE TRIGGER reshard_guard BEFORE INSERT OR UPDATE OR DELETE ON enrolments
    FOR EACH ROW EXECUTE FUNCTION reshard_guard('user_id');
CREATE OR REPLACE TRIGGER reshard_guard BEFORE INSERT OR UPDATE OR DELETE ON quiz_attempts
    FOR EACH ROW EXECUTE FUNCTION reshard_guard('user_id');
CREATE OR REPLACE TRIGGER reshard_guard BEFORE INSERT OR UPDATE OR DELETE ON card_states
    FOR EACH ROW EXECUTE FUNCTION reshard_guard('user_id');
CREATE OR REPLACE TRIGGER reshard_guard BEFORE INSERT OR UPDATE OR DELETE ON card_reviews
    FOR EACH ROW EXECUTE FUNCTION reshard_guard('user_id');
CREATE OR REPLACE TRIGGER reshard_guard BEFORE INSERT OR UPDATE OR DELETE ON courses
    FOR EACH ROW EXECUTE FUNCTION reshard_guard('id');
CREATE OR REPLACE TRIGGER reshard_guard BEFORE INSERT OR UPDATE OR DELETE ON course_members
    FOR EACH ROW EXECUTE FUNCTION reshard_guard('course_id');
CREATE OR REPLACE TRIGGER reshard_guard BEFORE INSERT OR UPDATE OR DELETE ON join_codes
    FOR EACH ROW EXECUTE FUNCTION reshard_guard('code');
CREATE OR REPLACE TRIGGER reshard_guard BEFORE INSERT OR UPDATE OR DELETE ON documents
    FOR EACH ROW EXECUTE FUNCTION reshard_guard('course_id');
-- A job lives on its course's shard, or its user's when it has no course.
CREATE OR REPLACE TRIGGER reshard_guard BEFORE INSERT OR UPDATE OR DELETE ON jobs
    FOR EACH ROW EXECUTE FUNCTION reshard_guard('course_id', 'user_id');
