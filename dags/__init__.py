"""Airflow DAG files: orchestration only (TaskFlow, catchup off, retries, docs); tasks call into
the project's modules, which build their own Settings at run time."""
