// Package service is the one way the appliance's services (logserver,
// signer, witness) do the plumbing every server needs: the -config flag
// ([ConfigFlag]), a signal-bound context, slog logging from a level and a
// format, HTTP servers with explicit timeouts and an ordered graceful
// shutdown, and secrets read from files. (A key of the signer service is
// configured and opened the one way of package signer/client.)
//
// Every service's configuration has the same `logging:` block ([Logging])
// and the same HTTP timeouts at its top level ([Timeouts]).
//
// Contract: [Logger] accepts exactly the levels debug, info, warn, error
// and the formats text, json (config validation uses [Logging.Check] so a
// bad value stops start-up); [Run] returns only after every server
// has stopped accepting, in-flight requests have finished or the shutdown
// timeout has passed, in that order; [ReadSecret] never returns a secret
// with surrounding whitespace, and refuses an empty one.
package service

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

// ConfigFlag registers every service's configuration-file flag on fs:
// -config FILE, and -c FILE, the witness's former spelling, as its alias.
func ConfigFlag(fs *flag.FlagSet, def string) *string {
	p := fs.String("config", def, "configuration file (YAML)")
	fs.StringVar(p, "c", def, "short for -config")
	return p
}

// SignalContext is cancelled by SIGINT or SIGTERM (docker stop, Ctrl-C).
func SignalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

// CheckLogging reports an invalid level or format.
func CheckLogging(level, format string) error {
	var errs []error
	switch level {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("log level %q: want debug, info, warn or error", level))
	}
	if format != "text" && format != "json" {
		errs = append(errs, fmt.Errorf("log format %q: want text or json", format))
	}
	return errors.Join(errs...)
}

// Logger returns the slog logger writing to w at level in format, and
// makes it the default logger.
func Logger(level, format string, w io.Writer) (*slog.Logger, error) {
	if err := CheckLogging(level, format); err != nil {
		return nil, err
	}
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(level))
	opts := &slog.HandlerOptions{Level: lvl}
	var l *slog.Logger
	if format == "json" {
		l = slog.New(slog.NewJSONHandler(w, opts))
	} else {
		l = slog.New(slog.NewTextHandler(w, opts))
	}
	slog.SetDefault(l)
	return l, nil
}

// Logging is the `logging:` block of every service's configuration: slog
// on stderr.
type Logging struct {
	// Level: debug, info (default), warn, error.
	Level string `yaml:"level"`
	// Format: text (default) or json (one object per line, for log
	// collectors; the compose bootstrap writes json).
	Format string `yaml:"format"`
}

// Check fills the defaults (info, text) and reports a bad level or format,
// named by prefix (the block's YAML path, "logging").
func (l *Logging) Check(prefix string) error {
	if l.Level == "" {
		l.Level = "info"
	}
	if l.Format == "" {
		l.Format = "text"
	}
	var errs []error
	switch l.Level {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("%s.level %q: want debug, info, warn or error", prefix, l.Level))
	}
	if l.Format != "text" && l.Format != "json" {
		errs = append(errs, fmt.Errorf("%s.format %q: want text or json", prefix, l.Format))
	}
	return errors.Join(errs...)
}

// Logger is [Logger] with l's level and format.
func (l Logging) Logger(w io.Writer) (*slog.Logger, error) { return Logger(l.Level, l.Format, w) }

// Timeouts bound an HTTP server's slow clients and its shutdown; every
// service inlines them at the top level of its configuration (the same
// keys everywhere). Zero fields take the defaults of
// [Timeouts.WithDefaults].
type Timeouts struct {
	// ReadHeader bounds reading a request's headers. Default 5s.
	ReadHeader time.Duration `yaml:"read_header_timeout"`
	// Read bounds reading a whole request, body included. Default 1m.
	Read time.Duration `yaml:"read_timeout"`
	// Write bounds a request from the end of its headers to the end of its
	// answer (the logserver: more than api.write_timeout). Default 2m.
	Write time.Duration `yaml:"write_timeout"`
	// Idle bounds a keep-alive connection between requests. Default 2m.
	Idle time.Duration `yaml:"idle_timeout"`
	// Shutdown is how long SIGINT/SIGTERM waits for in-flight requests
	// (readiness fails first) before closing connections; then the service
	// stops its background work. Keep it below the compose
	// stop_grace_period. Default 15s.
	Shutdown time.Duration `yaml:"shutdown_timeout"`
}

