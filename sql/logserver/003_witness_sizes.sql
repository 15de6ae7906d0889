-- The last tree size each witness cosigned for the log, or reported in a
-- 409 (package logserver/witnessing), so that a restarted logserver sends
-- each witness the right old size at once instead of learning it from a
-- 409. One row per (tree, witness key); witness_key is SHA-256 of the
-- witness's vkey (its identity in the tlog-policy file), witness_vkey the
-- vkey itself for operators. Overwritten as the witness advances.
CREATE TABLE IF NOT EXISTS log_witness_sizes (
  tree_id       BIGINT NOT NULL,
  witness_key   BINARY(32) NOT NULL,
  witness_vkey  TEXT NOT NULL,
  tree_size     BIGINT NOT NULL,
  updated_at    TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
  PRIMARY KEY (tree_id, witness_key)
);
