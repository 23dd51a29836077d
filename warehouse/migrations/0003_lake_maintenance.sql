-- What lake maintenance did: one row per table per step per run (lakehouse lake maintain and the
-- maintain_lake DAG). Files and bytes are the table's live data files (Delta snapshot, LanceDB
-- data fragments) and, for the hygiene steps, everything stored under the table (logs,
-- checkpoints, files kept for time travel). A re-recorded run collapses on its key.
CREATE TABLE IF NOT EXISTS fact_lake_maintenance (
    run_id        String,
    table_name    String,
    step          LowCardinality(String),
    started_at    DateTime64(3, 'UTC'),
    seconds       Float64,
    files_before  UInt64,
    files_after   UInt64,
    bytes_before  UInt64,
    bytes_after   UInt64,
    rows          UInt64,
    table_version Int64,
    detail        String
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(started_at)
ORDER BY (table_name, step, run_id);
