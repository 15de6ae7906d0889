-- Full C2SP tlog-tiles entry bundles (package logserver/tlogtiles): the
-- canonical bodies of leaves [256*bundle_index, 256*bundle_index + 256),
-- each as a big-endian uint16 length followed by the body. Written once, in
-- the publish transaction that stores the bundle's last entry; immutable.
-- Partial bundles are not stored: they are read from log_entries. A bundle
-- holding an entry larger than 65535 bytes (which tlog-tiles cannot encode)
-- is never written.
CREATE TABLE IF NOT EXISTS entry_bundles (
  tree_id       BIGINT NOT NULL,
  bundle_index  BIGINT NOT NULL,
  data          LONGBLOB NOT NULL,
  PRIMARY KEY (tree_id, bundle_index)
);
