// Command logserver is the Rekor v1-compatible transparency log.
//
//	logserver -config logserver.yaml           # serve
//	logserver reindex -config logserver.yaml   # rebuild the search index from the stored entries
//	logserver queue list|drain|cancel -config logserver.yaml   # the pending queue (see deployment/README.md)
//
// Every setting is documented on the Config struct in logserver/config.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
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
	if len(args) > 0 && args[0] == "queue" {
		exitOn(app.QueueCommand(context.Background(), args[1:], os.Stdout))
	}
	cmd := run
	if len(args) > 0 && args[0] == "reindex" {
		cmd, args = reindex, args[1:]
	}
	fs := flag.NewFlagSet("logserver", flag.ExitOnError)
	path := service.ConfigFlag(fs, "logserver.yaml")
	_ = fs.Parse(args)
	if err := cmd(*path); err != nil {
		fmt.Fprintln(os.Stderr, "logserver:", err)
		os.Exit(1)
	}
}

// exitOn exits: 1 after printing err, 0 without.
func exitOn(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "logserver:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

func run(path string) error {
	if os.Getenv("GOGC") == "" {
		// The write path allocates much and keeps little: trade memory for
		// CPU (a GOGC in the environment still wins).
		debug.SetGCPercent(400)
	}
	cfg, logger, err := load(path)
	if err != nil {
		return err
	}
	ctx, stop := service.SignalContext()
	defer stop()

	a, err := app.New(ctx, cfg, logger)
	if err != nil {
		return err
	}
	l, extra, err := listen(cfg)
	if err != nil {
		a.Shutdown(context.Background())
		return err
	}
	served := make(chan error, 1)
	go func() { served <- a.Serve(l, extra...) }()
	select {
	case err = <-served: // a listener failed
	case <-ctx.Done(): // SIGTERM: Serve drains within shutdown_timeout
	}
	// Once HTTP has drained: stop the write path, close the database.
	sctx, cancel := context.WithTimeout(context.Background(), cfg.HTTP.Shutdown+5*time.Second)
	defer cancel()
	if serr := a.Shutdown(sctx); serr != nil && err == nil {
		err = serr
	}
	logger.Info("stopped")
	return err
}

// listen opens the public listener and, if configured, the debug one
// (net/http/pprof registers on the default mux, which serves nothing else).
func listen(cfg *config.Config) (net.Listener, []service.Server, error) {
	l, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, nil, err
	}
	if cfg.DebugListen == "" {
		return l, nil, nil
	}
	dl, err := net.Listen("tcp", cfg.DebugListen)
	if err != nil {
		l.Close()
		return nil, nil, fmt.Errorf("debug_listen: %w", err)
	}
	return l, []service.Server{{Name: "debug", Listener: dl, Handler: http.DefaultServeMux}}, nil
}

func reindex(path string) error {
	cfg, logger, err := load(path)
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

// load reads the configuration and sets up its logging, as every
// subcommand does first.
func load(path string) (*config.Config, *slog.Logger, error) {
	cfg, err := config.Load(path)
	if err != nil {
		return nil, nil, err
	}
	logger, err := cfg.Logging.Logger(os.Stderr)
	return cfg, logger, err
}
