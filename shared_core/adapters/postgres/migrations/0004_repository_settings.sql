-- 0004: the execution resources of each mapped repository. A job resolves its git source and token, engine
-- and warehouse, blob prefix, planned branches and commit-status target from this row (bound to the job's
-- tenant), never from deployment-wide settings. Tokens are named here and kept encrypted in `credentials`.
-- A settings row belongs to exactly the tenant its repository is mapped to (the composite foreign key), and
-- row-level security keeps it private to that tenant: unlike the routing map, no other tenant may read it.

ALTER TABLE repository_tenants ADD CONSTRAINT repository_tenants_tenant_repository UNIQUE (tenant_id, repository);

CREATE TABLE repository_settings (
    tenant_id                    text NOT NULL,
    repository                   text NOT NULL CHECK (repository = lower(repository)),  -- as mapped: owner/name
    source_kind                  text NOT NULL CHECK (source_kind IN ('github', 'local')),
    source                       text NOT NULL CHECK (source <> ''),  -- github: owner/name; local: a path
    github_token_credential      text CHECK (github_token_credential ~ '^[a-z0-9_.-]{1,100}$'),
    engine                       text NOT NULL CHECK (engine IN ('duckdb', 'databricks')),
    warehouse                    text,  -- duckdb: a file path relative to the tenant's warehouse folder
    databricks_host              text,
    databricks_http_path         text,
    databricks_catalog           text,
    databricks_token_credential  text CHECK (databricks_token_credential ~ '^[a-z0-9_.-]{1,100}$'),
    blob_prefix                  text NOT NULL CHECK (  -- tenants/<tenant_id>/, or a folder beneath it
        starts_with(blob_prefix, 'tenants/' || tenant_id || '/') AND right(blob_prefix, 1) = '/'
        AND strpos(blob_prefix, '//') = 0 AND blob_prefix !~ '(^|/)\.\.?/' AND blob_prefix !~ '[\\[:cntrl:]]'),
    branches                     text[] NOT NULL CHECK (cardinality(branches) > 0),
    status_repository            text,  -- owner/name that gets commit statuses; NULL: statuses are only logged
    updated_at                   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, repository),
    FOREIGN KEY (tenant_id, repository) REFERENCES repository_tenants (tenant_id, repository) ON DELETE CASCADE,
    CHECK (engine <> 'duckdb' OR warehouse IS NOT NULL)
);

ALTER TABLE repository_settings ENABLE ROW LEVEL SECURITY;
ALTER TABLE repository_settings FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON repository_settings
    USING (tenant_id = current_setting('app.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('app.tenant_id', true));

GRANT SELECT, INSERT, UPDATE, DELETE ON repository_settings TO ironlayer_app;
