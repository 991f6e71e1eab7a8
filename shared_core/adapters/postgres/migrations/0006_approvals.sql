-- 0006: approvals that mean something. Who may decide (per-tenant identities mapped to roles and GitHub
-- logins), what a plan was built against (its base: the deployed model versions, recorded beside the plan
-- and bound to its ID), and which quality tests are deployed with each model's current version.

-- One row per sign-in of a person in a tenant: an API token subject (`api`) or an App Service
-- Authentication principal (`appservice:<provider>`, subject = X-MS-CLIENT-PRINCIPAL-ID). Its role is the
-- tenant's role for that identity; its GitHub login is what separation of duties compares with the pusher.
CREATE TABLE identities (
    tenant_id     text NOT NULL REFERENCES tenants (tenant_id),
    provider      text NOT NULL CHECK (provider ~ '^(api|appservice:[a-z0-9_.-]{1,40})$'),
    subject       text NOT NULL CHECK (length(subject) BETWEEN 1 AND 200),
    role          text NOT NULL CHECK (role IN ('viewer', 'operator', 'engineer', 'admin')),
    github_login  text CHECK (github_login ~ '^[a-z0-9]([a-z0-9-]{0,38})$'),  -- lower-cased; NULL: none mapped
    name          text NOT NULL DEFAULT '',
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, provider, subject)
);
CREATE INDEX identities_by_login ON identities (tenant_id, github_login);

-- The base of a plan: for each model it touches, the deployed version (content hash and quality tests) it
-- was built against, and the tests it deploys for models it does not rebuild. Canonical JSON, hashed
-- together with the plan ID, so a row cannot be moved to another plan or edited unnoticed.
CREATE TABLE plan_bases (
    tenant_id    text NOT NULL REFERENCES tenants (tenant_id),
    plan_id      text NOT NULL CHECK (plan_id ~ '^[0-9a-f]{64}$'),
    document     text NOT NULL,
    base_hash    text NOT NULL CHECK (base_hash ~ '^[0-9a-f]{64}$'),
    recorded_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, plan_id)
);

ALTER TABLE models ADD COLUMN tests text;    -- the quality tests deployed with current_hash; NULL: not recorded
ALTER TABLE models ADD COLUMN plan_id text;  -- the plan that deployed the current version

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['identities', 'plan_bases']
    LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY tenant_isolation ON %I USING (tenant_id = current_setting(''app.tenant_id'', true)) '
                       'WITH CHECK (tenant_id = current_setting(''app.tenant_id'', true))', t);
    END LOOP;
END
$$;

GRANT SELECT, INSERT, UPDATE, DELETE ON identities, plan_bases TO ironlayer_app;
