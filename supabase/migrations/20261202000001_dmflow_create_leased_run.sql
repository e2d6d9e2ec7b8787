-- dmflow: a new run is created already leased to the process that creates it.
--
-- Created by one call and leased by the next, a kill -9 between the two left a
-- run in `generating` that no process claimed: alive to every check until its
-- heartbeat went stale (DMFLOW_STALE_AFTER_S), so `dmflow recover` refused it for
-- ten minutes. Both steps now run in one transaction. A run the same flow run
-- created before (a Retry) comes back as it is, leased only if it is generating.
-- Safe to re-run.

create or replace function public.dmflow_create_leased_run(
    p_dataset text,
    p_user_id uuid,
    p_params jsonb,
    p_flow_run_id uuid,
    p_host text,
    p_pid integer,
    p_started_at timestamptz
)
returns public.deep_memory_training_runs
language plpgsql
set search_path = ''
as $$
declare
    created public.deep_memory_training_runs;
begin
    created := public.dmflow_create_run(p_dataset, p_user_id, p_params, p_flow_run_id);
    if created.status <> 'generating' then
        return created;
    end if;
    return public.dmflow_enter_phase(
        created.id, 'generation', created.attempt, p_flow_run_id, p_host, p_pid, p_started_at
    );
end
$$;

revoke execute on function
    public.dmflow_create_leased_run(text, uuid, jsonb, uuid, text, integer, timestamptz)
from public;

do $$
begin
    if to_regrole('service_role') is not null then
        execute 'grant execute on function
            public.dmflow_create_leased_run(text, uuid, jsonb, uuid, text, integer, timestamptz)
            to service_role';
    end if;
    if to_regrole('anon') is not null and to_regrole('authenticated') is not null then
        execute 'revoke execute on function
            public.dmflow_create_leased_run(text, uuid, jsonb, uuid, text, integer, timestamptz)
            from anon, authenticated';
    end if;
end
$$;
