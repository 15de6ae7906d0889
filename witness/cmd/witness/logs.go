package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/stellaops/tlog/internal/service"
	"github.com/stellaops/tlog/witness/admin"
	"github.com/stellaops/tlog/witness/config"
	"github.com/stellaops/tlog/witness/store"
)

// openRegistry opens the store directly, or, if a running server holds it,
// returns a client of the server's admin socket.
func openRegistry(cfg *config.Config) (admin.Registry, func() error, error) {
	st, err := store.Open(cfg.DBFile, store.Options{LockTimeout: 300 * time.Millisecond})
	if errors.Is(err, store.ErrLocked) {
		return admin.Dial(cfg.AdminSocket), func() error { return nil }, nil
	}
	if err != nil {
		return nil, nil, err
	}
	return &admin.Local{Store: st}, st.Close, nil
}

func logsCmd(ctx context.Context, args []string, stdout io.Writer) (err error) {
	if len(args) == 0 {
		return fmt.Errorf("%w: logs needs a subcommand\n%s", errUsage, usage)
	}
	sub, args := args[0], args[1:]
	fs := flag.NewFlagSet("logs "+sub, flag.ContinueOnError)
	cfgPath := service.ConfigFlag(fs, "witness.yaml")
	var origin *string
	var vkeys stringList
	var asJSON *bool
	switch sub {
	case "list":
		asJSON = fs.Bool("json", false, "print JSON")
	case "add":
		origin = fs.String("origin", "", "checkpoint origin line")
		fs.Var(&vkeys, "vkey", "log verifier key (repeatable)")
	case "disable", "enable":
		origin = fs.String("origin", "", "checkpoint origin line")
	default:
		return fmt.Errorf("%w: unknown logs subcommand %q\n%s", errUsage, sub, usage)
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if origin != nil && *origin == "" {
		return fmt.Errorf("%w: logs %s needs -origin", errUsage, sub)
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return err
	}
	reg, closeReg, err := openRegistry(cfg)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, closeReg()) }()

	switch sub {
	case "add":
		return reg.AddLog(ctx, *origin, vkeys)
	case "disable", "enable":
		return reg.SetDisabled(ctx, *origin, sub == "disable")
	}
	logs, err := reg.Logs(ctx)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(logs)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ORIGIN\tSTATE\tSOURCE\tSIZE\tVKEYS")
	for _, l := range logs {
		state, size := "enabled", "-"
		if l.Disabled {
			state = "disabled"
		}
		if l.Cosigned {
			size = fmt.Sprint(l.Size)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", l.Origin, state, l.Source, size, strings.Join(l.VKeys, ","))
	}
	return tw.Flush()
}
