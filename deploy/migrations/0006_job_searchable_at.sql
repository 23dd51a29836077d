-- When the ingestion stream made a job's document searchable (text first: chunks and the
-- full-text index written, embeddings pending). Written once by records/documents.py
-- (mark_searchable) while the job runs; NULL before that, and for jobs that finished before
-- this column existed (the warehouse then takes the indexed time, an upper bound).
ALTER TABLE jobs ADD COLUMN IF NOT EXISTS searchable_at timestamptz;
