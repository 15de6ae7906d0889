-- The durable pending queue (package logserver/queue): submissions accepted
-- with 202 and status transparency_pending, logged later by the drainer.
-- A row is never deleted by the logserver: it ends logged (with the log's
-- answer), failed (with the reason) or cancelled (by an operator).
--
-- seq orders rows of equal priority oldest first; id is the public,
-- unguessable handle (128 random bits, hex). A drainer claims a due pending
-- row by setting claim_token and claimed_until (a lease) in a short
-- transaction (SELECT ... FOR UPDATE SKIP LOCKED); a claim whose lease has
-- passed is free again, so a crashed drainer's rows are taken over.
CREATE TABLE IF NOT EXISTS queue_entries (
  seq              BIGINT NOT NULL AUTO_INCREMENT,
  id               CHAR(32) NOT NULL,
  api              VARCHAR(2) NOT NULL,
  tenant           VARCHAR(128) NOT NULL,
  tier             VARCHAR(32) NOT NULL,
  priority         INT NOT NULL DEFAULT 0,
  body             MEDIUMBLOB NOT NULL,
  created_at       TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
  state            ENUM('pending','logged','failed','cancelled') NOT NULL DEFAULT 'pending',
  attempts         INT NOT NULL DEFAULT 0,
  next_attempt_at  TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
  claimed_until    TIMESTAMP(6) NULL,
  claim_token      CHAR(32) NULL,
  last_error       TEXT NULL,
  finished_at      TIMESTAMP(6) NULL,
  log_index        BIGINT NULL,
  entry_uuid       VARCHAR(80) NULL,
  result           MEDIUMBLOB NULL,
  PRIMARY KEY (seq),
  UNIQUE KEY queue_entries_id (id),
  KEY queue_entries_due (state, priority DESC, seq),
  KEY queue_entries_tenant (tenant, state)
);

-- One row, locked by every enqueue: the size check and the insert are
-- serialised, so the queue never holds more than its maximum.
CREATE TABLE IF NOT EXISTS queue_admission (
  id  TINYINT NOT NULL,
  PRIMARY KEY (id)
);
INSERT IGNORE INTO queue_admission (id) VALUES (1);
