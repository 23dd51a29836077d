-- The warehouse's tables. Every fact and dimension is a ReplacingMergeTree keyed by its ORDER BY:
-- a reload of the same rows (a re-run, an overlapping watermark, a Kafka redelivery) collapses to
-- one row per key, and the analyst views read with FINAL. Times are DateTime64(3, 'UTC')
-- (chdb keeps the zone of DateTime64 in Native output, not of DateTime).

-- One row per course (PostgreSQL courses, course shard). Version: the row's updated_at.
CREATE TABLE IF NOT EXISTS dim_courses (
    course_id   String,
    title       String,
    owner_id    String,
    shard       UInt16,
    created_at  DateTime64(3, 'UTC'),
    updated_at  DateTime64(3, 'UTC')
) ENGINE = ReplacingMergeTree(updated_at)
ORDER BY course_id;

-- One row per document version (PostgreSQL documents, course shard).
CREATE TABLE IF NOT EXISTS dim_documents (
    document_id  String,
    version      UInt32,
    course_id    String,
    filename     String,
    size_bytes   UInt64,
    status       LowCardinality(String),
    pages        Nullable(UInt32),
    chunks       Nullable(UInt32),
    error        Nullable(String),
    uploaded_by  String,
    created_at   DateTime64(3, 'UTC'),
    updated_at   DateTime64(3, 'UTC')
) ENGINE = ReplacingMergeTree(updated_at)
ORDER BY (course_id, document_id, version);

-- One row per ingestion job (PostgreSQL jobs joined to the document version it processed).
-- queued_at is the upload; searchable_at / indexed_at the outcome's time when it succeeded
-- (the stream writes LanceDB and silver in the same micro-batch, so both are the same instant
-- here); started_at stays NULL: PostgreSQL keeps the start and then the outcome in the same
-- job row, so the start time is gone by the time a finished job is loaded.
CREATE TABLE IF NOT EXISTS fact_ingestion_jobs (
    job_id            String,
    kind              LowCardinality(String),
    course_id         String,
    document_id       String,
    version           Nullable(UInt32),
    user_id           String,
    outcome           LowCardinality(String),
    queued_at         DateTime64(3, 'UTC'),
    started_at        Nullable(DateTime64(3, 'UTC')),
    searchable_at     Nullable(DateTime64(3, 'UTC')),
    indexed_at        Nullable(DateTime64(3, 'UTC')),
    finished_at       Nullable(DateTime64(3, 'UTC')),
    pages             Nullable(UInt32),
    chunks            Nullable(UInt32),
    queued_seconds    Nullable(Float64),
    processing_seconds Nullable(Float64),
    total_seconds     Nullable(Float64),
    failure_reason    Nullable(String),
    updated_at        DateTime64(3, 'UTC')
) ENGINE = ReplacingMergeTree(updated_at)
PARTITION BY toYYYYMM(queued_at)
ORDER BY (course_id, job_id);

-- One row per quiz item answered (PostgreSQL quiz_attempts.answers, user shard). Immutable rows.
CREATE TABLE IF NOT EXISTS fact_quiz_attempts (
    attempt_id        String,
    item_id           String,
    position          UInt16,
    user_id           String,
    course_id         String,
    quiz_id           String,
    document_id       String,
    version           UInt32,
    attempted_at      DateTime64(3, 'UTC'),
    chosen_option_id  Nullable(String),
    correct_option_id String,
    correct           UInt8,
    seconds           Nullable(Float64),
    attempt_score     Float64,
    attempt_max_score Float64
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(attempted_at)
ORDER BY (course_id, quiz_id, attempt_id, item_id);

-- One row per flashcard review (PostgreSQL card_reviews, user shard) with the card's FSRS state
-- as of the load (stability, difficulty, state of card_states).
CREATE TABLE IF NOT EXISTS fact_reviews (
    review_id       String,
    user_id         String,
    card_id         String,
    course_id       String,
    rating          UInt8,
    reviewed_at     DateTime64(3, 'UTC'),
    due_before      Nullable(DateTime64(3, 'UTC')),
    due_after       DateTime64(3, 'UTC'),
    scheduled_days  Float64,
    card_state      LowCardinality(String),
    card_stability  Nullable(Float64),
    card_difficulty Nullable(Float64),
    card_reviews    UInt32,
    state_updated_at DateTime64(3, 'UTC')
) ENGINE = ReplacingMergeTree(state_updated_at)
PARTITION BY toYYYYMM(reviewed_at)
ORDER BY (course_id, user_id, review_id);

-- One row per analytics event from Kafka (analytics.events): searches (result count, top score),
-- note views, quiz starts and attempts, sampled request latencies. Keyed by the event id.
CREATE TABLE IF NOT EXISTS fact_api_events (
    event_id      String,
    name          LowCardinality(String),
    occurred_at   DateTime64(3, 'UTC'),
    user_id       Nullable(String),
    course_id     Nullable(String),
    result_count  Nullable(UInt32),
    top_score     Nullable(Float64),
    latency_ms    Nullable(Float64),
    properties    String,
    kafka_partition UInt32,
    kafka_offset  UInt64
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (name, toDate(occurred_at), event_id);

-- Quiz items from the lake (gold/quiz_items, read with delta-rs): the options and the key that
-- item analysis needs. Version: the Delta table version the row was read at.
CREATE TABLE IF NOT EXISTS dim_quiz_items (
    item_id           String,
    quiz_id           String,
    document_id       String,
    version           Int32,
    course_id         String,
    generator         String,
    generator_version String,
    run_at            DateTime64(6, 'UTC'),
    position          Int32,
    kind              String,
    question          String,
    options           String,
    correct_option_id String,
    explanation       String,
    source_chunk_id   String,
    page              Int32,
    section_id        String,
    difficulty        String,
    fact              String,
    delta_version     UInt64
) ENGINE = ReplacingMergeTree(delta_version)
ORDER BY (course_id, quiz_id, item_id);

-- What each load did (one row per source per run), for operators.
CREATE TABLE IF NOT EXISTS warehouse_operations (
    run_id      String,
    source      String,
    started_at  DateTime64(3, 'UTC'),
    seconds     Float64,
    rows        UInt64,
    dead_letters UInt64,
    watermark   String,
    status      LowCardinality(String),
    detail      String
) ENGINE = MergeTree
PARTITION BY toYYYYMM(started_at)
ORDER BY (source, started_at);

-- The high-water mark of each source: "pg:<shard>:<table>" -> updated_at (ISO), "delta:<table>"
-- -> the Delta version loaded. The newest row per source wins (version: its sequence number).
CREATE TABLE IF NOT EXISTS load_watermarks (
    source   String,
    value    String,
    sequence UInt64
) ENGINE = ReplacingMergeTree(sequence)
ORDER BY source;
