-- Research R-3: the single `failed` status becomes phase-specific.
-- A run that has a Deep Memory job id failed while training; any other failed
-- run failed while generating.
--
-- The whole conversion is one statement (a DO block), so it is atomic however
-- the file is run: `supabase db push` sends a file's statements as one pipeline
-- (an implicit transaction, where a top-level LOCK TABLE is refused with
-- SQLSTATE 25P01), `dmflow migrate` wraps the file in BEGIN/COMMIT, and psql or
-- the dashboard's SQL editor may run each statement on its own. Inside the
-- block the ACCESS EXCLUSIVE lock is allowed and held to the end of the
-- transaction, so the application cannot write a legacy `failed` between the
-- conversion and the new CHECK. Running it again finds no `failed` rows and
-- re-creates the same CHECK: no change.
--
-- No migration in this directory may use BEGIN/COMMIT: under the CLI the
-- history row would be written after the COMMIT, in a transaction of its own.

do $$
declare
    constraint_name text;
begin
    lock table public.deep_memory_training_runs in access exclusive mode;

    -- The application's CHECK may carry a name other than Postgres' default, so
    -- drop every CHECK on the table that mentions the status column.
    for constraint_name in
        select c.conname
        from pg_constraint c
        where c.conrelid = 'public.deep_memory_training_runs'::regclass
          and c.contype = 'c'
          and pg_get_constraintdef(c.oid) ~ '\mstatus\M'
    loop
        execute format('alter table public.deep_memory_training_runs drop constraint %I',
                       constraint_name);
    end loop;

    update public.deep_memory_training_runs
    set status = case
            when nullif(btrim(deeplake_job_id), '') is not null then 'training_failed'
            else 'generating_failed'
        end
    where status = 'failed';

    alter table public.deep_memory_training_runs
        add constraint deep_memory_training_runs_status_check
        check (status in ('generating', 'generated', 'training', 'completed',
                          'generating_failed', 'training_failed'));
end
$$;
