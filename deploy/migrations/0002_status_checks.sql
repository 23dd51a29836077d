-- Document status is a closed set (core/documents.py DocumentStatus); the database holds the
-- same values so no writer can invent one. 'uploaded' was the old default of a new row.
UPDATE documents SET status = 'queued' WHERE status = 'uploaded';
ALTER TABLE documents ALTER COLUMN status SET DEFAULT 'queued';
ALTER TABLE documents DROP CONSTRAINT IF EXISTS documents_status_check;
ALTER TABLE documents ADD CONSTRAINT documents_status_check
    CHECK (status IN ('queued', 'processing', 'indexed', 'failed', 'superseded'));
-- jobs.status already has its CHECK (0001); job retries find a document's latest job by this.
CREATE INDEX IF NOT EXISTS jobs_document_idx ON jobs (document_id, created_at);
-- The file name as sent, kept only as data; `filename` is the normalised display name.
ALTER TABLE documents ADD COLUMN IF NOT EXISTS original_filename text;
