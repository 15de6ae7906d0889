// Command logserver is the Rekor v1-compatible transparency log.
//
//	logserver -config logserver.yaml           # serve
//	logserver reindex -config logserver.yaml   # rebuild the search index from the stored entries
//
// Every setting is documented on the Config struct in logserver/config.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	_ "net/http/pprof"
	"os"
	"runtime/debug"
	"time"

	"github.com/stellaops/tlog/internal/service"
	"github.com/stellaops/tlog/logserver/app"
	"github.com/stellaops/tlog/logserver/config"
)

func main() {
	args := os.Args[1:]
	cmd := run
	if len(args) > 0 && args[0] == "reindex" {
		cmd, args = reindex, args[1:]
	}
	fs := flag.NewFlagSet("logserver", flag.ExitOnError)
	path := fs.String("config", "logserver.yaml", "configuration file (YAML)")
	_ = fs.Parse(args)
	if err := cmd(*path); err != nil {
		fmt.Fprintln(os.Stderr, "logserver:", err)
		os.Exit(1)
	}
}

func run(path string) error {
	if os.Getenv("GOGC") == "" {
		// The write path allocates much and keeps little: trade memory for
		// CPU (a GOGC in the environment still wins).
		debug.SetGCPercent(400)
	}
	cfg, err := config.Load(path)
	if err != nil {
		return err
	}
	logger, err := service.Logger(cfg.Logging.Level, cfg.Logging.Format, os.Stderr)
	if err != nil {
		return err
	}
	ctx, stop := service.SignalContext()
	defer stop()

	a, err := app.New(ctx, cfg, logger)
	if err != nil {
		return err
	}
	l, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		a.Shutdown(sctx)
		return err
	}
	logger.Info("serving", "addr", l.Addr().String())
	if cfg.DebugListen != "" {
		go func() {
			// net/http/pprof registers on the default mux, which serves nothing else.
			err := http.ListenAndServe(cfg.DebugListen, http.DefaultServeMux)
			logger.Error("debug listener", "error", err)
		}()
	}
	served := make(chan error, 1)
	go func() { served <- a.Serve(l) }()

	select {
	case err = <-served:
	case <-ctx.Done():
		logger.Info("shutting down")
	}
	sctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if serr := a.Shutdown(sctx); serr != nil && err == nil {
		err = serr
	}
	logger.Info("stopped")
	return err
}

func reindex(path string) error {
	cfg, err := config.Load(path)
	if err != nil {
		return err
	}
	logger, err := service.Logger(cfg.Logging.Level, cfg.Logging.Format, os.Stderr)
	if err != nil {
		return err
	}
	ctx, stop := service.SignalContext()
	defer stop()
	r, err := app.Reindex(ctx, cfg, logger)
	if err != nil {
		return err
	}
	fmt.Printf("tree %d: %d entries, %d search keys written, %d entries skipped\n", r.TreeID, r.Entries, r.Keys, r.Skipped)
	return nil
}
