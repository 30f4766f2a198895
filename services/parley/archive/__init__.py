"""Long-term history in PostgreSQL (or CockroachDB): every committed entry of
every room, kept beyond what the room logs retain."""
