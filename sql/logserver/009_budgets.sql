-- Submission budgets (package logserver/budget): one row per tenant and
-- tier ('graph' or 'edge'), the seed's rekor_quotas per tenant+tier. A
-- row holds the tier's main window (graph: the UTC hour, edge: the UTC
-- day) and, for graph, the burst window, each as its start and the count
-- admitted in it. Windows are fixed and aligned on the Unix epoch; a row
-- whose window start is older than the current window counts as 0 (the
-- next take resets it). Rows are created on a tenant's first submission
-- (INSERT IGNORE) and updated only by single conditional UPDATEs, so
-- replicas sharing the database never admit more than the limit.
CREATE TABLE IF NOT EXISTS budget_counters (
  tenant        VARCHAR(128) NOT NULL,
  tier          VARCHAR(16) NOT NULL,
  window_start  DATETIME NOT NULL,
  window_count  BIGINT NOT NULL DEFAULT 0,
  burst_start   DATETIME NOT NULL,
  burst_count   BIGINT NOT NULL DEFAULT 0,
  updated_at    TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
  PRIMARY KEY (tenant, tier)
);
