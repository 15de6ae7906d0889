package app

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"

	"github.com/stellaops/tlog/logserver/config"
	"github.com/stellaops/tlog/logserver/rekorv1"
	"github.com/stellaops/tlog/logserver/store"
)

// ReindexReport is what Reindex did.
type ReindexReport struct {
	TreeID  int64
	Entries int64 // entries read
	Keys    int64 // search keys written (existing ones are kept)
	Skipped int64 // entries whose keys could not be derived (logged)
}

// Reindex rebuilds the search index of the active tree from the stored
// entries: every entry's keys are derived from its canonical body, as the
// create handler derives them, and written (keys already there are kept).
// It runs next to a serving logserver: it only adds index rows.
func Reindex(ctx context.Context, cfg *config.Config, logger *slog.Logger) (ReindexReport, error) {
	var r ReindexReport
	db, err := sql.Open("mysql", cfg.Database.DSN)
	if err != nil {
		return r, err
	}
	defer db.Close()
	if err := waitDB(ctx, db, logger); err != nil {
		return r, err
	}
	st := store.New(db)
	if r.TreeID, err = st.ActiveTree(ctx); err != nil {
		return r, err
	}
	if r.TreeID == 0 {
		return r, errors.New("reindex: the database has no active tree")
	}
	for from := int64(0); ; {
		entries, err := st.Entries(ctx, r.TreeID, from, 500)
		if err != nil {
			return r, fmt.Errorf("reindex: entries from %d: %w", from, err)
		}
		if len(entries) == 0 {
			break
		}
		var keys []store.IndexKey
		for _, e := range entries {
			ks, err := rekorv1.IndexKeys(ctx, e.Body)
			if err != nil {
				r.Skipped++
				logger.Warn("reindex: entry keys", "index", e.Index, "error", err)
				continue
			}
			for _, k := range ks {
				if len(k) > store.MaxIndexKeyBytes {
					logger.Warn("reindex: search key too long, not indexed", "index", e.Index, "bytes", len(k))
					continue
				}
				keys = append(keys, store.IndexKey{Key: k, LeafHash: e.LeafHash})
			}
		}
		if err := st.AddIndexKeys(ctx, r.TreeID, keys); err != nil {
			return r, fmt.Errorf("reindex: %w", err)
		}
		r.Entries += int64(len(entries))
		r.Keys += int64(len(keys))
		from = entries[len(entries)-1].Index + 1
		logger.Info("reindex", "entries", r.Entries, "keys", r.Keys)
	}
	return r, nil
}
