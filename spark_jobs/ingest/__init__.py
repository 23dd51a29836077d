"""The ingestion job's steps, one concept per module; ``spark_jobs.ingest_documents`` wires the stream.

- ``events``: upload events from a micro-batch: parsing, dead-letter reasons, outcome event ids;
- ``documents``: the immutable values the steps pass along (opened, parsed, embedded, failed);
- ``raw``: reading raw uploads, transient errors retried with backoff, permanent ones classified;
- ``pages``: page ranges of the parallel extraction;
- ``extract`` / ``embed``: the Spark jobs (and their task closures) of extraction and embedding;
- ``progress``: pages done and ETA per document while chunks are embedded;
- ``writes``: the keyed writes to bronze, silver and LanceDB;
- ``status_sinks``: where progress and outcomes go (Redis job status, Kafka outcome events);
- ``heartbeat``: the stream's readiness signal in Redis and its reader ``stream_is_ready``;
- ``batch``: the foreachBatch handler running the steps in order.
"""
