-- dmflow: run lifecycle columns, the chunk ledger, idempotent pairs, the
-- one-unfinished-run-per-dataset rule, and the SQL functions every writer
-- (psycopg or Supabase REST rpc) goes through.
--
-- Errors raised by the functions carry dmflow's own SQLSTATEs so both adapters
-- can turn them into the same Python exceptions; DETAIL holds JSON facts.
--   DMB01 run blocked   DMN01 run not found   DMC01 concurrent update
--   DMD01 not deletable DMV01 invalid batch

-- 1. Run columns ------------------------------------------------------------
alter table public.deep_memory_training_runs
    add column if not exists attempt integer not null default 0,
    add column if not exists heartbeat_at timestamptz,
    add column if not exists flow_run_id uuid,
    add column if not exists params jsonb not null default '{}'::jsonb,
    add column if not exists usage jsonb not null default '{}'::jsonb,
    add column if not exists updated_at timestamptz not null default now();

create unique index if not exists deep_memory_training_runs_flow_run_id_key
    on public.deep_memory_training_runs (flow_run_id)
    where flow_run_id is not null;

create or replace function public.dmflow_set_updated_at()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
    new.updated_at := now();
    return new;
end
$$;

create or replace trigger deep_memory_training_runs_set_updated_at
    before update on public.deep_memory_training_runs
    for each row execute function public.dmflow_set_updated_at();

-- 2. At most one unfinished run per dataset ---------------------------------
do $$
declare
    offenders text;
begin
    select string_agg(format('%s: %s', dataset, run_list), E'\n')
    into offenders
    from (
        select dataset,
               string_agg(format('%s (%s)', id, status), ', ' order by created_at) as run_list
        from public.deep_memory_training_runs
        where status <> 'completed'
        group by dataset
        having count(*) > 1
    ) as t;
    if offenders is not null then
        raise exception 'cannot add the one-unfinished-run-per-dataset rule: these datasets have more than one unfinished run'
            using detail = offenders,
                  hint = 'Keep one unfinished run per dataset: delete the failed runs you no longer need (dmflow delete RUN_ID), then run the migration again.';
    end if;
end
$$;

create unique index if not exists deep_memory_training_runs_one_unfinished_per_dataset
    on public.deep_memory_training_runs (dataset)
    where status <> 'completed';

-- 3. Idempotent pairs -------------------------------------------------------
alter table public.deep_memory_training_pairs
    add column if not exists question_hash text
        generated always as (md5(question_text)) stored;

-- Rows that repeat (run, chunk, question) are one pair stored twice; keep the
-- oldest so the idempotency key can exist.
delete from public.deep_memory_training_pairs p
using public.deep_memory_training_pairs q
where p.training_run_id = q.training_run_id
  and p.chunk_id = q.chunk_id
  and p.question_hash = q.question_hash
  and (p.created_at, p.id) > (q.created_at, q.id);

create unique index if not exists deep_memory_training_pairs_idempotency_key
    on public.deep_memory_training_pairs (training_run_id, chunk_id, question_hash);

-- 4. The chunk ledger -------------------------------------------------------
create table if not exists public.deep_memory_training_chunks (
    training_run_id uuid not null
        references public.deep_memory_training_runs (id) on delete cascade,
    chunk_id text not null,
    outcome text not null check (outcome in ('done', 'skipped')),
    reason text,
    pair_count integer not null default 0 check (pair_count >= 0),
    created_at timestamptz not null default now(),
    primary key (training_run_id, chunk_id),
    check (outcome = 'done' or reason is not null)
);

alter table public.deep_memory_training_chunks enable row level security;

-- 5. Settings: one row per owner, runs without an owner share one row -------
alter table public.deep_memory_settings
    drop constraint if exists deep_memory_settings_user_id_key;
create unique index if not exists deep_memory_settings_user_id_key
    on public.deep_memory_settings (user_id) nulls not distinct;

-- 6. Functions --------------------------------------------------------------
create or replace function public.dmflow_raise_missing_or_moved(p_run_id uuid)
returns void
language plpgsql
set search_path = ''
as $$
declare
    current_run public.deep_memory_training_runs;
begin
    select * into current_run from public.deep_memory_training_runs where id = p_run_id;
    if not found then
        raise exception 'training run % does not exist', p_run_id
            using errcode = 'DMN01', detail = json_build_object('run_id', p_run_id)::text;
    end if;
    raise exception 'training run % was changed by someone else (now % at attempt %)',
            p_run_id, current_run.status, current_run.attempt
        using errcode = 'DMC01',
              detail = json_build_object('run_id', p_run_id, 'status', current_run.status,
                                         'attempt', current_run.attempt)::text;
end
$$;

