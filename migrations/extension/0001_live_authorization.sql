-- agent-gateway registry extension `agent_gateway_ext`, version 1: change notifications for live
-- authorization.
--
-- Not part of the interop contract: the original gateway requires agent_gateway_schema_version to be
-- exactly 1, so everything this implementation adds to a registry lives in its own schema with its own
-- version table, and the registry schema stays at 1. The original keeps working against a registry that
-- has this extension; this gateway keeps working against one that does not (open tunnels are then
-- re-validated by periodic re-checks only, and the decision cache stays off).
--
-- Apply with `agent-gateway migrate` (after the registry migrations), or by hand, after
-- migrations/0001_initial.sql and in name order:
--   psql -v ON_ERROR_STOP=1 --single-transaction -f migrations/extension/0001_live_authorization.sql
-- Like the registry files it has no BEGIN/COMMIT of its own and is harmless to run twice.
--
-- What it does: any UPDATE, DELETE or TRUNCATE of the three registry tables, by any tool (the CLI, plain
-- psql, another program), sends NOTIFY agent_gateway_registry_changed when its transaction commits.
-- Gateways LISTEN on that channel and re-check every open tunnel at once. INSERTs are not announced:
-- a new row can only allow more (a permission, a key, a wider scope), never revoke an open tunnel or a
-- cached allow. Statement-level triggers: one notification per statement, not per row, and PostgreSQL
-- folds identical notifications of one transaction into one. The payload is informational only; the
-- gateway never trusts it and re-reads the rows.
--
-- The gateway's own role needs no privilege for this (LISTEN needs none): see `migrate --gateway-role`.

CREATE SCHEMA IF NOT EXISTS agent_gateway_ext;

CREATE TABLE IF NOT EXISTS agent_gateway_ext.schema_version (
  version    INTEGER     PRIMARY KEY,
  applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE OR REPLACE FUNCTION agent_gateway_ext.notify_registry_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('agent_gateway_registry_changed', TG_TABLE_NAME || ' ' || TG_OP);
  RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS agent_gateway_ext_notify_change ON permission_registry;
CREATE TRIGGER agent_gateway_ext_notify_change
  AFTER UPDATE OR DELETE OR TRUNCATE ON permission_registry
  FOR EACH STATEMENT EXECUTE FUNCTION agent_gateway_ext.notify_registry_change();

DROP TRIGGER IF EXISTS agent_gateway_ext_notify_change ON principal_signing_keys;
CREATE TRIGGER agent_gateway_ext_notify_change
  AFTER UPDATE OR DELETE OR TRUNCATE ON principal_signing_keys
  FOR EACH STATEMENT EXECUTE FUNCTION agent_gateway_ext.notify_registry_change();

DROP TRIGGER IF EXISTS agent_gateway_ext_notify_change ON principal_key_permissions;
CREATE TRIGGER agent_gateway_ext_notify_change
  AFTER UPDATE OR DELETE OR TRUNCATE ON principal_key_permissions
  FOR EACH STATEMENT EXECUTE FUNCTION agent_gateway_ext.notify_registry_change();

INSERT INTO agent_gateway_ext.schema_version (version) VALUES (1) ON CONFLICT (version) DO NOTHING;
