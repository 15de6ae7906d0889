-- Trees of the appliance's other logs (log_trees holds the Rekor v1 log's):
-- one row per role, e.g. 'rekor-v2' for the Rekor v2 log (package
-- logserver/rekorv2). Created once, on the first start with that log
-- configured; never re-created.
CREATE TABLE IF NOT EXISTS log_tree_roles (
  role        VARCHAR(32) NOT NULL,
  tree_id     BIGINT NOT NULL,
  created_at  TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
  PRIMARY KEY (role),
  UNIQUE KEY log_tree_roles_tree (tree_id)
);
