package app

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stellaops/tlog/internal/service"
	"github.com/stellaops/tlog/logserver/config"
	"github.com/stellaops/tlog/logserver/queue"
	"github.com/stellaops/tlog/logserver/rekorv1"
)

// queueRun is the running pending queue.
type queueRun struct {
	q      *queue.Queue
	cancel context.CancelFunc
	done   chan struct{}
}

// startQueue serves the queue's API on mux and starts this replica's
// drainer, which submits through mux itself: the write handlers below the
// server's admission limits, so that a queued entry is charged once, by
// the drainer.
func (a *App) startQueue(ctx context.Context, reg prometheus.Registerer, mux *http.ServeMux, v1 *rekorv1.Server) error {
	c := a.cfg.Queue
	if c.Disabled {
		return nil
	}
	o := queue.Options{
		MaxSize: c.MaxSize, MaxBodyBytes: c.MaxBodyBytes, Retry: c.Retry, Workers: c.Workers, Poll: c.Poll,
		Lease: c.Lease, Log: mux, Check: map[string]queue.Checker{queue.APIv1: v1.CheckRequest},
		DefaultTenant: c.DefaultTenant, Logger: a.log.With("component", "queue"), Registerer: reg,
	}
	if a.v2 != nil {
		o.Check[queue.APIv2] = a.v2.api.CheckRequest
		o.V2Entry = a.v2.api.LoggedEntry
	}
	a.queueAdmission(&o)
	q, err := queue.New(a.db, o)
	if err != nil {
		return err
	}
	a.admission.Queue = q
	q.Register(mux)
	r := &queueRun{q: q}
	a.queue = r
	if !c.Draining() {
		return nil
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	r.cancel, r.done = cancel, make(chan struct{})
	go func() {
		defer close(r.done)
		q.Run(runCtx)
	}()
	a.log.Info("queue drainer running", "workers", c.Workers, "max_size", c.MaxSize, "poll", c.Poll)
	return nil
}

// stopQueue stops the drainer, letting submissions in flight finish.
func (a *App) stopQueue() {
	if a.queue != nil && a.queue.cancel != nil {
		a.queue.cancel()
		<-a.queue.done
	}
}

// Queue is the pending queue (nil with queue.disabled), for the budget's
// admission middleware.
func (a *App) Queue() *queue.Queue {
	if a.queue == nil {
		return nil
	}
	return a.queue.q
}

// QueueCommand runs `logserver queue <list|drain|cancel> [flags]`, the
// operator's commands on the pending queue, against the database of the
// logserver configuration (-config). They change rows only; a running
// logserver's drainer picks due rows up within queue.poll. Without a
// running logserver nothing is submitted (only the server holding the
// log's write path can log).
func QueueCommand(ctx context.Context, args []string, stdout io.Writer) error {
	usage := errors.New("usage: logserver queue list [-state s] [-tenant t] [-limit n] [-json] | drain [-failed] | cancel [-reason r] <id> (each with -config file)")
	if len(args) == 0 {
		return usage
	}
	sub := args[0]
	fs := flag.NewFlagSet("logserver queue "+sub, flag.ContinueOnError)
	path := service.ConfigFlag(fs, "logserver.yaml")
	state := fs.String("state", "", "list: only rows in this state (pending, logged, failed, cancelled)")
	tenantName := fs.String("tenant", "", "list: only this tenant's rows")
	limit := fs.Int("limit", 1000, "list: at most this many rows")
	asJSON := fs.Bool("json", false, "list: one JSON object per line")
	failed := fs.Bool("failed", false, "drain: also put failed rows back to pending (attempts reset)")
	reason := fs.String("reason", "cancelled by an operator", "cancel: the reason recorded")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	cfg, err := config.Load(*path)
	if err != nil {
		return err
	}
	dsn, err := databaseDSN(cfg.Database)
	if err != nil {
		return err
	}
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	st := queue.NewStore(db)
	switch sub {
	case "list":
		switch *state {
		case "", queue.StatePending, queue.StateLogged, queue.StateFailed, queue.StateCancelled:
		default:
			return fmt.Errorf("-state %q: want pending, logged, failed or cancelled", *state)
		}
		rows, err := st.List(ctx, queue.Filter{State: *state, Tenant: *tenantName, Limit: *limit})
		if err != nil {
			return err
		}
		if *asJSON {
			enc := json.NewEncoder(stdout)
			for _, e := range rows {
				if err := enc.Encode(e); err != nil {
					return err
				}
			}
			return nil
		}
		tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tAPI\tTENANT\tTIER\tPRIO\tSTATE\tATTEMPTS\tCREATED\tNEXT/FINISHED\tLOG INDEX\tLAST ERROR")
		for _, e := range rows {
			when, idx := e.NextAttemptAt, "-"
			if e.State != queue.StatePending {
				when = e.FinishedAt
			}
			if e.LogIndex != nil {
				idx = fmt.Sprint(*e.LogIndex)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%d\t%s\t%s\t%s\t%s\n", e.ID, e.API, e.Tenant, e.Tier, e.Priority, e.State,
				e.Attempts, e.CreatedAt.Format(time.RFC3339), when.Format(time.RFC3339), idx, e.LastError)
		}
		return tw.Flush()
	case "drain":
		if fs.NArg() != 0 {
			return usage
		}
		n, err := st.MakeDue(ctx, *failed)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%d rows made due now; a running logserver drains them within queue.poll (%s)\n", n, cfg.Queue.Poll)
		return nil
	case "cancel":
		if fs.NArg() != 1 {
			return usage
		}
		if err := st.Cancel(ctx, fs.Arg(0), *reason); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s cancelled\n", fs.Arg(0))
		return nil
	default:
		return usage
	}
}
