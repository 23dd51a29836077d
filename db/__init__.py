"""Operations on the PostgreSQL shards as a whole (resharding)."""
