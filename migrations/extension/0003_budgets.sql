-- agent-gateway registry extension `agent_gateway_ext`, version 3: shared byte budgets.
--
-- With `[rate_limit] shared = true` every gateway process using this registry draws an identity's
-- upload, download and all-identity bytes, its quotas and its concurrent-tunnel cap from these tables, on
-- the database clock (clock_timestamp(), never a gateway's clock), so the limits hold across processes,
-- hosts, restarts and crashes. Not part of the interop contract (see 0001_live_authorization.sql).
--
-- Apply with `agent-gateway migrate`, or by hand after 0001 and 0002 (no BEGIN/COMMIT of its own; harmless twice):
--   psql -v ON_ERROR_STOP=1 --single-transaction -f migrations/extension/0003_budgets.sql
--
-- How it works:
-- - Token buckets (budget_buckets): tokens refill at the rate up to the burst, computed from the row's
--   updated_at on each call. A gateway leases bytes in bounded amounts (about 100 ms of the rate) and
--   shapes locally; a grant is a row in budget_leases. Unused bytes go back (budget_return) when a tunnel
--   closes or goes idle; a lease not returned before it expires (a crashed gateway) counts as spent.
-- - Quotas (budget_quota_usage): every grant is charged to a time slot of 1/1440 of the window (at least
--   one second). A grant is allowed only while the slots that overlap (now - window - slot, now] hold
--   less than the quota, so no window of that length, anywhere, holds more than the quota (to within
--   what is leased but not yet sent). The cost of the slots: budget is freed up to one slot later than
--   an exact sliding window would free it, never earlier.
-- - Tunnel caps (budget_tunnels): each gateway's count of open tunnels per identity, with an expiry
--   it heartbeats (budget_sync); a crashed gateway's counts stop counting once they expire.
--
-- The gateway's role gets no privilege on these tables. It calls the SECURITY DEFINER functions below
-- (EXECUTE granted by `agent-gateway migrate --gateway-role`), which check their arguments and write only
-- these tables. The *_at variants take the time as an argument, for tests; only their owner may call them.

CREATE TABLE IF NOT EXISTS agent_gateway_ext.budget_buckets (
  identity   TEXT             NOT NULL,
  bucket     TEXT             NOT NULL CHECK (bucket IN ('upload', 'download', 'total')),
  tokens     DOUBLE PRECISION NOT NULL CHECK (tokens >= 0),
  -- The rate and burst of the last lease, so that a return is capped as that lease was.
  rate       DOUBLE PRECISION NOT NULL CHECK (rate >= 0),
  burst      DOUBLE PRECISION NOT NULL CHECK (burst >= 0),
  updated_at TIMESTAMPTZ      NOT NULL,
  PRIMARY KEY (identity, bucket),
  -- The all-identity bucket has the empty identity, which no agent can have.
  CHECK ((bucket = 'total') = (identity = ''))
);

CREATE TABLE IF NOT EXISTS agent_gateway_ext.budget_quota_usage (
  identity   TEXT        NOT NULL CHECK (identity <> ''),
  direction  TEXT        NOT NULL CHECK (direction IN ('upload', 'download')),
  slot_start TIMESTAMPTZ NOT NULL,
  slot_end   TIMESTAMPTZ NOT NULL CHECK (slot_end > slot_start),
  bytes      BIGINT      NOT NULL CHECK (bytes >= 0),
  PRIMARY KEY (identity, direction, slot_start)
);
CREATE INDEX IF NOT EXISTS budget_quota_usage_by_end
  ON agent_gateway_ext.budget_quota_usage (identity, direction, slot_end);

-- When `quota exhausted` was last announced per identity and direction (once per window, all gateways).
CREATE TABLE IF NOT EXISTS agent_gateway_ext.budget_quota_notices (
  identity     TEXT        NOT NULL,
  direction    TEXT        NOT NULL CHECK (direction IN ('upload', 'download')),
  announced_at TIMESTAMPTZ NOT NULL,
  PRIMARY KEY (identity, direction)
);

CREATE TABLE IF NOT EXISTS agent_gateway_ext.budget_leases (
  lease_id   BIGINT      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  gateway_id TEXT        NOT NULL CHECK (gateway_id <> ''),
  identity   TEXT        NOT NULL,
  bucket     TEXT        NOT NULL CHECK (bucket IN ('upload', 'download', 'total')),
  -- The quota slot the grant was charged to (NULL: no quota), so a return credits that slot.
  slot_start TIMESTAMPTZ,
  -- Granted and not yet returned.
  bytes      BIGINT      NOT NULL CHECK (bytes >= 0),
  granted_at TIMESTAMPTZ NOT NULL,
  expires_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX IF NOT EXISTS budget_leases_by_expiry ON agent_gateway_ext.budget_leases (expires_at);
CREATE INDEX IF NOT EXISTS budget_leases_by_identity ON agent_gateway_ext.budget_leases (identity, bucket);

CREATE TABLE IF NOT EXISTS agent_gateway_ext.budget_tunnels (
  gateway_id TEXT        NOT NULL CHECK (gateway_id <> ''),
  identity   TEXT        NOT NULL CHECK (identity <> ''),
  tunnels    INTEGER     NOT NULL CHECK (tunnels >= 0),
  expires_at TIMESTAMPTZ NOT NULL,
  PRIMARY KEY (gateway_id, identity)
);
CREATE INDEX IF NOT EXISTS budget_tunnels_by_identity ON agent_gateway_ext.budget_tunnels (identity);

-- The quota arithmetic, in one place -------------------------------------------------------------------

-- Slot length for a window: 1/1440 of it (a minute for a day), at least a second.
CREATE OR REPLACE FUNCTION agent_gateway_ext.budget_slot_seconds(p_window_s INTEGER) RETURNS INTEGER
LANGUAGE sql IMMUTABLE STRICT
SET search_path = pg_catalog, pg_temp
AS $$ SELECT greatest(1, ceil(p_window_s / 1440.0))::integer $$;

-- Bytes charged to every slot that overlaps (p_now - window - slot, p_now]: a slot counts while its end
-- is inside the window, so a byte granted at any moment of it is counted for at least the whole window.
CREATE OR REPLACE FUNCTION agent_gateway_ext.budget_quota_used_at(
  p_identity TEXT, p_direction TEXT, p_window_s INTEGER, p_now TIMESTAMPTZ
) RETURNS BIGINT
LANGUAGE sql STABLE STRICT
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT coalesce(sum(bytes), 0)::bigint FROM agent_gateway_ext.budget_quota_usage
  WHERE identity = p_identity AND direction = p_direction
    AND slot_end > p_now - make_interval(secs => p_window_s)
$$;

-- Seconds from p_now until enough charged slots have left the window for `p_needed` more bytes to fit
-- under the quota (0 when they already fit). A quota smaller than p_needed never fits: one window.
CREATE OR REPLACE FUNCTION agent_gateway_ext.budget_quota_retry_at(
  p_identity TEXT, p_direction TEXT, p_quota BIGINT, p_window_s INTEGER, p_needed BIGINT, p_now TIMESTAMPTZ
) RETURNS DOUBLE PRECISION
LANGUAGE plpgsql STABLE STRICT
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  excess BIGINT := agent_gateway_ext.budget_quota_used_at(p_identity, p_direction, p_window_s, p_now)
                   + p_needed - p_quota;
  freed  BIGINT := 0;
  slot   RECORD;
BEGIN
  IF excess <= 0 THEN RETURN 0; END IF;
  IF p_needed > p_quota THEN RETURN p_window_s; END IF;
  FOR slot IN
    SELECT slot_end, bytes FROM agent_gateway_ext.budget_quota_usage
    WHERE identity = p_identity AND direction = p_direction
      AND slot_end > p_now - make_interval(secs => p_window_s)
    ORDER BY slot_end
  LOOP
    freed := freed + slot.bytes;
    IF freed >= excess THEN
      RETURN greatest(0, extract(epoch FROM slot.slot_end + make_interval(secs => p_window_s) - p_now));
    END IF;
  END LOOP;
  RETURN p_window_s;
END
$$;

-- A bucket's tokens at p_now (refilled from its row), or the burst for a bucket that has no row yet.
CREATE OR REPLACE FUNCTION agent_gateway_ext.budget_refilled(
  p_tokens DOUBLE PRECISION, p_updated_at TIMESTAMPTZ, p_rate DOUBLE PRECISION, p_burst DOUBLE PRECISION,
  p_now TIMESTAMPTZ
) RETURNS DOUBLE PRECISION
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT CASE WHEN p_tokens IS NULL THEN p_burst
    -- A clock that stepped back adds nothing (greatest 0); one that stepped forward adds at most the burst.
    ELSE least(p_burst, p_tokens + p_rate * greatest(0, extract(epoch FROM p_now - p_updated_at))) END
$$;

CREATE OR REPLACE FUNCTION agent_gateway_ext.budget_check_args(
  p_identity TEXT, p_bucket TEXT, p_rate DOUBLE PRECISION, p_burst DOUBLE PRECISION, p_quota BIGINT,
  p_window_s INTEGER
) RETURNS VOID
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF p_bucket IS NULL OR p_bucket NOT IN ('upload', 'download', 'total') THEN
    RAISE EXCEPTION 'bucket must be upload, download or total, not %', p_bucket USING ERRCODE = '22023';
  END IF;
  IF p_identity IS NULL OR ((p_bucket = 'total') <> (p_identity = '')) THEN
    RAISE EXCEPTION 'the total bucket has the empty identity, every other bucket a non-empty one'
      USING ERRCODE = '22023';
  END IF;
  IF p_rate IS NULL OR p_rate < 0 OR p_burst IS NULL OR p_burst < 0 OR (p_rate > 0 AND p_burst = 0)
     OR p_quota IS NULL OR p_quota < 0 OR (p_quota > 0 AND p_bucket = 'total')
     OR p_window_s IS NULL OR p_window_s < 1 OR p_window_s > 2678400 THEN
    RAISE EXCEPTION 'rate, burst, quota or window out of range' USING ERRCODE = '22023';
  END IF;
END
$$;

-- Leasing ------------------------------------------------------------------------------------------------

-- Grants up to p_want bytes (at least p_min, else none) from a bucket at p_rate/p_burst and, for an
-- identity's bucket, its quota. Returns the grant, and for none: when to ask again (retry_ms) and whether
-- the quota is what is spent (announce: this caller is the first to see it spent in this window).
CREATE OR REPLACE FUNCTION agent_gateway_ext.budget_lease_at(
  p_gateway TEXT, p_identity TEXT, p_bucket TEXT, p_rate DOUBLE PRECISION, p_burst DOUBLE PRECISION,
  p_quota BIGINT, p_window_s INTEGER, p_want BIGINT, p_min BIGINT, p_ttl_s INTEGER, p_now TIMESTAMPTZ
) RETURNS TABLE (
  lease_id BIGINT, granted BIGINT, retry_ms BIGINT, quota_exhausted BOOLEAN, announce BOOLEAN,
  quota_used BIGINT
)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  b          RECORD;
  bucket_tokens DOUBLE PRECISION := 'Infinity';
  quota_left DOUBLE PRECISION := 'Infinity';
  used       BIGINT := 0;
  slot_len   INTEGER;
  slot_from  TIMESTAMPTZ;
BEGIN
  PERFORM agent_gateway_ext.budget_check_args(p_identity, p_bucket, p_rate, p_burst, p_quota, p_window_s);
  IF p_gateway IS NULL OR p_gateway = '' OR p_want IS NULL OR p_min IS NULL OR p_min < 1 OR p_want < p_min
     OR p_want > 1099511627776 OR p_ttl_s IS NULL OR p_ttl_s < 1 OR p_ttl_s > 3600 OR p_now IS NULL THEN
    RAISE EXCEPTION 'gateway, want, min or ttl out of range' USING ERRCODE = '22023';
  END IF;
  lease_id := NULL; granted := 0; retry_ms := NULL; quota_exhausted := false; announce := false;
  quota_used := NULL;

  IF p_rate > 0 THEN
    INSERT INTO agent_gateway_ext.budget_buckets AS t (identity, bucket, tokens, rate, burst, updated_at)
    VALUES (p_identity, p_bucket, p_burst, p_rate, p_burst, p_now)
    ON CONFLICT (identity, bucket) DO NOTHING;
    SELECT t.tokens, t.updated_at INTO b FROM agent_gateway_ext.budget_buckets t
    WHERE t.identity = p_identity AND t.bucket = p_bucket FOR UPDATE;
    bucket_tokens := agent_gateway_ext.budget_refilled(b.tokens, b.updated_at, p_rate, p_burst, p_now);
  END IF;

  IF p_quota > 0 THEN
    -- One quota decision at a time per identity and direction, so two gateways cannot both see room.
    PERFORM pg_advisory_xact_lock(hashtextextended('agent_gateway_ext.quota ' || p_bucket || ' ' || p_identity, 0));
    used := agent_gateway_ext.budget_quota_used_at(p_identity, p_bucket, p_window_s, p_now);
    quota_left := greatest(0, p_quota - used);
    quota_used := used;
  END IF;

  IF least(bucket_tokens, quota_left) >= p_min THEN
    granted := floor(least(p_want::double precision, bucket_tokens, quota_left))::bigint;
  END IF;

  IF granted > 0 THEN
    IF p_rate > 0 THEN
      UPDATE agent_gateway_ext.budget_buckets t
      SET tokens = greatest(0, bucket_tokens - granted), rate = p_rate, burst = p_burst, updated_at = p_now
      WHERE t.identity = p_identity AND t.bucket = p_bucket;
    END IF;
    IF p_quota > 0 THEN
      slot_len := agent_gateway_ext.budget_slot_seconds(p_window_s);
      slot_from := to_timestamp(floor(extract(epoch FROM p_now) / slot_len) * slot_len);
      INSERT INTO agent_gateway_ext.budget_quota_usage AS u (identity, direction, slot_start, slot_end, bytes)
      VALUES (p_identity, p_bucket, slot_from, slot_from + make_interval(secs => slot_len), granted)
      ON CONFLICT (identity, direction, slot_start) DO UPDATE SET bytes = u.bytes + excluded.bytes;
      quota_used := used + granted;
    END IF;
    INSERT INTO agent_gateway_ext.budget_leases (gateway_id, identity, bucket, slot_start, bytes, granted_at, expires_at)
    VALUES (p_gateway, p_identity, p_bucket, CASE WHEN p_quota > 0 THEN slot_from END, granted, p_now,
            p_now + make_interval(secs => p_ttl_s))
    RETURNING budget_leases.lease_id INTO lease_id;
  ELSIF quota_left < p_min AND quota_left <= bucket_tokens THEN
    quota_exhausted := true;
    retry_ms := ceil(1000 * agent_gateway_ext.budget_quota_retry_at(
      p_identity, p_bucket, p_quota, p_window_s, p_min, p_now))::bigint;
    INSERT INTO agent_gateway_ext.budget_quota_notices AS n (identity, direction, announced_at)
    VALUES (p_identity, p_bucket, p_now)
    ON CONFLICT (identity, direction) DO UPDATE SET announced_at = excluded.announced_at
      WHERE n.announced_at <= p_now - make_interval(secs => p_window_s);
    announce := FOUND;
  ELSE
    retry_ms := ceil(1000 * (p_min - bucket_tokens) / p_rate)::bigint;
  END IF;

  -- Housekeeping on the rows this call touched: slots that no longer count, this gateway's expired leases.
  IF p_quota > 0 THEN
    DELETE FROM agent_gateway_ext.budget_quota_usage u
    WHERE u.identity = p_identity AND u.direction = p_bucket
      AND u.slot_end <= p_now - make_interval(secs => p_window_s);
  END IF;
  RETURN NEXT;
END
$$;

-- Hands back unused bytes of leases this gateway holds: to the bucket (up to its burst) and to the quota
-- slot each was charged to. A lease past its expiry is not taken back (it counts as spent). Returns the
-- bytes taken back.
CREATE OR REPLACE FUNCTION agent_gateway_ext.budget_return_at(
  p_gateway TEXT, p_lease_ids BIGINT[], p_bytes BIGINT[], p_now TIMESTAMPTZ
) RETURNS BIGINT
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  i     INTEGER;
  l     RECORD;
  back  BIGINT;
  total BIGINT := 0;
BEGIN
  IF p_gateway IS NULL OR p_lease_ids IS NULL OR p_bytes IS NULL OR p_now IS NULL
     OR cardinality(p_lease_ids) <> cardinality(p_bytes) OR cardinality(p_lease_ids) > 1000 THEN
    RAISE EXCEPTION 'lease ids and bytes must be arrays of one length (at most 1000)' USING ERRCODE = '22023';
  END IF;
  FOR i IN 1 .. cardinality(p_lease_ids) LOOP
    SELECT * INTO l FROM agent_gateway_ext.budget_leases
    WHERE lease_id = p_lease_ids[i] AND gateway_id = p_gateway AND expires_at > p_now FOR UPDATE;
    IF NOT FOUND OR p_bytes[i] IS NULL OR p_bytes[i] <= 0 THEN CONTINUE; END IF;
    back := least(p_bytes[i], l.bytes);
    UPDATE agent_gateway_ext.budget_buckets t
    SET tokens = least(t.burst, agent_gateway_ext.budget_refilled(t.tokens, t.updated_at, t.rate, t.burst, p_now) + back),
        updated_at = p_now
    WHERE t.identity = l.identity AND t.bucket = l.bucket AND t.updated_at <= p_now;
    IF l.slot_start IS NOT NULL THEN
      UPDATE agent_gateway_ext.budget_quota_usage u SET bytes = greatest(0, u.bytes - back)
      WHERE u.identity = l.identity AND u.direction = l.bucket AND u.slot_start = l.slot_start;
    END IF;
    IF back >= l.bytes THEN
      DELETE FROM agent_gateway_ext.budget_leases WHERE lease_id = l.lease_id;
    ELSE
      UPDATE agent_gateway_ext.budget_leases SET bytes = bytes - back WHERE lease_id = l.lease_id;
    END IF;
    total := total + back;
  END LOOP;
  RETURN total;
END
$$;

-- Tunnels ----------------------------------------------------------------------------------------------

-- A new tunnel of an identity, across every gateway: refused while a quota is spent (with the seconds
-- until one has room again) or while the unexpired counts of all gateways reach p_max (0 = no cap);
-- otherwise counted under this gateway, whose row then lives for p_ttl_s unless heartbeated.
CREATE OR REPLACE FUNCTION agent_gateway_ext.budget_tunnel_admit_at(
  p_gateway TEXT, p_identity TEXT, p_max INTEGER, p_ttl_s INTEGER,
  p_up_quota BIGINT, p_up_window_s INTEGER, p_down_quota BIGINT, p_down_window_s INTEGER, p_now TIMESTAMPTZ
) RETURNS TABLE (status TEXT, open_tunnels INTEGER, retry_after_s DOUBLE PRECISION, direction TEXT)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  q RECORD;
BEGIN
  IF p_gateway IS NULL OR p_gateway = '' OR p_identity IS NULL OR p_identity = '' OR p_max IS NULL OR p_max < 0
     OR p_ttl_s IS NULL OR p_ttl_s < 1 OR p_ttl_s > 3600 OR p_now IS NULL THEN
    RAISE EXCEPTION 'gateway, identity, cap or ttl out of range' USING ERRCODE = '22023';
  END IF;
  PERFORM agent_gateway_ext.budget_check_args(p_identity, 'upload', 0, 0, p_up_quota, p_up_window_s);
  PERFORM agent_gateway_ext.budget_check_args(p_identity, 'download', 0, 0, p_down_quota, p_down_window_s);
  PERFORM pg_advisory_xact_lock(hashtextextended('agent_gateway_ext.tunnels ' || p_identity, 0));
  status := 'ok'; open_tunnels := 0; retry_after_s := NULL; direction := NULL;
  FOR q IN SELECT * FROM (VALUES ('upload', p_up_quota, p_up_window_s), ('download', p_down_quota, p_down_window_s))
           AS v(dir, quota, window_s) WHERE v.quota > 0
  LOOP
    IF agent_gateway_ext.budget_quota_used_at(p_identity, q.dir, q.window_s, p_now) >= q.quota THEN
      status := 'over_quota';
      direction := q.dir;
      -- When a useful amount fits again: 64 KiB, or the whole quota if it is smaller.
      retry_after_s := agent_gateway_ext.budget_quota_retry_at(
        p_identity, q.dir, q.quota, q.window_s, least(q.quota, 65536), p_now);
      RETURN NEXT;
      RETURN;
    END IF;
  END LOOP;
  SELECT coalesce(sum(t.tunnels), 0)::integer INTO open_tunnels FROM agent_gateway_ext.budget_tunnels t
  WHERE t.identity = p_identity AND t.expires_at > p_now;
  IF p_max > 0 AND open_tunnels >= p_max THEN
    status := 'too_many_tunnels';
    RETURN NEXT;
    RETURN;
  END IF;
  INSERT INTO agent_gateway_ext.budget_tunnels AS t (gateway_id, identity, tunnels, expires_at)
  VALUES (p_gateway, p_identity, 1, p_now + make_interval(secs => p_ttl_s))
  ON CONFLICT (gateway_id, identity) DO UPDATE
    SET tunnels = CASE WHEN t.expires_at > p_now THEN t.tunnels + 1 ELSE 1 END, expires_at = excluded.expires_at;
  open_tunnels := open_tunnels + 1;
  RETURN NEXT;
END
$$;

CREATE OR REPLACE FUNCTION agent_gateway_ext.budget_tunnel_release_at(
  p_gateway TEXT, p_identity TEXT, p_now TIMESTAMPTZ
) RETURNS VOID
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
  UPDATE agent_gateway_ext.budget_tunnels SET tunnels = greatest(0, tunnels - 1)
  WHERE gateway_id = p_gateway AND identity = p_identity
$$;

-- This gateway's heartbeat: its rows become exactly these counts (corrects anything a failed call left
-- behind, e.g. during an outage) and live p_ttl_s longer. Also drops what no longer counts anywhere:
-- expired leases and tunnel rows, from any gateway.
CREATE OR REPLACE FUNCTION agent_gateway_ext.budget_sync_at(
  p_gateway TEXT, p_identities TEXT[], p_counts INTEGER[], p_ttl_s INTEGER, p_now TIMESTAMPTZ
) RETURNS VOID
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF p_gateway IS NULL OR p_gateway = '' OR p_identities IS NULL OR p_counts IS NULL
     OR cardinality(p_identities) <> cardinality(p_counts) OR p_ttl_s IS NULL OR p_ttl_s < 1 OR p_ttl_s > 3600
     OR p_now IS NULL OR EXISTS (SELECT 1 FROM unnest(p_identities, p_counts) AS v(i, c)
                                 WHERE i IS NULL OR i = '' OR c IS NULL OR c < 0) THEN
    RAISE EXCEPTION 'identities and counts must be arrays of one length, counts >= 0' USING ERRCODE = '22023';
  END IF;
  DELETE FROM agent_gateway_ext.budget_tunnels t
  WHERE t.gateway_id = p_gateway AND NOT (t.identity = ANY (p_identities));
  INSERT INTO agent_gateway_ext.budget_tunnels AS t (gateway_id, identity, tunnels, expires_at)
  SELECT p_gateway, v.i, v.c, p_now + make_interval(secs => p_ttl_s) FROM unnest(p_identities, p_counts) AS v(i, c)
  ON CONFLICT (gateway_id, identity) DO UPDATE SET tunnels = excluded.tunnels, expires_at = excluded.expires_at;
  DELETE FROM agent_gateway_ext.budget_tunnels t WHERE t.expires_at <= p_now;
  DELETE FROM agent_gateway_ext.budget_leases l WHERE l.expires_at <= p_now;
END
$$;

-- A gateway that stops cleanly: its tunnels are gone (its leases it has returned itself).
CREATE OR REPLACE FUNCTION agent_gateway_ext.budget_gateway_stop_at(p_gateway TEXT, p_now TIMESTAMPTZ)
RETURNS VOID
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$ DELETE FROM agent_gateway_ext.budget_tunnels WHERE gateway_id = p_gateway $$;

-- What `agent-gateway budget show` prints for one bucket of an identity, at p_now, under the given limits.
CREATE OR REPLACE FUNCTION agent_gateway_ext.budget_peek_at(
  p_identity TEXT, p_bucket TEXT, p_rate DOUBLE PRECISION, p_burst DOUBLE PRECISION, p_quota BIGINT,
  p_window_s INTEGER, p_now TIMESTAMPTZ
) RETURNS TABLE (
  tokens DOUBLE PRECISION, quota_used BIGINT, quota_retry_s DOUBLE PRECISION, leased BIGINT, open_tunnels INTEGER
)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  b RECORD;
BEGIN
  PERFORM agent_gateway_ext.budget_check_args(p_identity, p_bucket, p_rate, p_burst, p_quota, p_window_s);
  SELECT t.tokens, t.updated_at INTO b FROM agent_gateway_ext.budget_buckets t
  WHERE t.identity = p_identity AND t.bucket = p_bucket;
  tokens := CASE WHEN p_rate > 0 THEN agent_gateway_ext.budget_refilled(b.tokens, b.updated_at, p_rate, p_burst, p_now) END;
  quota_used := CASE WHEN p_quota > 0 OR p_bucket <> 'total'
    THEN agent_gateway_ext.budget_quota_used_at(p_identity, p_bucket, p_window_s, p_now) END;
  quota_retry_s := CASE WHEN p_quota > 0
    THEN agent_gateway_ext.budget_quota_retry_at(p_identity, p_bucket, p_quota, p_window_s, least(p_quota, 65536), p_now) END;
  SELECT coalesce(sum(l.bytes), 0)::bigint INTO leased FROM agent_gateway_ext.budget_leases l
  WHERE l.identity = p_identity AND l.bucket = p_bucket AND l.expires_at > p_now;
  SELECT coalesce(sum(t.tunnels), 0)::integer INTO open_tunnels FROM agent_gateway_ext.budget_tunnels t
  WHERE t.identity = p_identity AND t.expires_at > p_now;
  RETURN NEXT;
END
$$;

-- Every identity that has budget state.
CREATE OR REPLACE FUNCTION agent_gateway_ext.budget_identities() RETURNS SETOF TEXT
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT identity FROM agent_gateway_ext.budget_buckets WHERE identity <> ''
  UNION SELECT identity FROM agent_gateway_ext.budget_quota_usage
  UNION SELECT identity FROM agent_gateway_ext.budget_tunnels
  ORDER BY 1
$$;

-- What the gateway's role calls: the same functions on the database clock ------------------------------

CREATE OR REPLACE FUNCTION agent_gateway_ext.budget_lease(
  p_gateway TEXT, p_identity TEXT, p_bucket TEXT, p_rate DOUBLE PRECISION, p_burst DOUBLE PRECISION,
  p_quota BIGINT, p_window_s INTEGER, p_want BIGINT, p_min BIGINT, p_ttl_s INTEGER
) RETURNS TABLE (
  lease_id BIGINT, granted BIGINT, retry_ms BIGINT, quota_exhausted BOOLEAN, announce BOOLEAN,
  quota_used BIGINT
)
LANGUAGE sql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$ SELECT * FROM agent_gateway_ext.budget_lease_at(p_gateway, p_identity, p_bucket, p_rate, p_burst,
        p_quota, p_window_s, p_want, p_min, p_ttl_s, clock_timestamp()) $$;

CREATE OR REPLACE FUNCTION agent_gateway_ext.budget_return(p_gateway TEXT, p_lease_ids BIGINT[], p_bytes BIGINT[])
RETURNS BIGINT
LANGUAGE sql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$ SELECT agent_gateway_ext.budget_return_at(p_gateway, p_lease_ids, p_bytes, clock_timestamp()) $$;

CREATE OR REPLACE FUNCTION agent_gateway_ext.budget_tunnel_admit(
  p_gateway TEXT, p_identity TEXT, p_max INTEGER, p_ttl_s INTEGER,
  p_up_quota BIGINT, p_up_window_s INTEGER, p_down_quota BIGINT, p_down_window_s INTEGER
) RETURNS TABLE (status TEXT, open_tunnels INTEGER, retry_after_s DOUBLE PRECISION, direction TEXT)
LANGUAGE sql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$ SELECT * FROM agent_gateway_ext.budget_tunnel_admit_at(p_gateway, p_identity, p_max, p_ttl_s,
        p_up_quota, p_up_window_s, p_down_quota, p_down_window_s, clock_timestamp()) $$;

CREATE OR REPLACE FUNCTION agent_gateway_ext.budget_tunnel_release(p_gateway TEXT, p_identity TEXT)
RETURNS VOID
LANGUAGE sql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$ SELECT agent_gateway_ext.budget_tunnel_release_at(p_gateway, p_identity, clock_timestamp()) $$;

CREATE OR REPLACE FUNCTION agent_gateway_ext.budget_sync(
  p_gateway TEXT, p_identities TEXT[], p_counts INTEGER[], p_ttl_s INTEGER
) RETURNS VOID
LANGUAGE sql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$ SELECT agent_gateway_ext.budget_sync_at(p_gateway, p_identities, p_counts, p_ttl_s, clock_timestamp()) $$;

CREATE OR REPLACE FUNCTION agent_gateway_ext.budget_gateway_stop(p_gateway TEXT) RETURNS VOID
LANGUAGE sql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$ SELECT agent_gateway_ext.budget_gateway_stop_at(p_gateway, clock_timestamp()) $$;

CREATE OR REPLACE FUNCTION agent_gateway_ext.budget_peek(
  p_identity TEXT, p_bucket TEXT, p_rate DOUBLE PRECISION, p_burst DOUBLE PRECISION, p_quota BIGINT,
  p_window_s INTEGER
) RETURNS TABLE (
  tokens DOUBLE PRECISION, quota_used BIGINT, quota_retry_s DOUBLE PRECISION, leased BIGINT, open_tunnels INTEGER
)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$ SELECT * FROM agent_gateway_ext.budget_peek_at(p_identity, p_bucket, p_rate, p_burst, p_quota,
        p_window_s, clock_timestamp()) $$;

CREATE OR REPLACE FUNCTION agent_gateway_ext.budget_list_identities() RETURNS SETOF TEXT
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$ SELECT agent_gateway_ext.budget_identities() $$;

-- Functions are executable by PUBLIC by default: only the owner (and the role migrate grants) may call these.
DO $$
DECLARE
  f RECORD;
BEGIN
  FOR f IN
    SELECT p.oid::regprocedure AS sig FROM pg_catalog.pg_proc p
    JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
    WHERE n.nspname = 'agent_gateway_ext' AND p.proname LIKE 'budget\_%'
  LOOP
    EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f.sig);
  END LOOP;
END
$$;

INSERT INTO agent_gateway_ext.schema_version (version) VALUES (3) ON CONFLICT (version) DO NOTHING;
