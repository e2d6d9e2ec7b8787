"""The run store: every read and write of runs, pairs and the chunk ledger."""

from dmflow.store.base import RunStore
from dmflow.store.postgres import PostgresRunStore
from dmflow.store.supabase import SupabaseRunStore

__all__ = ["PostgresRunStore", "RunStore", "SupabaseRunStore"]
