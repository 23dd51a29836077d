"""Orchestration adapters: the platform's side of Airflow (its REST API)."""
