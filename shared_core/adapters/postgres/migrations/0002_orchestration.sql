-- 0002: what the Functions app records: webhook deliveries (dedupe), orchestration jobs, used approval tokens.

CREATE TABLE webhook_deliveries (
    tenant_id    text NOT NULL REFERENCES tenants (tenant_id),
    delivery_id  text NOT NULL,
    event        text NOT NULL,
    instance_id  text,
    received_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, delivery_id)
);

CREATE TABLE jobs (
    tenant_id    text NOT NULL REFERENCES tenants (tenant_id),
    instance_id  text NOT NULL,
    kind         text NOT NULL CHECK (kind IN ('push', 'schedule')),
    plan_id      text,
    repository   text NOT NULL,
    target       text NOT NULL,
    status       text NOT NULL DEFAULT 'queued'
                 CHECK (status IN ('queued', 'running', 'awaiting_approval', 'succeeded', 'failed', 'cancelled')),
    detail       text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, instance_id)
);
CREATE INDEX jobs_by_plan ON jobs (tenant_id, plan_id);

CREATE TABLE used_tokens (
    tenant_id  text NOT NULL REFERENCES tenants (tenant_id),
    jti        text NOT NULL,
    plan_id    text NOT NULL,
    action     text NOT NULL,
    subject    text NOT NULL,
    used_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, jti)
);

ALTER TABLE plans DROP CONSTRAINT plans_status_check;
ALTER TABLE plans ADD CONSTRAINT plans_status_check
    CHECK (status IN ('planned', 'awaiting_approval', 'approved', 'rejected', 'expired', 'running', 'succeeded',
                      'failed', 'cancelled'));
