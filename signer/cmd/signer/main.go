// Command signer is the Stella signer:
//
//	signer serve -config signer.yaml   run the signing service (until SIGINT/SIGTERM)
//	signer migrate                     apply the audit schema (DSN in $SIGNER_MIGRATE_DSN)
//	signer token                       make a bearer token and its SHA-256 for the config
//	signer keys init-token  create a SoftHSM2 development token
//	signer keys generate    generate a key pair inside a token (or a PEM file)
//	signer keys list        list the key pairs of a token
//	signer keys public      print a public key as PEM or as a note vkey
//	signer keys bench       measure raw token signatures per second
//
// PINs are read from files or environment variables, never from flags.
// Run "signer keys <command> -h" for the flags of each command.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/stellaops/tlog/internal/service"
)

func main() {
	ctx, stop := service.SignalContext()
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run executes one command line and returns the process exit code:
// 0 success, 1 failure, 2 usage error.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	slog.SetDefault(slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprintln(stderr, "usage: signer serve -config signer.yaml | signer migrate | signer token | signer keys <init-token|generate|list|public|bench> [flags]")
		return 2
	}
	switch args[0] {
	case "keys":
		return runKeys(ctx, args[1:], stdout, stderr)
	case "serve", "migrate", "token":
		cmd := map[string]func(context.Context, []string, io.Writer, io.Writer) error{
			"serve": cmdServe, "migrate": cmdMigrate, "token": cmdToken}[args[0]]
		err := cmd(ctx, args[1:], stdout, stderr)
		switch {
		case err == nil, errors.Is(err, flag.ErrHelp):
			return 0
		}
		fmt.Fprintf(stderr, "signer %s: %v\n", args[0], err)
		if errors.Is(err, errUsage) {
			return 2
		}
		return 1
	}
	fmt.Fprintf(stderr, "signer: unknown command %q\n", args[0])
	return 2
}
