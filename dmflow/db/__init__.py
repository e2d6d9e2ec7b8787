"""Database plumbing: migrations, the embedded local PostgreSQL, connection resolution."""
