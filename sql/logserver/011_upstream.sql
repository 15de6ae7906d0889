-- The upstream replay outbox (package logserver/upstream): one row per
-- write to a local log that must also reach the configured upstream log.
-- The row is inserted before the local write, with the ORIGINAL request
-- body (a dsse or intoto canonical body drops the payload and cannot be
-- resubmitted), so an entry acknowledged locally is replayed even after a
-- crash right after the 201.
--   api        'v1' (the Rekor v1 log -> a Rekor v1 upstream) or 'v2'.
--   state      'awaiting_local': inserted, the local write not yet answered
--              (or the process died before it did); forwarded once the
--              leaf is in the local log, deleted after the grace if never.
--              'pending': logged locally, waiting for the upstream
--              (transparency_pending). 'forwarded': the upstream has it.
--              'failed': the upstream refused it (last_error says why);
--              kept for the operator.
--   upstream_*  what the upstream recorded; upstream_verified: its answer
--              was verified (body, inclusion proof, checkpoint, SET); a v2
--              409 carries no proof and is recorded unverified.
--   leased_until, lease_owner: a forwarder's claim (several replicas may
--              share the database); an expired lease is free again.
CREATE TABLE IF NOT EXISTS upstream_outbox (
  id                BIGINT NOT NULL AUTO_INCREMENT,
  api               ENUM('v1', 'v2') NOT NULL,
  leaf_hash         BINARY(32) NOT NULL,
  body              MEDIUMBLOB NOT NULL,
  state             ENUM('awaiting_local', 'pending', 'forwarded', 'failed') NOT NULL,
  created_at        TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
  attempts          INT NOT NULL DEFAULT 0,
  next_attempt_at   TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
  leased_until      TIMESTAMP(6) NULL,
  lease_owner       BINARY(16) NULL,
  last_error        VARCHAR(1024) NULL,
  local_index       BIGINT NULL,
  upstream_index    BIGINT NULL,
  upstream_uuid     VARCHAR(80) NULL,
  upstream_time     BIGINT NULL,
  upstream_verified BOOLEAN NOT NULL DEFAULT FALSE,
  forwarded_at      TIMESTAMP(6) NULL,
  PRIMARY KEY (id),
  KEY upstream_outbox_due (api, state, next_attempt_at, id),
  KEY upstream_outbox_leaf (api, leaf_hash)
);
