-- dmflow's own facts about a run get a column of their own: `params` stays what the
-- user asked for. `facts` holds what dmflow found: the embedder it resolved for the
-- dataset, what the questions cover of it, whether the max_pairs cap stopped generation.

alter table public.deep_memory_training_runs
    add column if not exists facts jsonb not null default '{}'::jsonb;

-- Rows written before: their facts move out of params. (A resolved embedder cannot be
-- told from one the user gave, so `params.embedder` stays where it is; it names the
-- same embedder either way.)
update public.deep_memory_training_runs
set facts = facts || jsonb_strip_nulls(jsonb_build_object(
        'coverage', params -> 'coverage',
        'max_pairs_reached', params -> 'max_pairs_reached')),
    params = params - 'coverage' - 'max_pairs_reached'
where params ?| array['coverage', 'max_pairs_reached'];

-- The progress update patches `facts`, not `params` (a parameter's name cannot change
-- in place: the function is made anew, and its privileges with it).
drop function if exists public.dmflow_update_run_progress(uuid, integer, integer, text, jsonb, jsonb);

create function public.dmflow_update_run_progress(
    p_run_id uuid,
    p_attempt integer,
    p_total_chunks integer default null,
    p_deeplake_job_id text default null,
    p_metrics jsonb default null,
    p_facts_patch jsonb default null
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
        facts = facts || coalesce(p_facts_patch, '{}'::jsonb)
    where id = p_run_id and attempt = p_attempt and status in ('generating', 'training')
    returning * into touched;
    if not found then
        perform public.dmflow_raise_missing_or_moved(p_run_id);
    end if;
    return touched;
end
$$;

revoke execute on function
    public.dmflow_update_run_progress(uuid, integer, integer, text, jsonb, jsonb)
from public;

do $$
begin
    if to_regrole('service_role') is not null then
        execute 'grant execute on function
            public.dmflow_update_run_progress(uuid, integer, integer, text, jsonb, jsonb)
            to service_role';
    end if;
    if to_regrole('anon') is not null and to_regrole('authenticated') is not null then
        execute 'revoke execute on function
            public.dmflow_update_run_progress(uuid, integer, integer, text, jsonb, jsonb)
            from anon, authenticated';
    end if;
end
$$;
