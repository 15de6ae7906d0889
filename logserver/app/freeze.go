package app

import (
	"context"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stellaops/tlog/logserver/config"
	"github.com/stellaops/tlog/logserver/store"
	"github.com/stellaops/tlog/logserver/trust"
)

// Frozen logs (config.Freeze): their APIs refuse writes with readOnly's
// message, the metric logserver_log_frozen says which are, and the trust
// files end their validity at their last entry.

// readOnly is the refusal a frozen log's API answers writes with (empty:
// not frozen, writes are taken).
func readOnly(f config.Freeze) string {
	switch {
	case !f.Frozen:
		return ""
	case f.Successor != "":
		return "this log is frozen and accepts no new entries (its entries, proofs and checkpoints are still served); submit to its successor " + f.Successor
	default:
		return "this log is frozen and accepts no new entries (its entries, proofs and checkpoints are still served)"
	}
}

// registerFrozen exports logserver_log_frozen{log}: 1 for a frozen log, 0
// for one taking writes.
func registerFrozen(reg prometheus.Registerer, cfg *config.Config) {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "logserver_log_frozen",
		Help: "1 if the log is frozen (read-only: writes refused), 0 if it takes entries."}, []string{"log"})
	set := func(log string, f config.Freeze) {
		v := 0.0
		if f.Frozen {
			v = 1
		}
		g.WithLabelValues(log).Set(v)
	}
	set("rekor-v1", cfg.Freeze)
	if cfg.RekorV2 != nil {
		set(v2Role, cfg.RekorV2.Freeze)
	}
	reg.MustRegister(g)
}

// freezeTrust applies the logs' freezes to the trust files' logs (by API
// version: 1 is the v1 log, 2 the v2 log): a frozen log's keys are valid
// until one second after its last entry was integrated (a key version that
// would only have started later is left out), and it is not offered for
// writing in the signing config unless every log is frozen.
func (a *App) freezeTrust(ctx context.Context, cfg *config.Config, st *store.Store, logs []trust.Log) (trusted, signing []trust.Log, err error) {
	ends := map[uint32]time.Time{}
	if cfg.Freeze.Frozen {
		h := a.seq.Head()
		if ends[1], err = frozenEnd(ctx, st, h.TreeID, h.Size); err != nil {
			return nil, nil, err
		}
	}
	if cfg.RekorV2 != nil && cfg.RekorV2.Freeze.Frozen {
		h := a.v2.seq.Head()
		if ends[2], err = frozenEnd(ctx, st, h.TreeID, h.Size); err != nil {
			return nil, nil, err
		}
	}
	for _, l := range logs {
		end, frozen := ends[l.APIVersion]
		if !frozen {
			trusted, signing = append(trusted, l), append(signing, l)
			continue
		}
		if !l.Start.Before(end) {
			continue
		}
		if l.End.IsZero() || l.End.After(end) {
			l.End = end
		}
		trusted = append(trusted, l)
	}
	if len(signing) == 0 {
		signing = trusted
	}
	return trusted, signing, nil
}

// frozenEnd is one second after the integration of the last of a tree's
// size entries, or after the tree's creation if it has none: a frozen
// log signs nothing later.
func frozenEnd(ctx context.Context, st *store.Store, treeID, size int64) (time.Time, error) {
	created, err := st.TreeCreated(ctx, treeID)
	if err != nil {
		return time.Time{}, fmt.Errorf("frozen tree %d: %w", treeID, err)
	}
	last := created
	if size > 0 {
		e, err := st.EntryByIndex(ctx, treeID, size-1)
		if err != nil {
			return time.Time{}, fmt.Errorf("frozen tree %d: last entry: %w", treeID, err)
		}
		if t := time.Unix(e.IntegratedTime, 0); t.After(last) {
			last = t
		}
	}
	return last.Truncate(time.Second).Add(time.Second), nil
}
