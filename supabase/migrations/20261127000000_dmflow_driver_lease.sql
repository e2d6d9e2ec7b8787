-- dmflow: who drives an active run, recorded beside its heartbeat (a lease).
--
-- The process working on a run records its host, process id and start time. On
-- that host, a driver that is gone is known at once; elsewhere a heartbeat older
-- than the stale limit says it. Safe to re-run.

alter table public.deep_memory_training_runs
    add column if not exists driver_host text,
    add column if not exists driver_pid integer,
    add column if not exists driver_started_at timestamptz;

comment on column public.deep_memory_training_runs.driver_host is
    'Host of the process driving the run (dmflow''s lease, beside heartbeat_at).';

-- The transition function as before, ending the lease when a run enters an
-- active status (same signature: its grants stay).
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
        -- Entering an active status, the old driver's lease ends: the process that
        -- takes the run over claims it (dmflow_claim_run).
        driver_host = case when p_to_status in ('generating', 'training') then null
                           else driver_host end,
        driver_pid = case when p_to_status in ('generating', 'training') then null
                          else driver_pid end,
        driver_started_at = case when p_to_status in ('generating', 'training') then null
                                 else driver_started_at end,
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

-- Take the lease of an active run, fenced by attempt like every other write.
create or replace function public.dmflow_claim_run(
    p_run_id uuid,
    p_attempt integer,
    p_host text,
    p_pid integer,
    p_started_at timestamptz
)
returns public.deep_memory_training_runs
language plpgsql
set search_path = ''
as $$
declare
    claimed public.deep_memory_training_runs;
begin
    update public.deep_memory_training_runs
    set driver_host = p_host,
        driver_pid = p_pid,
        driver_started_at = p_started_at,
        heartbeat_at = now()
    where id = p_run_id and attempt = p_attempt and status in ('generating', 'training')
    returning * into claimed;
    if not found then
        perform public.dmflow_raise_missing_or_moved(p_run_id);
    end if;
    return claimed;
end
$$;

revoke execute on function
    public.dmflow_claim_run(uuid, integer, text, integer, timestamptz)
from public;

do $$
begin
    if to_regrole('service_role') is not null then
        execute 'grant execute on function
            public.dmflow_claim_run(uuid, integer, text, integer, timestamptz)
            to service_role';
    end if;
    if to_regrole('anon') is not null and to_regrole('authenticated') is not null then
        execute 'revoke execute on function
            public.dmflow_claim_run(uuid, integer, text, integer, timestamptz)
            from anon, authenticated';
    end if;
end
$$;
