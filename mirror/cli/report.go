package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/stellaops/tlog/mirror/kit"
	"github.com/stellaops/tlog/mirror/report"
	"github.com/stellaops/tlog/mirror/store"
)

func runReport(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("report", stderr)
	kitPath := fs.String("kit", "", "kit archive or directory")
	out := fs.String("out", "", "HTML file to write")
	pins := pinFlags(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	if *kitPath == "" || *out == "" {
		return usageError{errors.New("--kit and --out are required")}
	}
	k, err := kit.Open(*kitPath)
	if err != nil {
		return err
	}
	defer k.Close()
	rep := kit.Verify(ctx, k, *pins)
	var b bytes.Buffer
	if err := report.Render(&b, rep, time.Now()); err != nil {
		return err
	}
	if err := store.WriteFile(*out, b.Bytes()); err != nil {
		return err
	}
	state := "verified"
	if !rep.OK {
		state = "NOT verified"
	}
	fmt.Fprintf(stdout, "report %s written: kit %s, %d snapshots\n", *out, state, len(rep.Snapshots))
	return nil
}
