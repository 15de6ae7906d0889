package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
)

// errUsage marks command-line mistakes (exit status 2).
var errUsage = errors.New("usage")

const usage = `usage:
  witness serve -c witness.yaml
  witness keygen -name NAME -out KEYFILE
  witness vkey -c witness.yaml
  witness log-vkey -name NAME -pubkey PUBKEY.pem
  witness logs list -c witness.yaml [-json]
  witness logs add -c witness.yaml -origin ORIGIN -vkey VKEY [-vkey VKEY...]
  witness logs disable -c witness.yaml -origin ORIGIN
  witness logs enable -c witness.yaml -origin ORIGIN`

// run executes one command; it returns instead of exiting.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: no command\n%s", errUsage, usage)
	}
	cmd, args := args[0], args[1:]
	switch cmd {
	case "serve":
		return serveCmd(ctx, args, stderr)
	case "keygen":
		return keygenCmd(args, stdout)
	case "vkey":
		return vkeyCmd(ctx, args, stdout)
	case "log-vkey":
		return logVKeyCmd(args, stdout)
	case "logs":
		return logsCmd(ctx, args, stdout)
	case "help", "-h", "-help", "--help":
		fmt.Fprintln(stdout, usage)
		return nil
	default:
		return fmt.Errorf("%w: unknown command %q\n%s", errUsage, cmd, usage)
	}
}

// parseFlags parses a subcommand's flags; errors wrap errUsage.
func parseFlags(fs *flag.FlagSet, args []string) error {
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %s: %v\n%s", errUsage, fs.Name(), err, usage)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: %s: unexpected arguments %q", errUsage, fs.Name(), fs.Args())
	}
	return nil
}

// stringList is a repeatable string flag.
type stringList []string

func (s *stringList) String() string     { return fmt.Sprint(*s) }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }
