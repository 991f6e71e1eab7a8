-- 0003: tenancy enforced by the database. Every table is tenant-bound by row-level security (ENABLEd and
-- FORCEd); the application connects as ironlayer_app (no superuser, not the owner, no BYPASSRLS) and binds
-- each transaction with set_config('app.tenant_id', <tenant>, true). A transaction that binds no tenant
-- sees no row and can write none. The audit log is append-only for the application (INSERT and SELECT).

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ironlayer_app') THEN
        CREATE ROLE ironlayer_app LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS NOINHERIT;
    END IF;
END
$$;

CREATE TABLE audit_log (
    tenant_id  text NOT NULL REFERENCES tenants (tenant_id),
    seq        bigint NOT NULL CHECK (seq > 0),
    at         timestamptz NOT NULL,
    actor      text NOT NULL,
    role       text NOT NULL,
    action     text NOT NULL,
    target     text NOT NULL,
    details    text NOT NULL,  -- canonical JSON text, exactly as hashed (jsonb could rewrite numbers)
    prev_hash  text NOT NULL CHECK (prev_hash ~ '^[0-9a-f]{64}$'),
    hash       text NOT NULL CHECK (hash ~ '^[0-9a-f]{64}$'),
    PRIMARY KEY (tenant_id, seq)
);
ALTER TABLE tenants ADD COLUMN audit_head text;  -- the last audit hash, so a truncated log is detected
ALTER TABLE tenants ADD COLUMN settings jsonb NOT NULL DEFAULT '{}'::jsonb;  -- e.g. {"allow_self_approval": true}
ALTER TABLE jobs ADD COLUMN author text NOT NULL DEFAULT '';  -- who pushed: may not approve its own plan

CREATE TABLE credentials (
    tenant_id   text NOT NULL REFERENCES tenants (tenant_id),
    name        text NOT NULL CHECK (name ~ '^[a-z0-9_.-]{1,100}$'),
    ciphertext  text NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, name)
);

CREATE TABLE revoked_tokens (
    tenant_id   text NOT NULL REFERENCES tenants (tenant_id),
    jti         text NOT NULL,
    expires_at  timestamptz NOT NULL,
    revoked_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, jti)
);

CREATE TABLE rate_limits (
    tenant_id       text NOT NULL REFERENCES tenants (tenant_id),
    key             text NOT NULL,
    window_start    timestamptz NOT NULL,
    count           integer NOT NULL,
    previous_count  integer NOT NULL,
    PRIMARY KEY (tenant_id, key)
);

-- Which tenant a GitHub repository (or App installation) belongs to: webhooks are routed by it before a
-- tenant is known, so the application may read every mapping but write only its own tenant's.
CREATE TABLE repository_tenants (
    tenant_id        text NOT NULL REFERENCES tenants (tenant_id),
    repository       text NOT NULL,  -- owner/name, lower-case
    installation_id  bigint,
    PRIMARY KEY (repository)
);

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['tenants', 'models', 'model_versions', 'plans', 'runs', 'watermarks', 'range_locks',
                             'test_results', 'telemetry', 'webhook_deliveries', 'jobs', 'used_tokens',
                             'audit_log', 'credentials', 'revoked_tokens', 'rate_limits', 'repository_tenants']
    LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY tenant_isolation ON %I USING (tenant_id = current_setting(''app.tenant_id'', true)) '
                       'WITH CHECK (tenant_id = current_setting(''app.tenant_id'', true))', t);
    END LOOP;
END
$$;
CREATE POLICY repository_lookup ON repository_tenants FOR SELECT USING (true);

GRANT USAGE ON SCHEMA public TO ironlayer_app;
GRANT SELECT ON schema_migrations TO ironlayer_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON tenants, models, model_versions, plans, runs, watermarks, range_locks,
    test_results, telemetry, webhook_deliveries, jobs, used_tokens, credentials, revoked_tokens, rate_limits,
    repository_tenants TO ironlayer_app;
GRANT SELECT, INSERT ON audit_log TO ironlayer_app;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO ironlayer_app;
