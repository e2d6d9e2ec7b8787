-- Baseline: the tables the existing application already has (before dmflow).
-- Written with IF NOT EXISTS so that pushing it to a project that already has
-- these tables changes nothing. Supabase-only objects (auth.users, the anon and
-- authenticated roles) are used only when they exist, so the same file also
-- applies to a plain PostgreSQL.

create table if not exists public.deep_memory_training_runs (
    id uuid primary key default gen_random_uuid(),
    user_id uuid,
    dataset text not null,
    status text not null default 'generating'
        constraint deep_memory_training_runs_status_check
        check (status in ('generating', 'generated', 'training', 'completed', 'failed')),
    total_chunks integer not null default 0,
    processed_chunks integer not null default 0,
    pair_count integer not null default 0,
    deeplake_job_id text,
    metrics jsonb,
    error_message text,
    started_at timestamptz not null default now(),
    completed_at timestamptz,
    created_at timestamptz not null default now()
);

create index if not exists deep_memory_training_runs_user_id_idx
    on public.deep_memory_training_runs (user_id);

create table if not exists public.deep_memory_training_pairs (
    id uuid primary key default gen_random_uuid(),
    training_run_id uuid not null
        references public.deep_memory_training_runs (id) on delete cascade,
    question_text text not null,
    chunk_id text not null,
    chunk_preview text,
    relevance_score double precision not null default 1.0,
    created_at timestamptz not null default now()
);

create index if not exists deep_memory_training_pairs_run_idx
    on public.deep_memory_training_pairs (training_run_id);

create table if not exists public.deep_memory_settings (
    id uuid primary key default gen_random_uuid(),
    user_id uuid unique,
    enabled boolean not null default false,
    last_trained_at timestamptz,
    last_training_run_id uuid
        references public.deep_memory_training_runs (id) on delete set null,
    updated_at timestamptz not null default now()
);

alter table public.deep_memory_training_runs enable row level security;
alter table public.deep_memory_training_pairs enable row level security;
alter table public.deep_memory_settings enable row level security;

do $$
begin
    if to_regclass('auth.users') is not null then
        if not exists (select 1 from pg_constraint
                       where conname = 'deep_memory_training_runs_user_id_fkey') then
            alter table public.deep_memory_training_runs
                add constraint deep_memory_training_runs_user_id_fkey
                foreign key (user_id) references auth.users (id) on delete cascade;
        end if;
        if not exists (select 1 from pg_constraint
                       where conname = 'deep_memory_settings_user_id_fkey') then
            alter table public.deep_memory_settings
                add constraint deep_memory_settings_user_id_fkey
                foreign key (user_id) references auth.users (id) on delete cascade;
        end if;
    end if;
end
$$;
