-- Research R-3: the single `failed` status becomes phase-specific.
-- A run that has a Deep Memory job id failed while training; any other failed
-- run failed while generating.
--
-- The file runs in one transaction (Supabase CLI and `dmflow migrate` both do
-- that), and the ACCESS EXCLUSIVE lock keeps the application from writing a
-- legacy `failed` between the conversion and the new CHECK. Running it again
-- finds no `failed` rows and re-creates the same CHECK: no change.

lock table public.deep_memory_training_runs in access exclusive mode;

-- The application's CHECK may carry a name other than Postgres' default, so
-- drop every CHECK on the table that mentions the status column.
do $$
declare
    constraint_name text;
begin
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
end
$$;

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
