"""The run store: every read and write of runs, pairs and the chunk ledger.

`base` holds the protocol; `postgres` and `supabase` the adapters, imported where one
is chosen (`dmflow.database.open_store`), so that a command that only reads settings
does not load psycopg and httpx.
"""
