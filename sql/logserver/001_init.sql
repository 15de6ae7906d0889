-- The logserver's own tables, next to Trillian's in the same database.

-- The log's trees. Exactly one row is 'active': the tree new entries go to.
-- Created once, on first start; a restart reads it back and never makes a
-- new tree.
CREATE TABLE IF NOT EXISTS log_trees (
  tree_id     BIGINT NOT NULL,
  state       ENUM('active', 'inactive') NOT NULL,
  created_at  TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
  PRIMARY KEY (tree_id)
);

-- One row per integrated entry, so reads never touch Trillian: the canonical
-- body (also in Trillian's LeafData), the integration time and the SET,
-- signed once when the entry is integrated and never re-signed.
CREATE TABLE IF NOT EXISTS log_entries (
  tree_id          BIGINT NOT NULL,
  leaf_index       BIGINT NOT NULL,
  leaf_hash        BINARY(32) NOT NULL,
  integrated_time  BIGINT NOT NULL,
  entry_set        VARBINARY(1024) NOT NULL,
  body             MEDIUMBLOB NOT NULL,
  PRIMARY KEY (tree_id, leaf_index),
  UNIQUE KEY log_entries_hash (tree_id, leaf_hash)
);

-- The search index (Rekor's /api/v1/index/retrieve): lookup key -> entry.
-- Keys are lower-cased: sha256:<artifact hex>, hex SHA-256 of a public key,
-- e-mail addresses and subjects.
CREATE TABLE IF NOT EXISTS log_index (
  lookup_key  VARCHAR(512) NOT NULL,
  tree_id     BIGINT NOT NULL,
  leaf_hash   BINARY(32) NOT NULL,
  PRIMARY KEY (lookup_key, tree_id, leaf_hash)
);

-- Full Merkle tiles (C2SP tlog-tiles layout, height 8): 256 hashes of one
-- tile level, concatenated. Immutable once written; partial tiles are never
-- stored (they are recomputed from Trillian's leaves).
CREATE TABLE IF NOT EXISTS merkle_tiles (
  tree_id     BIGINT NOT NULL,
  tile_level  TINYINT UNSIGNED NOT NULL,
  tile_index  BIGINT NOT NULL,
  hashes      BLOB NOT NULL,
  PRIMARY KEY (tree_id, tile_level, tile_index)
);

-- Every checkpoint the log published, by format ('rekor' = Rekor v1 note).
CREATE TABLE IF NOT EXISTS log_checkpoints (
  tree_id     BIGINT NOT NULL,
  format      VARCHAR(16) NOT NULL,
  tree_size   BIGINT NOT NULL,
  root_hash   BINARY(32) NOT NULL,
  note        TEXT NOT NULL,
  created_at  TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
  PRIMARY KEY (tree_id, format, tree_size)
);
