package upstream_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"testing"

	"github.com/stellaops/tlog/logserver/app"
	"github.com/stellaops/tlog/logserver/config"
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
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
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
