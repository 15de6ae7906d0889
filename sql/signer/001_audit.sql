-- The signer's audit trail: one row per decision (signed, refused or
-- failed), written before the caller gets its answer. Append-only: the
-- service's database user needs only INSERT and SELECT on this table, e.g.
--   GRANT INSERT, SELECT ON signer.signer_audit TO 'signer'@'%';
-- Migrations run with a separate, more privileged user (`signer migrate`).
CREATE TABLE IF NOT EXISTS signer_audit (
  id               BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
  recorded_at      TIMESTAMP(6) NOT NULL,
  request_id       VARCHAR(64) NOT NULL,
  tenant           VARCHAR(128) NOT NULL DEFAULT '',
  caller           VARCHAR(255) NOT NULL DEFAULT '',
  auth_method      VARCHAR(16) NOT NULL DEFAULT '',
  endpoint         VARCHAR(32) NOT NULL,
  key_name         VARCHAR(128) NOT NULL DEFAULT '',
  key_versions     VARCHAR(64) NOT NULL DEFAULT '',
  key_ids          VARCHAR(400) NOT NULL DEFAULT '',
  payload_type     VARCHAR(255) NOT NULL DEFAULT '',
  predicate_type   VARCHAR(512) NOT NULL DEFAULT '',
  subject_digests  MEDIUMTEXT NULL,
  pae_sha256       BINARY(32) NULL,
  items            INT NOT NULL DEFAULT 0,
  decision         ENUM('signed', 'refused', 'failed') NOT NULL,
  http_status      SMALLINT NOT NULL,
  reason           VARCHAR(64) NOT NULL DEFAULT '',
  detail           VARCHAR(1024) NOT NULL DEFAULT '',
  redaction_ticket VARCHAR(128) NOT NULL DEFAULT '',
  pkcs11_code      VARCHAR(64) NOT NULL DEFAULT '',
  latency_us       BIGINT NOT NULL DEFAULT 0,
  remote_addr      VARCHAR(64) NOT NULL DEFAULT '',
  PRIMARY KEY (id),
  KEY signer_audit_tenant_time (tenant, recorded_at),
  KEY signer_audit_request (request_id)
);
