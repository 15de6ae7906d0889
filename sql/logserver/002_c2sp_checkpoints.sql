-- Every C2SP checkpoint the log published at GET /checkpoint (package
-- logserver/witnessing): origin = the log's name, the log's Ed25519 note
-- signature and the witness cosignatures collected when it was published.
-- Append-only: a tree size appears again when the same checkpoint is
-- republished with more cosignatures; rows are never updated or deleted.
CREATE TABLE IF NOT EXISTS log_c2sp_checkpoints (
  id          BIGINT NOT NULL AUTO_INCREMENT,
  tree_id     BIGINT NOT NULL,
  tree_size   BIGINT NOT NULL,
  root_hash   BINARY(32) NOT NULL,
  note        TEXT NOT NULL,
  created_at  TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
  PRIMARY KEY (id),
  KEY log_c2sp_checkpoints_latest (tree_id, tree_size, id)
);