create or replace function public.dmflow_create_run(
    p_dataset text,
    p_user_id uuid default null,
    p_params jsonb default '{}'::jsonb,
    p_flow_run_id uuid default null
)
returns public.deep_memory_training_runs
language plpgsql
set search_path = ''
as $$
declare
    new_run public.deep_memory_training_runs;
    blocking public.deep_memory_training_runs;
begin
    if p_dataset is null or btrim(p_dataset) = '' then
        raise exception 'a training run needs a dataset' using errcode = 'DMV01';
    end if;
    -- The same Prefect flow run asking again (UI Retry, crash restart) gets its run back.
    if p_flow_run_id is not null then
        select * into new_run from public.deep_memory_training_runs
        where flow_run_id = p_flow_run_id;
        if found then
            return new_run;
        end if;
    end if;
    begin
        insert into public.deep_memory_training_runs
            (dataset, user_id, status, params, flow_run_id, heartbeat_at)
        values (p_dataset, p_user_id, 'generating', coalesce(p_params, '{}'::jsonb),
                p_flow_run_id, now())
        returning * into new_run;
    exception when unique_violation then
        null;  -- the partial unique index: another unfinished run exists
    end;
    if new_run.id is not null then
        return new_run;
    end if;
    select * into blocking from public.deep_memory_training_runs
    where dataset = p_dataset and status <> 'completed'
    order by created_at
    limit 1;
    raise exception 'dataset % already has an unfinished training run % (%)',
            p_dataset, blocking.id, blocking.status
        using errcode = 'DMB01',
              detail = json_build_object('run_id', blocking.id, 'status', blocking.status,
                                         'dataset', p_dataset)::text;
end
$$;

-- Compare-and-set on (id, expected status, attempt). Which transitions are
-- allowed is decided by dmflow.status before this is called.
create or replace function public.dmflow_transition_run(
    p_run_id uuid,
    p_from_status text,
    p_to_status text,
    p_attempt integer,
    p_bump_attempt boolean default false,
    p_error_message text default null,
    p_flow_run_id uuid default null
)
returns public.deep_memory_training_runs
language plpgsql
set search_path = ''
as $$
declare
    moved public.deep_memory_training_runs;
begin
    update public.deep_memory_training_runs
    set status = p_to_status,
        attempt = attempt + case when p_bump_attempt then 1 else 0 end,
        error_message = case when p_to_status like '%\_failed' then p_error_message end,
        flow_run_id = coalesce(p_flow_run_id, flow_run_id),
        heartbeat_at = case when p_to_status in ('generating', 'training') then now()
                            else heartbeat_at end,
        completed_at = case when p_to_status = 'completed' then now() else completed_at end
    where id = p_run_id and status = p_from_status and attempt = p_attempt
    returning * into moved;
    if not found then
        perform public.dmflow_raise_missing_or_moved(p_run_id);
    end if;
    if p_to_status = 'completed' then
        insert into public.deep_memory_settings
            (user_id, enabled, last_trained_at, last_training_run_id, updated_at)
        values (moved.user_id, true, moved.completed_at, moved.id, now())
        on conflict (user_id) do update
        set last_trained_at = excluded.last_trained_at,
            last_training_run_id = excluded.last_training_run_id,
            updated_at = excluded.updated_at;
    end if;
    return moved;
end
$$;

-- Liveness and progress fields of an active run, fenced by attempt.
create or replace function public.dmflow_update_run_progress(
    p_run_id uuid,
    p_attempt integer,
    p_total_chunks integer default null,
    p_deeplake_job_id text default null,
    p_metrics jsonb default null,
    p_params_patch jsonb default null
)
returns public.deep_memory_training_runs
language plpgsql
set search_path = ''
as $$
declare
    touched public.deep_memory_training_runs;
begin
    update public.deep_memory_training_runs
    set heartbeat_at = now(),
        total_chunks = coalesce(p_total_chunks, total_chunks),
        deeplake_job_id = coalesce(p_deeplake_job_id, deeplake_job_id),
        metrics = coalesce(p_metrics, metrics),
        params = params || coalesce(p_params_patch, '{}'::jsonb)
    where id = p_run_id and attempt = p_attempt and status in ('generating', 'training')
    returning * into touched;
    if not found then
        perform public.dmflow_raise_missing_or_moved(p_run_id);
    end if;
    return touched;
end
$$;

create or replace function public.dmflow_jsonb_sum(a jsonb, b jsonb)
returns jsonb
language sql
immutable
set search_path = ''
as $$
    select coalesce(jsonb_object_agg(
               k,
               case when jsonb_typeof(a -> k) = 'number' and jsonb_typeof(b -> k) = 'number'
                    then to_jsonb((a ->> k)::numeric + (b ->> k)::numeric)
                    else coalesce(b -> k, a -> k) end), '{}'::jsonb)
    from (select jsonb_object_keys(coalesce(a, '{}'::jsonb))
          union
          select jsonb_object_keys(coalesce(b, '{}'::jsonb))) as keys (k)
