// Command localrun is `make run`: the local appliance in the foreground.
//
//	localrun -dir .run -bin bin
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/stellaops/tlog/deployment/localrun"
	"github.com/stellaops/tlog/internal/service"
)

func main() {
	dir := flag.String("dir", ".run", "run directory: database, keys, logs, env")
	bin := flag.String("bin", "bin", "directory of the built service binaries")
	flag.Parse()
	ctx, stop := service.SignalContext()
	defer stop()
	if err := localrun.Run(ctx, localrun.Options{Dir: *dir, BinDir: *bin, Out: os.Stdout}); err != nil {
		fmt.Fprintln(os.Stderr, "localrun:", err)
		os.Exit(1)
	}
}
