package upstream_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stellaops/tlog/logserver/app"
	"github.com/stellaops/tlog/logserver/config"
	"github.com/stellaops/tlog/testing/stack"
)

// childEnv names the configuration of the logserver the kill test runs as
// a child process of the test binary.
const childEnv = "STELLA_UPSTREAM_CHILD_LOGSERVER_CONFIG"

// TestMain gives the package a private TMPDIR, and runs the kill test's
// child logserver.
func TestMain(m *testing.M) {
	if cfg := os.Getenv(childEnv); cfg != "" {
		runChild(cfg)
		return
	}
	dir, err := os.MkdirTemp("", "upstream-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Setenv("TMPDIR", dir)
	// One MariaDB for the package; each test makes its own databases.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	shared, err = stack.StartMariaDB(ctx, filepath.Join(dir, "mariadb"), stack.MariaDBOptions{})
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "start MariaDB:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	shared.Stop()
	os.RemoveAll(dir)
	os.Exit(code)
}

// shared is the package's MariaDB.
var shared *stack.MariaDB

var databases atomic.Int64

// newDatabase creates a database of its own for a test.
func newDatabase(t *testing.T, prefix string) string {
	return stack.TestDatabase(t, shared, fmt.Sprintf("%s%d", prefix, databases.Add(1)))
}

// runChild serves a logserver from a configuration file until killed.
func runChild(path string) {
	cfg, err := config.Load(path)
	if err == nil {
		var a *app.App
		if a, err = app.New(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil))); err == nil {
			var l net.Listener
			if l, err = net.Listen("tcp", cfg.Listen); err == nil {
				err = a.Serve(l)
			}
		}
	}
	fmt.Fprintln(os.Stderr, "child logserver:", err)
	os.Exit(1)
}
