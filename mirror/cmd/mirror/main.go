// Command mirror copies transparency logs into verified daily snapshots,
// packs offline kits and verifies them (and evidence bundles) with no
// network. See mirror/README.md and `mirror -h`.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/stellaops/tlog/mirror/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
