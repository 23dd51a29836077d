"""PostgreSQL records: one module per family of rows, each the only writer of its tables."""
