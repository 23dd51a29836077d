-- When the ingestion stream took a job up (its first transition to running). Written once by
-- records/documents.py (transition to processing keeps the first time); NULL while queued and for
-- jobs that started before this column existed. The warehouse splits a job's time at it into
-- queued seconds (upload -> started) and processing seconds (started -> finished).
ALTER TABLE jobs ADD COLUMN IF NOT EXISTS started_at timestamptz;
