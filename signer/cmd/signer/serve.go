package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"net"
	"os"

	"github.com/stellaops/tlog/internal/service"
	"github.com/stellaops/tlog/signer/audit"
	"github.com/stellaops/tlog/signer/server"
)

// cmdServe runs the signing service until SIGINT or SIGTERM.
func cmdServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := service.ConfigFlag(fs, "signer.yaml")
	logJSON := fs.Bool("log-json", false, "log as JSON: overrides the configuration's logging.format")
	logLevel := fs.String("log-level", "", "debug, info, warn or error: overrides the configuration's logging.level")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("serve takes no arguments")
	}
	cfg, err := server.LoadConfig(*cfgPath)
	if err != nil {
		return err
	}
	if *logLevel != "" {
		cfg.Logging.Level = *logLevel
	}
	if *logJSON {
		cfg.Logging.Format = "json"
	}
	logger, err := cfg.Logging.Logger(stderr)
	if err != nil {
		return usagef("%v", err)
	}
	return server.Run(ctx, cfg, server.Options{Logger: logger}, func(addr net.Addr) {
		fmt.Fprintf(stdout, "listening on %s\n", addr)
	})
}

// cmdMigrate applies the audit schema with a privileged DSN.
func cmdMigrate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("migrate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dsnEnv := fs.String("dsn-env", "SIGNER_MIGRATE_DSN", "environment variable holding a DSN allowed to CREATE TABLE")
	if err := fs.Parse(args); err != nil {
		return err
	}
	dsn := os.Getenv(*dsnEnv)
	if dsn == "" {
		return usagef("set %s to the database DSN", *dsnEnv)
	}
	db, err := audit.OpenDB(dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	if err := audit.Migrate(ctx, db); err != nil {
		return err
	}
	fmt.Fprintln(stdout, "signer schema up to date")
	return nil
}

// cmdToken prints a new random bearer token and the SHA-256 to put in the
// configuration.
func cmdToken(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		return err
	}
	var b [32]byte
	rand.Read(b[:])
	tok := "stsk_" + base64.RawURLEncoding.EncodeToString(b[:])
	sum := sha256.Sum256([]byte(tok))
	fmt.Fprintf(stdout, "token:  %s\nsha256: %s\n", tok, hex.EncodeToString(sum[:]))
	return nil
}
