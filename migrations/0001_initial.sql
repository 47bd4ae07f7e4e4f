-- agent-gateway registry schema, version 1 (the interop contract shared with the Rust agent-gateway).
--
-- Plain SQL on purpose: operators may apply it with
--   psql -v ON_ERROR_STOP=1 --single-transaction -f migrations/0001_initial.sql
-- instead of `agent-gateway migrate`. The file has no BEGIN/COMMIT of its own because the migrator runs
-- every file inside its own transaction. IF NOT EXISTS / ON CONFLICT keep a repeated psql run harmless.
--
-- The gateway's database role needs only SELECT on these tables; writes belong to the admin tooling.

CREATE TABLE IF NOT EXISTS agent_gateway_schema_version (
  version    INTEGER     PRIMARY KEY,
  applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Principals' signing keys. A permission row is only as good as the key that signed it.
CREATE TABLE IF NOT EXISTS principal_signing_keys (
  key_id              TEXT        PRIMARY KEY,
  algorithm           TEXT        NOT NULL,
  public_key_spki_der BYTEA       NOT NULL,
  not_before          TIMESTAMPTZ NOT NULL,
  not_after           TIMESTAMPTZ NOT NULL,
  revoked_at          TIMESTAMPTZ NULL,
  created_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
  updated_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
  CONSTRAINT principal_signing_keys_key_id_not_empty CHECK (key_id <> ''),
  CONSTRAINT principal_signing_keys_algorithm_supported CHECK (algorithm = 'ecdsa_p256_sha256'),
  CONSTRAINT principal_signing_keys_public_key_unique UNIQUE (public_key_spki_der),
  CONSTRAINT principal_signing_keys_window_ordered CHECK (not_before < not_after)
);

-- Delegation scope: which destinations a signing key may grant, and for how long.
CREATE TABLE IF NOT EXISTS principal_key_permissions (
  id             BIGSERIAL   PRIMARY KEY,
  signing_key_id TEXT        NOT NULL REFERENCES principal_signing_keys (key_id),
  destination    TEXT        NOT NULL,
  not_before     TIMESTAMPTZ NOT NULL,
  not_after      TIMESTAMPTZ NOT NULL,
  revoked_at     TIMESTAMPTZ NULL,
  created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
  updated_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
  -- Normalization (host:port, lower-case host) is the writer's job; SQL can only refuse the empty string.
  CONSTRAINT principal_key_permissions_destination_not_empty CHECK (destination <> ''),
  CONSTRAINT principal_key_permissions_window_ordered CHECK (not_before < not_after)
);

-- Signed grants: subject (identity + exact key) may CONNECT to destination inside the window.
CREATE TABLE IF NOT EXISTS permission_registry (
  permission_id               TEXT        PRIMARY KEY,
  signing_key_id              TEXT        NOT NULL REFERENCES principal_signing_keys (key_id),
  subject_identity            TEXT        NOT NULL,
  subject_public_key_spki_der BYTEA       NOT NULL,
  destination                 TEXT        NOT NULL,
  not_before                  TIMESTAMPTZ NOT NULL,
  not_after                   TIMESTAMPTZ NOT NULL,
  revoked_at                  TIMESTAMPTZ NULL,
  signature                   BYTEA       NOT NULL,
  created_at                  TIMESTAMPTZ NOT NULL DEFAULT now(),
  updated_at                  TIMESTAMPTZ NOT NULL DEFAULT now(),
  CONSTRAINT permission_registry_permission_id_not_empty CHECK (permission_id <> ''),
  CONSTRAINT permission_registry_subject_identity_not_empty CHECK (subject_identity <> ''),
  CONSTRAINT permission_registry_destination_not_empty CHECK (destination <> ''),
  CONSTRAINT permission_registry_window_ordered CHECK (not_before < not_after)
);

-- The gateway's per-CONNECT lookup: live rows for (identity, destination, key), newest expiry first.
CREATE INDEX IF NOT EXISTS permission_registry_live_lookup_idx
  ON permission_registry (subject_identity, destination, subject_public_key_spki_der, not_after DESC)
  WHERE revoked_at IS NULL;

-- The delegation check joined into the same lookup.
CREATE INDEX IF NOT EXISTS principal_key_permissions_live_lookup_idx
  ON principal_key_permissions (signing_key_id, destination)
  WHERE revoked_at IS NULL;

INSERT INTO agent_gateway_schema_version (version) VALUES (1) ON CONFLICT (version) DO NOTHING;
