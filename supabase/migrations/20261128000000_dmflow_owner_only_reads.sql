-- dmflow: who may read what through Supabase's API roles.
--
-- Before, anon (the public key of every Supabase app) and authenticated could read
-- every run without an owner - every run the CLI and the deployments create - with
-- its pairs (whose chunk_preview quotes the document), ledger reasons, error
-- messages and dataset paths. Now:
--   anon           reads nothing;
--   authenticated  reads its own runs (user_id = auth.uid()) with their pairs,
--                  ledger and its own settings;
--   service_role   everything (it bypasses row-level security), as before.
-- Runs without an owner are for service_role only. Safe to re-run.

do $$
declare
    tables text := 'public.deep_memory_training_runs, public.deep_memory_training_pairs, '
                   'public.deep_memory_training_chunks, public.deep_memory_settings';
begin
    if to_regrole('anon') is null or to_regrole('authenticated') is null
       or to_regprocedure('auth.uid()') is null then
        return;  -- a plain PostgreSQL: no API roles, its owner keeps every privilege
    end if;
    execute 'revoke all on ' || tables || ' from anon';
    execute 'revoke all on ' || tables || ' from authenticated';
    execute 'grant select on ' || tables || ' to authenticated';

    drop policy if exists dmflow_read_runs on public.deep_memory_training_runs;
    create policy dmflow_read_runs on public.deep_memory_training_runs
        for select to authenticated
        using (user_id is not null and user_id = (select auth.uid()));

    drop policy if exists dmflow_read_pairs on public.deep_memory_training_pairs;
    create policy dmflow_read_pairs on public.deep_memory_training_pairs
        for select to authenticated
        using (exists (select 1 from public.deep_memory_training_runs r
                       where r.id = training_run_id
                         and r.user_id is not null and r.user_id = (select auth.uid())));

    drop policy if exists dmflow_read_chunks on public.deep_memory_training_chunks;
    create policy dmflow_read_chunks on public.deep_memory_training_chunks
        for select to authenticated
        using (exists (select 1 from public.deep_memory_training_runs r
                       where r.id = training_run_id
                         and r.user_id is not null and r.user_id = (select auth.uid())));

    drop policy if exists dmflow_read_settings on public.deep_memory_settings;
    create policy dmflow_read_settings on public.deep_memory_settings
        for select to authenticated
        using (user_id is not null and user_id = (select auth.uid()));
end
$$;
