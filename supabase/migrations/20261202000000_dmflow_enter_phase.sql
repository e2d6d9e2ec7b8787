-- dmflow: one decision for "may this flow run work on this run's phase", taken
-- atomically in the database.
--
-- A phase's flow run enters the phase with the attempt and the driving flow run it
-- was given. Under the run's row lock, this function refuses a newer attempt or
-- another driver (DMC01), returns a run whose phase is already behind it unchanged
-- (a run another flow run completed is refused: that flow run did the work),
-- moves a generated run into training (through dmflow_transition_run, the one
-- function that changes a status) and takes the lease of the process entering.
-- Safe to re-run.

create or replace function public.dmflow_enter_phase(
    p_run_id uuid,
    p_phase text,
    p_attempt integer,
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
    entered public.deep_memory_training_runs;
    active text := case p_phase when 'generation' then 'generating'
                                when 'training' then 'training' end;
begin
    if active is null then
        raise exception 'unknown phase %', p_phase using errcode = '22023';
    end if;
    select * into entered from public.deep_memory_training_runs
    where id = p_run_id for update;
    if not found or (p_attempt is not null and entered.attempt <> p_attempt) then
        perform public.dmflow_raise_missing_or_moved(p_run_id);
    end if;
    if (p_phase = 'generation'
            and entered.status in ('generated', 'training', 'training_failed', 'completed'))
       or (p_phase = 'training' and entered.status = 'completed'
           and (p_flow_run_id is null or entered.flow_run_id is null
                or entered.flow_run_id = p_flow_run_id)) then
        return entered;  -- the phase is behind the run: nothing to do
    end if;
    if p_phase = 'training' and entered.status = 'generated' then
        entered := public.dmflow_transition_run(
            p_run_id, 'generated', 'training', entered.attempt, false, null, p_flow_run_id
        );
    elsif entered.status <> active
          or (p_flow_run_id is not null and entered.flow_run_id is not null
              and entered.flow_run_id <> p_flow_run_id) then
        perform public.dmflow_raise_missing_or_moved(p_run_id);
    end if;
    update public.deep_memory_training_runs
    set driver_host = p_host,
        driver_pid = p_pid,
        driver_started_at = p_started_at,
        heartbeat_at = now()
    where id = p_run_id
    returning * into entered;
    return entered;
end
$$;

revoke execute on function
    public.dmflow_enter_phase(uuid, text, integer, uuid, text, integer, timestamptz)
from public;

do $$
begin
    if to_regrole('service_role') is not null then
        execute 'grant execute on function
            public.dmflow_enter_phase(uuid, text, integer, uuid, text, integer, timestamptz)
            to service_role';
    end if;
    if to_regrole('anon') is not null and to_regrole('authenticated') is not null then
        execute 'revoke execute on function
            public.dmflow_enter_phase(uuid, text, integer, uuid, text, integer, timestamptz)
            from anon, authenticated';
    end if;
end
$$;
