-- 0001: the state store. Every table carries tenant_id from the start (row-level security arrives later).

CREATE TABLE tenants (
    tenant_id   text PRIMARY KEY CHECK (tenant_id ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    name        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE models (
    tenant_id        text NOT NULL REFERENCES tenants (tenant_id),
    name             text NOT NULL,
    kind             text NOT NULL,
    materialization  text NOT NULL,
    current_hash     text NOT NULL,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, name)
);

CREATE TABLE model_versions (
    tenant_id      text NOT NULL REFERENCES tenants (tenant_id),
    name           text NOT NULL,
    content_hash   text NOT NULL,
    canonical_sql  text NOT NULL,
    header         jsonb NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, name, content_hash)
);

CREATE TABLE plans (
    tenant_id    text NOT NULL REFERENCES tenants (tenant_id),
    plan_id      text NOT NULL CHECK (plan_id ~ '^[0-9a-f]{64}$'),
    base         text NOT NULL,
    target       text NOT NULL,
    as_of        timestamptz NOT NULL,
    inputs_hash  text NOT NULL,
    plan_json    text NOT NULL,  -- the exact bytes of the plan file, never re-serialized
    status       text NOT NULL DEFAULT 'planned'
                 CHECK (status IN ('planned', 'approved', 'rejected', 'running', 'succeeded', 'failed', 'cancelled')),
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, plan_id)
);

CREATE TABLE runs (
    run_id        bigserial PRIMARY KEY,
    tenant_id     text NOT NULL REFERENCES tenants (tenant_id),
    plan_id       text NOT NULL,
    step_id       text NOT NULL,
    model         text NOT NULL,
    batch_start   timestamptz,
    batch_end     timestamptz,
    attempt       integer NOT NULL DEFAULT 1,
    status        text NOT NULL DEFAULT 'pending'
                  CHECK (status IN ('pending', 'running', 'success', 'failed', 'skipped', 'cancelled')),
    started_at    timestamptz,
    finished_at   timestamptz,
    rows_written  bigint,
    error         text,
    FOREIGN KEY (tenant_id, plan_id) REFERENCES plans (tenant_id, plan_id),
    CHECK (batch_start IS NULL OR batch_start < batch_end)
);
CREATE INDEX runs_by_plan ON runs (tenant_id, plan_id, step_id);

-- The ledger: one row per committed range. A model's completed ranges are the union of its rows; a
-- backfill that starts from an empty table deletes the model's rows first.
CREATE TABLE watermarks (
    id           bigserial PRIMARY KEY,
    tenant_id    text NOT NULL REFERENCES tenants (tenant_id),
    model        text NOT NULL,
    range_start  timestamptz NOT NULL,
    range_end    timestamptz NOT NULL,
    plan_id      text,
    step_id      text,
    recorded_at  timestamptz NOT NULL DEFAULT now(),
    CHECK (range_start < range_end)
);
CREATE INDEX watermarks_by_model ON watermarks (tenant_id, model, range_start);

-- Partition-range locks with a TTL; a NULL range locks the whole model.
CREATE TABLE range_locks (
    lock_id      bigserial PRIMARY KEY,
    tenant_id    text NOT NULL REFERENCES tenants (tenant_id),
    model        text NOT NULL,
    range_start  timestamptz,
    range_end    timestamptz,
    holder       text NOT NULL,
    acquired_at  timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL
);
CREATE INDEX range_locks_by_model ON range_locks (tenant_id, model);

CREATE TABLE test_results (
    tenant_id     text NOT NULL REFERENCES tenants (tenant_id),
    run_id        bigint NOT NULL REFERENCES runs (run_id),
    test          text NOT NULL,
    severity      text NOT NULL CHECK (severity IN ('BLOCK', 'WARN')),
    passed        boolean NOT NULL,
    failing_rows  bigint NOT NULL DEFAULT 0,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, run_id, test)
);

CREATE TABLE telemetry (
    id           bigserial PRIMARY KEY,
    tenant_id    text NOT NULL REFERENCES tenants (tenant_id),
    plan_id      text,
    step_id      text,
    metric       text NOT NULL,
    value        double precision NOT NULL,
    attributes   jsonb NOT NULL DEFAULT '{}'::jsonb,
    recorded_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX telemetry_by_plan ON telemetry (tenant_id, plan_id);
