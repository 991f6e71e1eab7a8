-- The two IronLayer roles of a deployment's PostgreSQL, created (or given new passwords) by the server
-- administrator, connected to the `ironlayer` database. Safe to run again: it only creates what is missing
-- and sets both passwords, which is how they are rotated (docs/deploy.md).
--
--   psql "host=$PGHOST dbname=ironlayer user=$PGADMIN sslmode=verify-full sslrootcert=$PGCA" \
--        -v owner_password="$OWNER_PASSWORD" -v app_password="$APP_PASSWORD" -f infra/postgres/roles.sql
--
-- ironlayer_owner runs the migrations (IRONLAYER_MIGRATION_DATABASE_URL) and owns every table; it may create
-- in the public schema and nothing else. ironlayer_app is what the Functions app connects as
-- (IRONLAYER_DATABASE_URL): no superuser, not the owner, no BYPASSRLS, so row-level security binds it to one
-- tenant per transaction; the migrations grant it exactly the table privileges it needs (0003_security.sql
-- creates it with these same attributes when it is missing, as on a development server).

\set ON_ERROR_STOP on

SELECT 'CREATE ROLE ironlayer_owner LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS'
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ironlayer_owner') \gexec

SELECT 'CREATE ROLE ironlayer_app LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS NOINHERIT'
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ironlayer_app') \gexec

SELECT format('ALTER ROLE ironlayer_owner PASSWORD %L', :'owner_password') \gexec
SELECT format('ALTER ROLE ironlayer_app PASSWORD %L', :'app_password') \gexec

-- Only the two roles (and the administrator, who owns the database) may connect.
REVOKE ALL ON DATABASE ironlayer FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE ironlayer TO ironlayer_owner;
GRANT CONNECT ON DATABASE ironlayer TO ironlayer_app;

-- The owner creates the schema objects in `public` and passes USAGE on to the application role.
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO ironlayer_owner WITH GRANT OPTION;
GRANT CREATE ON SCHEMA public TO ironlayer_owner;
