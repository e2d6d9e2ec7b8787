-- dmflow: a record looks up only its own chunks in the run's ledger.
--
-- Which of a record's chunks the run holds already was found by an anti-join that
-- the planner ran as a hash of every ledger row of the run, for every record: a record
-- cost more the more the run had recorded (12 ms for 16 chunks after 6,400 recorded,
-- 3 ms at the start), so a large run slowed quadratically. Each chunk is now looked up
-- by the primary key. Same signature and behaviour; its grants stay. Safe to re-run.

create or replace function public.dmflow_record_batch(
    p_run_id uuid,
    p_attempt integer,
    p_chunks jsonb,
    p_pairs jsonb,
    p_usage jsonb default '{}'::jsonb,
    p_max_pairs integer default null,
    p_record_key uuid default null
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
    fresh_record boolean := false;
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
    if p_record_key is not null then
        insert into public.deep_memory_usage_records (training_run_id, record_key)
        values (p_run_id, p_record_key)
        on conflict do nothing;
        fresh_record := found;
    end if;

    with input_chunks as (
        select c.chunk_id, c.outcome, c.reason, coalesce(c.pair_count, 0) as pair_count,
               c.position
        from rows from (jsonb_to_recordset(p_chunks)
                        as (chunk_id text, outcome text, reason text, pair_count integer))
             with ordinality as c (chunk_id, outcome, reason, pair_count, position)
        -- A correlated lookup per input chunk: one probe of the primary key each.
        -- As `not exists` the planner may read every ledger row of the run into a
        -- hash, for every record (the statistics say the run is small).
        where (select true from public.deep_memory_training_chunks l
               where l.training_run_id = p_run_id and l.chunk_id = c.chunk_id) is null
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
        usage = case when (p_record_key is null and new_chunk_count > 0) or fresh_record
                     then public.dmflow_jsonb_sum(usage, p_usage) else usage end
    where id = p_run_id
    returning * into run;
    return run;
end
$$;
