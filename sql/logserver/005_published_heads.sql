-- The highest tree head published for each checkpoint origin and signing
-- key (logserver/sequence). Updated compare-and-swap in the transaction that
-- stores each pass: size never decreases, and a size is recorded with one
-- root only. The same record is kept in a file outside the database
-- (sequencer.state_dir), so a wiped or restored database cannot make the
-- log sign a second history for the same origin.
CREATE TABLE IF NOT EXISTS log_published_heads (
  origin      VARBINARY(512) NOT NULL,
  key_id      BINARY(32) NOT NULL,
  tree_id     BIGINT NOT NULL,
  tree_size   BIGINT NOT NULL,
  root_hash   BINARY(32) NOT NULL,
  updated_at  TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
  PRIMARY KEY (origin, key_id)
);
