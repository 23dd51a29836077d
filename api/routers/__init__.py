"""One router per resource, all under /v1 (health and metrics are unversioned)."""