$$;

-- One batch of generation results in one transaction: ledger rows, their
-- pairs, counters, usage and heartbeat. Chunks already in the ledger are
-- ignored with their pairs, so replaying a batch adds nothing.
--
-- With p_max_pairs, the run never holds more pairs than that: chunks are taken
-- in batch order while pairs remain under the cap, the last one taken keeps
-- only the questions that fit, and the chunks after it stay unrecorded.
create or replace function public.dmflow_record_batch(
    p_run_id uuid,
    p_attempt integer,
    p_chunks jsonb,
    p_pairs jsonb,
    p_usage jsonb default '{}'::jsonb,
    p_max_pairs integer default null
)
returns public.deep_memory_training_runs
language plpgsql
set search_path = ''
as $$
declare
    run public.deep_memory_training_runs;
    room bigint;
    new_chunk_count integer;
    new_pair_count integer;
begin
    if jsonb_typeof(p_chunks) is distinct from 'array'
       or jsonb_typeof(p_pairs) is distinct from 'array' then
        raise exception 'a batch needs JSON arrays of chunks and pairs' using errcode = 'DMV01';
    end if;
    select * into run from public.deep_memory_training_runs where id = p_run_id for update;
    if not found or run.status <> 'generating' or run.attempt <> p_attempt then
        perform public.dmflow_raise_missing_or_moved(p_run_id);
    end if;
    if exists (select 1
               from jsonb_array_elements(p_pairs) as pair
               where not exists (select 1 from jsonb_array_elements(p_chunks) as chunk
                                 where chunk ->> 'chunk_id' = pair ->> 'chunk_id')) then
        raise exception 'every pair of a batch must belong to one of its chunks'
            using errcode = 'DMV01';
    end if;
    room := coalesce(p_max_pairs::bigint - run.pair_count, 9223372036854775807);

    with input_chunks as (
        select c.chunk_id, c.outcome, c.reason, coalesce(c.pair_count, 0) as pair_count,
               c.position
        from rows from (jsonb_to_recordset(p_chunks)
                        as (chunk_id text, outcome text, reason text, pair_count integer))
             with ordinality as c (chunk_id, outcome, reason, pair_count, position)
        where not exists (select 1 from public.deep_memory_training_chunks l
                          where l.training_run_id = p_run_id and l.chunk_id = c.chunk_id)
    ),
    fitting as (
        select i.*, least(i.pair_count, room - i.pairs_before) as kept_pairs
        from (select input_chunks.*,
                     coalesce(sum(pair_count) over (order by position
                              rows between unbounded preceding and 1 preceding), 0)
                         as pairs_before
              from input_chunks) as i
        where i.pairs_before < room
    ),
    new_chunks as (
        insert into public.deep_memory_training_chunks
            (training_run_id, chunk_id, outcome, reason, pair_count)
        select p_run_id, chunk_id, outcome, reason, kept_pairs
        from fitting
        on conflict (training_run_id, chunk_id) do nothing
        returning chunk_id, pair_count
    ),
    input_pairs as (
        select p.*, row_number() over (partition by p.chunk_id order by p.position) as rank
        from rows from (jsonb_to_recordset(p_pairs)
                        as (question_text text, chunk_id text, chunk_preview text,
                            relevance_score double precision))
             with ordinality as p (question_text, chunk_id, chunk_preview, relevance_score,
                                   position)
    ),
    new_pairs as (
        insert into public.deep_memory_training_pairs
            (training_run_id, question_text, chunk_id, chunk_preview, relevance_score)
        select p_run_id, p.question_text, p.chunk_id, p.chunk_preview,
               coalesce(p.relevance_score, 1.0)
        from input_pairs p
        join new_chunks n on n.chunk_id = p.chunk_id and p.rank <= n.pair_count
        on conflict (training_run_id, chunk_id, question_hash) do nothing
        returning 1
    )
    select (select count(*) from new_chunks), (select count(*) from new_pairs)
    into new_chunk_count, new_pair_count;

    update public.deep_memory_training_runs
    set processed_chunks = processed_chunks + new_chunk_count,
        pair_count = pair_count + new_pair_count,
        heartbeat_at = now(),
        usage = case when new_chunk_count > 0
                     then public.dmflow_jsonb_sum(usage, p_usage) else usage end
    where id = p_run_id
    returning * into run;
    return run;
end
$$;

create or replace function public.dmflow_delete_failed_run(p_run_id uuid)
returns public.deep_memory_training_runs
language plpgsql
set search_path = ''
as $$
declare
    deleted public.deep_memory_training_runs;
    current_status text;
begin
    delete from public.deep_memory_training_runs
    where id = p_run_id and status in ('generating_failed', 'training_failed')
    returning * into deleted;
    if found then
        return deleted;
    end if;
    select status into current_status from public.deep_memory_training_runs where id = p_run_id;
    if not found then
        raise exception 'training run % does not exist', p_run_id
            using errcode = 'DMN01', detail = json_build_object('run_id', p_run_id)::text;
    end if;
    raise exception 'training run % is %, only failed runs can be deleted', p_run_id, current_status
        using errcode = 'DMD01',
              detail = json_build_object('run_id', p_run_id, 'status', current_status)::text;
end
$$;

-- 7. Privileges -------------------------------------------------------------
revoke execute on function
    public.dmflow_raise_missing_or_moved(uuid),
    public.dmflow_create_run(text, uuid, jsonb, uuid),
    public.dmflow_transition_run(uuid, text, text, integer, boolean, text, uuid),
    public.dmflow_update_run_progress(uuid, integer, integer, text, jsonb, jsonb),
    public.dmflow_jsonb_sum(jsonb, jsonb),
    public.dmflow_record_batch(uuid, integer, jsonb, jsonb, jsonb, integer),
    public.dmflow_delete_failed_run(uuid),
    public.dmflow_set_updated_at()
from public;

-- Supabase's roles exist on Supabase (and under the test shim); a plain
-- PostgreSQL has none of them and its owner keeps every privilege.
do $$
declare
    tables text := 'public.deep_memory_training_runs, public.deep_memory_training_pairs, '
                   'public.deep_memory_training_chunks, public.deep_memory_settings';
begin
    if to_regrole('service_role') is not null then
        execute 'grant select, insert, update, delete on ' || tables || ' to service_role';
        execute 'grant execute on function
            public.dmflow_create_run(text, uuid, jsonb, uuid),
            public.dmflow_transition_run(uuid, text, text, integer, boolean, text, uuid),
            public.dmflow_update_run_progress(uuid, integer, integer, text, jsonb, jsonb),
            public.dmflow_record_batch(uuid, integer, jsonb, jsonb, jsonb, integer),
            public.dmflow_delete_failed_run(uuid),
            public.dmflow_raise_missing_or_moved(uuid),
            public.dmflow_jsonb_sum(jsonb, jsonb)
            to service_role';
    end if;
    if to_regrole('anon') is not null and to_regrole('authenticated') is not null
       and to_regprocedure('auth.uid()') is not null then
        execute 'revoke all on ' || tables || ' from anon, authenticated';
        execute 'grant select on ' || tables || ' to anon, authenticated';
        -- Supabase's default privileges grant new functions to anon and
        -- authenticated directly, so revoking from PUBLIC is not enough.
        execute 'revoke execute on function
            public.dmflow_create_run(text, uuid, jsonb, uuid),
            public.dmflow_transition_run(uuid, text, text, integer, boolean, text, uuid),
            public.dmflow_update_run_progress(uuid, integer, integer, text, jsonb, jsonb),
            public.dmflow_record_batch(uuid, integer, jsonb, jsonb, jsonb, integer),
            public.dmflow_delete_failed_run(uuid),
            public.dmflow_raise_missing_or_moved(uuid),
            public.dmflow_jsonb_sum(jsonb, jsonb),
            public.dmflow_set_updated_at()
            from anon, authenticated';

        -- Runs without an owner are the service's own and visible to every
        -- reader; an owned run only to its owner.
        drop policy if exists dmflow_read_runs on public.deep_memory_training_runs;
        create policy dmflow_read_runs on public.deep_memory_training_runs
            for select to anon, authenticated
            using (user_id is null or user_id = (select auth.uid()));
        drop policy if exists dmflow_read_pairs on public.deep_memory_training_pairs;
        create policy dmflow_read_pairs on public.deep_memory_training_pairs
            for select to anon, authenticated
            using (exists (select 1 from public.deep_memory_training_runs r
                           where r.id = training_run_id));
        drop policy if exists dmflow_read_chunks on public.deep_memory_training_chunks;
        create policy dmflow_read_chunks on public.deep_memory_training_chunks
            for select to anon, authenticated
            using (exists (select 1 from public.deep_memory_training_runs r
                           where r.id = training_run_id));
        drop policy if exists dmflow_read_settings on public.deep_memory_settings;
        create policy dmflow_read_settings on public.deep_memory_settings
            for select to anon, authenticated
            using (user_id is null or user_id = (select auth.uid()));
    end if;
    if exists (select 1 from pg_publication where pubname = 'supabase_realtime')
       and not exists (select 1 from pg_publication_tables
                       where pubname = 'supabase_realtime' and schemaname = 'public'
                         and tablename = 'deep_memory_training_runs') then
        alter publication supabase_realtime add table public.deep_memory_training_runs;
    end if;
end
$$;
