-- 0007: telemetry, metering and subscriptions.
--
-- step_telemetry: one row per executed step and one per batch (runtime, rows, bytes where the engine reports
-- them, engine, estimated cost), written by the telemetry function; attributes are scrubbed before they arrive.
-- usage_events: the metering outbox. A usage event is inserted in the same transaction as the thing it counts
-- (a stored plan, a finished step) and leaves for Stripe as a Billing Meter event under its `identifier`,
-- which is derived from what it counts, so sending it again never bills twice.
-- stripe_customers: which tenant a Stripe customer pays for (readable for routing webhooks, like
-- repository_tenants). stripe_subscriptions: each subscription's last applied state, with the timestamps that
-- keep an older delivery from overwriting a newer one. stripe_events: every webhook event ID seen (dedupe;
-- the primary key spans tenants, so a redelivery is caught whichever tenant it was filed under).
-- execution_slots: the jobs executing now, counted against the tenant's concurrency limit.

CREATE TABLE step_telemetry (
    id              bigserial PRIMARY KEY,
    tenant_id       text NOT NULL REFERENCES tenants (tenant_id),
    record_key      text NOT NULL,  -- step:<plan>:<step>:<first run> or batch:<run>: a retried write replaces
    kind            text NOT NULL CHECK (kind IN ('step', 'batch')),
    plan_id         text NOT NULL,
    step_id         text NOT NULL,
    run_id          bigint,
    instance_id     text,  -- the orchestration instance (NULL: the CLI)
    model           text NOT NULL,
    engine          text NOT NULL,
    status          text NOT NULL,
    batch_start     timestamptz,
    batch_end       timestamptz,
    batches         integer NOT NULL DEFAULT 1,
    seconds         double precision NOT NULL CHECK (seconds >= 0),
    engine_seconds  double precision NOT NULL CHECK (engine_seconds >= 0),
    rows_read       bigint,  -- NULL: the engine reports none
    rows_written    bigint,
    bytes           bigint,  -- the bytes the engine reported for the statements (NULL: it reports none)
    cost_usd        double precision NOT NULL DEFAULT 0 CHECK (cost_usd >= 0),
    attributes      jsonb NOT NULL DEFAULT '{}'::jsonb,
    recorded_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, record_key)
);
CREATE INDEX step_telemetry_by_model ON step_telemetry (tenant_id, model, kind, recorded_at);

CREATE TABLE usage_events (
    id               bigserial PRIMARY KEY,
    tenant_id        text NOT NULL REFERENCES tenants (tenant_id),
    identifier       text NOT NULL UNIQUE CHECK (length(identifier) BETWEEN 1 AND 100),
    kind             text NOT NULL CHECK (kind IN ('plan_generated', 'step_executed', 'compute_seconds')),
    quantity         bigint NOT NULL CHECK (quantity > 0),
    plan_id          text,
    step_id          text,
    occurred_at      timestamptz NOT NULL DEFAULT now(),
    status           text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'expired', 'rejected')),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    sent_at          timestamptz,
    last_error       text
);
CREATE INDEX usage_events_pending ON usage_events (tenant_id, next_attempt_at) WHERE status = 'pending';
CREATE INDEX usage_events_by_month ON usage_events (tenant_id, kind, occurred_at);

CREATE TABLE stripe_customers (
    tenant_id    text NOT NULL REFERENCES tenants (tenant_id),
    customer_id  text PRIMARY KEY CHECK (customer_id ~ '^cus_[A-Za-z0-9]{1,250}$'),
    mapped_by    text NOT NULL,  -- 'command', 'api' or 'metadata'
    mapped_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX stripe_customers_by_tenant ON stripe_customers (tenant_id);

CREATE TABLE stripe_subscriptions (
    tenant_id          text NOT NULL REFERENCES tenants (tenant_id),
    subscription_id    text PRIMARY KEY,
    customer_id        text NOT NULL,
    status             text NOT NULL,  -- Stripe's: active, trialing, past_due, unpaid, canceled, ...
    tier               text NOT NULL CHECK (tier IN ('community', 'team', 'enterprise')),
    created            timestamptz NOT NULL,  -- the subscription's own `created`
    period_start       timestamptz,  -- its current period (from the subscription or its items)
    period_end         timestamptz,
    ended_at           timestamptz,
    event_created      timestamptz NOT NULL,  -- `created` of the event that last changed this row
    invoice_status     text CHECK (invoice_status IN ('paid', 'payment_failed')),
    invoice_created    timestamptz,  -- `created` of the invoice behind invoice_status
    updated_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX stripe_subscriptions_by_tenant ON stripe_subscriptions (tenant_id, created);

CREATE TABLE stripe_events (
    event_id     text PRIMARY KEY,
    tenant_id    text NOT NULL REFERENCES tenants (tenant_id),
    type         text NOT NULL,
    created      timestamptz NOT NULL,
    outcome      text NOT NULL,  -- what handling it did, one line
    received_at  timestamptz NOT NULL DEFAULT now()
);

-- A job executing holds a slot from its first wave on; a slot counts while its job has not ended, so a job that
-- ends by any path (finished, failed, cancelled) frees its slot without a release step.
CREATE TABLE execution_slots (
    tenant_id    text NOT NULL REFERENCES tenants (tenant_id),
    instance_id  text NOT NULL,
    claimed_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, instance_id)
);

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['step_telemetry', 'usage_events', 'stripe_customers', 'stripe_subscriptions',
                             'stripe_events', 'execution_slots']
    LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY tenant_isolation ON %I USING (tenant_id = current_setting(''app.tenant_id'', true)) '
                       'WITH CHECK (tenant_id = current_setting(''app.tenant_id'', true))', t);
    END LOOP;
END
$$;
-- A Stripe webhook names a customer, not a tenant: the map is readable for routing, writable only by its tenant.
CREATE POLICY customer_lookup ON stripe_customers FOR SELECT USING (true);

GRANT SELECT, INSERT, UPDATE, DELETE ON step_telemetry, usage_events, stripe_customers, stripe_subscriptions,
    execution_slots TO ironlayer_app;
GRANT SELECT, INSERT, UPDATE (outcome) ON stripe_events TO ironlayer_app;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO ironlayer_app;
