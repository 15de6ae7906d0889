// Package cli is the mirror command line: one function per subcommand,
// each parsing its flags into the package's config and running it. Exit
// status: 0 success, 1 failure (or, for verify and watch, a negative
// verdict or a match), 2 usage errors.
package cli

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/stellaops/tlog/internal/notekey"
	"github.com/stellaops/tlog/mirror/export"
)

// Exit statuses.
const (
	ExitOK    = 0
	ExitFail  = 1
	ExitUsage = 2
)

const usage = `usage: mirror <command> [flags]

commands:
  export   copy a log into dated, verified snapshots (once, or --every 24h)
  kit      pack snapshots and trust material into an offline kit archive
  serve    serve a mirror read-only as tlog-tiles, with the checkpoint history
  verify   check a kit offline (--kit), and evidence bundles against it (--bundle)
  watch    list entries of new snapshots matching watched identities (exit 3 on a match)
  report   write a self-contained HTML audit report of a kit
  vkey     print the signed-note vkey of a log's PEM public key (for the policy)

"mirror <command> -h" lists a command's flags.
`

// Run runs the command line args (without the program name).
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return ExitUsage
	}
	cmds := map[string]func(context.Context, []string, io.Writer, io.Writer) error{
		"export": runExport, "kit": runKit, "serve": runServe, "verify": runVerify, "watch": runWatch, "report": runReport, "vkey": runVKey,
	}
	cmd, ok := cmds[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "mirror: unknown command %q\n\n%s", args[0], usage)
		return ExitUsage
	}
	err := cmd(ctx, args[1:], stdout, stderr)
	var ue usageError
	var ex exitError
	switch {
	case err == nil:
		return ExitOK
	case errors.Is(err, flag.ErrHelp):
		return ExitOK
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "mirror %s: %v\n", args[0], err)
		return ExitUsage
	case errors.As(err, &ex):
		return int(ex)
	default:
		fmt.Fprintf(stderr, "mirror %s: %v\n", args[0], err)
		return ExitFail
	}
}

type usageError struct{ error }

// exitError ends with a status after the command printed its own report.
type exitError int

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("mirror "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected arguments %q", fs.Args())}
	}
	return nil
}

func logger(stderr io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

func runExport(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var c export.Config
	fs := newFlags("export", stderr)
	fs.StringVar(&c.Source, "source", "", "log URL: tlog-tiles prefix, or Rekor v1 API base URL with --kind rekor-v1")
	fs.StringVar(&c.Kind, "kind", export.KindTiles, "source kind: tiles or rekor-v1")
	fs.StringVar(&c.Dir, "dir", "", "mirror directory")
	fs.StringVar(&c.PolicyFile, "policy", "", "c2sp.org/tlog-policy file: log vkey, witness vkeys, quorum")
	fs.StringVar(&c.CheckpointURL, "checkpoint-url", "", "rekor-v1: a cosigned C2SP checkpoint of the same tree to snapshot (e.g. <source>/checkpoint)")
	fs.StringVar(&c.PendingURL, "pending-url", "", "our logserver's upstream replay list (<logserver>/api/v1/upstream/entries[?log=v1|v2]): kept in each snapshot as pending.json")
	fs.StringVar(&c.Origin, "origin", "", "pin the checkpoint origin (default: the key name, or <key name> - <tree ID>)")
	fs.DurationVar(&c.Every, "every", 0, "run as a daemon, exporting every interval (e.g. 24h)")
	fs.StringVar(&c.MetricsListen, "metrics-listen", "", "daemon: serve Prometheus /metrics on this address")
	fs.IntVar(&c.Workers, "workers", 8, "parallel downloads")
	fs.DurationVar(&c.Timeout, "timeout", 30*time.Second, "per-request timeout")
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := c.Validate(); err != nil {
		return usageError{err}
	}
	log := logger(stderr)
	e, err := export.New(c, log, stderr)
	if err != nil {
		return err
	}
	if c.Every == 0 {
		res, err := e.Run(ctx)
		if err != nil {
			return err
		}
		state := "written"
		if res.UpToDate {
			state = "up to date"
		}
		fmt.Fprintf(stdout, "snapshot %s %s: size %d, root %s, witnesses %v, fetched %d\n",
			res.Snapshot.Date, state, res.Snapshot.Size, res.Snapshot.Root, res.Snapshot.Witnesses, res.Fetched)
		return nil
	}
	if c.MetricsListen != "" {
		ln, err := net.Listen("tcp", c.MetricsListen)
		if err != nil {
			return err
		}
		srv := &http.Server{Handler: promhttp.HandlerFor(e.Metrics().Registry, promhttp.HandlerOpts{}), ReadHeaderTimeout: 10 * time.Second}
		go srv.Serve(ln)
		defer srv.Close()
		log.Info("metrics listening", "addr", ln.Addr().String())
	}
	return e.Daemon(ctx)
}

// runVKey prints the vkey of a PEM public key: Ed25519 (0x01) or, for a
// Rekor v1 log, ECDSA (0x02, key ID from the SPKI). The name is the note
// key name (Rekor: its hostname).
func runVKey(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("vkey", stderr)
	file := fs.String("pem", "", "PEM public key file")
	name := fs.String("name", "", "key name (C2SP origin, or a Rekor log's hostname)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *file == "" || !notekey.ValidName(*name) {
		return usageError{errors.New("--pem and a valid --name are required")}
	}
	v, err := vkeyOfPEM(*file, *name)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, v)
	return nil
}

func vkeyOfPEM(file, name string) (string, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return "", err
	}
	b, _ := pem.Decode(data)
	if b == nil || !strings.Contains(b.Type, "PUBLIC KEY") {
		return "", fmt.Errorf("%s: no PEM public key", file)
	}
	pub, err := x509.ParsePKIXPublicKey(b.Bytes)
	if err != nil {
		return "", err
	}
	return notekey.VerifierKeyFromPublicKey(name, pub)
}
