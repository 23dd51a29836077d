-- The reshard_guard triggers of 0004 cost about 40 us per written row (to_jsonb + a registry
-- lookup) on every write, always. They matter only while a reshard moves keys, so the mover
-- (db/reshard.py) creates them on the old shards when a move starts (under the same table locks
-- that pause writes while it registers the keys) and drops them when its cleanup ends. The
-- function reshard_guard() stays, defined by 0004.
DROP TRIGGER IF EXISTS reshard_guard ON users;
DROP TRIGGER IF EXISTS reshard_guard ON email_index;
DROP TRIGGER IF EXISTS reshard_guard ON enrolments;
DROP TRIGGER IF EXISTS reshard_guard ON quiz_attempts;
DROP TRIGGER IF EXISTS reshard_guard ON card_states;
DROP TRIGGER IF EXISTS reshard_guard ON card_reviews;
DROP TRIGGER IF EXISTS reshard_guard ON courses;
DROP TRIGGER IF EXISTS reshard_guard ON course_members;
DROP TRIGGER IF EXISTS reshard_guard ON join_codes;
DROP TRIGGER IF EXISTS reshard_guard ON documents;
DROP TRIGGER IF EXISTS reshard_guard ON jobs;
