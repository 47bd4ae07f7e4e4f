-- agent-gateway registry extension `agent_gateway_ext`, version 2: revocation without write access.
--
-- `agent-gateway dashboard` lets an operator revoke a permission, a signing key or a delegation scope
-- from a browser. It must not be able to do more: a role with UPDATE on revoked_at could also set it back
-- to NULL (un-revoke a compromised key) or to a date in the future, and PostgreSQL cannot limit a column
-- grant to some values. So the dashboard's role gets no write privilege on any registry table, only
-- EXECUTE on these three functions, each of which can only set revoked_at (and updated_at) to now() on a
-- row that is not revoked yet: the same UPDATE as `agent-gateway permission|principal|scope revoke`
-- (src/registry/writer.ts; test/integration/dashboard-role.test.ts checks that both leave the same row).
-- A stolen dashboard credential can therefore revoke (fail closed), never grant or restore.
--
-- SECURITY DEFINER: they run with the rights of the role that applies this file (the registry's owner).
-- Their search_path is pinned and every table is schema-qualified (the registry's schema, the one this
-- file is applied in), so a caller cannot redirect them with its own search_path or temporary tables.
-- EXECUTE is revoked from PUBLIC; `agent-gateway migrate --dashboard-role NAME` grants it to one role.
-- The extension's triggers (version 1) announce each revocation, so gateways close the tunnels at once.
--
-- Apply with `agent-gateway migrate`, or after 0001_live_authorization.sql with
--   psql -v ON_ERROR_STOP=1 --single-transaction -f migrations/extension/0002_dashboard_revocation.sql

DO $migration$
DECLARE
  registry text := current_schema();
BEGIN
  EXECUTE format($f$
    CREATE OR REPLACE FUNCTION agent_gateway_ext.revoke_permission(permission_id text) RETURNS boolean
    LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $body$
      WITH revoked AS (
        UPDATE %1$I.permission_registry SET revoked_at = now(), updated_at = now()
        WHERE permission_registry.permission_id = $1 AND revoked_at IS NULL
        RETURNING 1
      )
      SELECT count(*) > 0 FROM revoked
    $body$ $f$, registry);

  EXECUTE format($f$
    CREATE OR REPLACE FUNCTION agent_gateway_ext.revoke_signing_key(key_id text) RETURNS boolean
    LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $body$
      WITH revoked AS (
        UPDATE %1$I.principal_signing_keys SET revoked_at = now(), updated_at = now()
        WHERE principal_signing_keys.key_id = $1 AND revoked_at IS NULL
        RETURNING 1
      )
      SELECT count(*) > 0 FROM revoked
    $body$ $f$, registry);

  EXECUTE format($f$
    CREATE OR REPLACE FUNCTION agent_gateway_ext.revoke_scope(scope_id bigint) RETURNS boolean
    LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $body$
      WITH revoked AS (
        UPDATE %1$I.principal_key_permissions SET revoked_at = now(), updated_at = now()
        WHERE principal_key_permissions.id = $1 AND revoked_at IS NULL
        RETURNING 1
      )
      SELECT count(*) > 0 FROM revoked
    $body$ $f$, registry);
END
$migration$;

REVOKE ALL ON FUNCTION agent_gateway_ext.revoke_permission(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION agent_gateway_ext.revoke_signing_key(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION agent_gateway_ext.revoke_scope(bigint) FROM PUBLIC;

INSERT INTO agent_gateway_ext.schema_version (version) VALUES (2) ON CONFLICT (version) DO NOTHING;