// WithDefaults fills zero fields.
func (t Timeouts) WithDefaults() Timeouts {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&t.ReadHeader, 5*time.Second)
	def(&t.Read, time.Minute)
	def(&t.Write, 2*time.Minute)
	def(&t.Idle, 2*time.Minute)
	def(&t.Shutdown, 15*time.Second)
	return t
}

// Check reports negative timeouts, then fills the defaults.
func (t *Timeouts) Check() error {
	var errs []error
	for _, d := range []struct {
		key string
		v   time.Duration
	}{{"read_header_timeout", t.ReadHeader}, {"read_timeout", t.Read}, {"write_timeout", t.Write},
		{"idle_timeout", t.Idle}, {"shutdown_timeout", t.Shutdown}} {
		if d.v < 0 {
			errs = append(errs, fmt.Errorf("%s %v: must be positive", d.key, d.v))
		}
	}
	*t = t.WithDefaults()
	return errors.Join(errs...)
}

// Server is one listener and what it serves.
type Server struct {
	Name     string // for logs: "public", "metrics", "debug", ...
	Listener net.Listener
	Handler  http.Handler
}

// Hooks are called by [Run] at its turning points; nil ones are skipped.
type Hooks struct {
	// Started runs once every server accepts connections (after their
	// "listening" log lines).
	Started func()
	// Drain runs when shutdown begins, before the servers stop accepting:
	// fail readiness, stop background work, so load balancers stop sending.
	Drain func()
}

// Run serves every server until ctx ends or one fails, then shuts them all
// down gracefully within t.Shutdown.
func Run(ctx context.Context, logger *slog.Logger, t Timeouts, hooks Hooks, servers ...Server) error {
	t = t.WithDefaults()
	var hs []*http.Server
	errc := make(chan error, len(servers))
	for _, s := range servers {
		h := &http.Server{Handler: s.Handler, ReadHeaderTimeout: t.ReadHeader, ReadTimeout: t.Read,
			WriteTimeout: t.Write, IdleTimeout: t.Idle, MaxHeaderBytes: 64 << 10,
			ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelWarn)}
		hs = append(hs, h)
		logger.InfoContext(ctx, "listening", slog.String("server", s.Name), slog.String("addr", s.Listener.Addr().String()))
		go func() {
			if err := h.Serve(s.Listener); !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("%s server: %w", s.Name, err)
			}
		}()
	}
	if hooks.Started != nil {
		hooks.Started()
	}
	var err error
	select {
	case <-ctx.Done():
		logger.Info("shutting down")
	case err = <-errc:
		logger.Error("server failed, shutting down", slog.Any("error", err))
	}
	if hooks.Drain != nil {
		hooks.Drain()
	}
	sctx, cancel := context.WithTimeout(context.Background(), t.Shutdown)
	defer cancel()
	for i, h := range hs {
		if serr := h.Shutdown(sctx); serr != nil {
			err = errors.Join(err, fmt.Errorf("%s shutdown: %w", servers[i].Name, serr))
			h.Close()
		}
	}
	return err
}

// ErrEmptySecret is the error of [ReadSecret] for a file holding nothing
// but whitespace.
var ErrEmptySecret = errors.New("secret file is empty")

// ReadSecret returns the content of a secret file (a DSN, a token, a PIN),
// trimmed of surrounding whitespace: every service reads its dsn_file,
// token_file and pin_file with it. An empty file is an error wrapping
// [ErrEmptySecret]; the secret itself never appears in an error.
func ReadSecret(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("secret: %w", err)
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", fmt.Errorf("%s: %w", path, ErrEmptySecret)
	}
	return s, nil
}
