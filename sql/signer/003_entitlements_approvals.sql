-- Issue 18: local entitlements (the seed's Proof-of-Entitlement without a
-- vendor cloud) and manual approvals of scanner releases.
--
-- The service reads plans and entitlements and appends approvals:
--   GRANT SELECT ON signer.signer_plans TO 'signer'@'%';
--   GRANT SELECT ON signer.signer_entitlements TO 'signer'@'%';
--   GRANT INSERT, SELECT ON signer.signer_release_approvals TO 'signer'@'%';
-- Operators manage plans and entitlements with their own user.

-- A plan: what an entitled tenant may sign. JSON arrays; an empty array
-- means no restriction beyond the tenant's configuration.
CREATE TABLE IF NOT EXISTS signer_plans (
  name                   VARCHAR(128) NOT NULL,
  predicate_types        TEXT NOT NULL,
  key_names              TEXT NOT NULL,
  max_signatures_per_day INT NOT NULL DEFAULT 0,
  max_payload_bytes      BIGINT NOT NULL DEFAULT 0,
  updated_at             TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
  PRIMARY KEY (name)
);

-- A tenant's entitlement: its plan and validity window.
CREATE TABLE IF NOT EXISTS signer_entitlements (
  tenant     VARCHAR(128) NOT NULL,
  plan       VARCHAR(128) NOT NULL,
  not_before TIMESTAMP(6) NULL,
  not_after  TIMESTAMP(6) NULL,
  suspended  BOOLEAN NOT NULL DEFAULT FALSE,
  updated_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
  PRIMARY KEY (tenant)
);

-- Manual approvals of scanner images whose release verification failed
-- (append-only; each is also an audit row). tenant '' approves for all.
CREATE TABLE IF NOT EXISTS signer_release_approvals (
  id           BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
  image_digest CHAR(71) NOT NULL,
  tenant       VARCHAR(128) NOT NULL DEFAULT '',
  approved_by  VARCHAR(255) NOT NULL,
  ticket       VARCHAR(128) NOT NULL,
  reason       VARCHAR(1024) NOT NULL DEFAULT '',
  request_id   VARCHAR(64) NOT NULL,
  created_at   TIMESTAMP(6) NOT NULL,
  expires_at   TIMESTAMP(6) NOT NULL,
  PRIMARY KEY (id),
  KEY signer_release_approvals_digest (image_digest, expires_at)
);
