package stack

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stellaops/tlog/logserver/app"
	"github.com/stellaops/tlog/logserver/config"
)

// Logserver is a logserver running in the test process, over a real MariaDB
// and the embedded Trillian, answering real HTTP on loopback.
type Logserver struct {
	URL           string // base URL of the Rekor API
	PublicKeyFile string
	Config        *config.Config
	App           *app.App

	t    testing.TB
	addr string
	done chan error
}

// StartLogserver starts a logserver on database dsn with state (key) in dir.
// mutate, if not nil, adjusts the configuration first.
func StartLogserver(t testing.TB, dsn, dir string, mutate func(*config.Config)) *Logserver {
	t.Helper()
	cfg := &config.Config{
		Listen:   "127.0.0.1:0",
		Hostname: "stella.test",
		// Test servers relax durability for speed (TestMariaDB).
		Database: config.Database{DSN: dsn, AllowNonDurable: true},
		Key: config.Key{File: filepath.Join(dir, "log-key.pem"), Create: true,
			PublicKeyFile: filepath.Join(dir, "log-key.pub.pem")},
		Sequencer: config.Sequencer{Interval: 20 * time.Millisecond},
	}
	if mutate != nil {
		mutate(cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	l := &Logserver{Config: cfg, PublicKeyFile: cfg.Key.PublicKeyFile, t: t}
	l.start()
	t.Cleanup(func() { l.Stop() })
	return l
}

func (l *Logserver) start() {
	l.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	if os.Getenv("STELLA_TEST_LOG") != "" {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	a, err := app.New(ctx, l.Config, logger)
	if err != nil {
		l.t.Fatalf("start logserver: %v", err)
	}
	addr := l.addr
	if addr == "" {
		addr = l.Config.Listen
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		a.Shutdown(ctx)
		l.t.Fatalf("listen: %v", err)
	}
	l.addr = ln.Addr().String()
	l.URL = "http://" + l.addr
	l.App = a
	l.done = make(chan error, 1)
	go func() { l.done <- a.Serve(ln) }()
}

// Stop shuts the logserver down (idempotent).
func (l *Logserver) Stop() {
	if l.App == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := l.App.Shutdown(ctx); err != nil {
		l.t.Errorf("shutdown: %v", err)
	}
	if err := <-l.done; err != nil {
		l.t.Errorf("serve: %v", err)
	}
	l.App = nil
}

// Restart stops the logserver and starts it again on the same address,
// database and key.
func (l *Logserver) Restart() {
	l.t.Helper()
	l.Stop()
	l.start()
}
