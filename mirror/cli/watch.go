package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stellaops/tlog/mirror/kit"
	"github.com/stellaops/tlog/mirror/watch"
)

// ExitMatches is watch's exit status when entries matched.
const ExitMatches = 3

func runWatch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("watch", stderr)
	dir := fs.String("dir", "", "mirror directory, unpacked kit or kit archive")
	listFile := fs.String("identities", "", "watch-list file (key/fingerprint/subject/digest lines)")
	stateFile := fs.String("state", "", "state file: where the last watch ended (default: scan every snapshot)")
	metricsFile := fs.String("metrics-file", "", "write Prometheus metrics here (textfile collector format)")
	asJSON := fs.Bool("json", false, "print matches as JSON")
	l := watch.NewList()
	for _, kind := range []string{"key", "fingerprint", "subject", "digest"} {
		fs.Func(kind, "watch this "+kind+" (repeatable)", func(v string) error { return l.Add(kind, v, ".") })
	}
	pins := pinFlags(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	if *dir == "" {
		return usageError{errors.New("--dir is required")}
	}
	if *listFile != "" {
		fl, err := watch.ReadList(*listFile)
		if err != nil {
			return err
		}
		for k := range fl.Keys {
			l.Keys[k] = true
		}
		for k := range fl.Subjects {
			l.Subjects[k] = true
		}
		for k := range fl.Digests {
			l.Digests[k] = true
		}
	}
	if l.Empty() {
		return usageError{errors.New("nothing to watch: give --identities or --key/--fingerprint/--subject/--digest")}
	}
	k, err := kit.Open(*dir)
	if err != nil {
		return err
	}
	defer k.Close()
	if _, err := os.Stat(filepath.Join(k.Root, kit.Manifest)); err == nil {
		// A kit is verified before it is believed; a mirror directory was
		// verified by the export that wrote it.
		if rep := kit.Verify(ctx, k, *pins); !rep.OK {
			printKit(stderr, rep)
			return errors.New("the kit does not verify; not watching it")
		}
	}
	var from watch.State
	if *stateFile != "" {
		if from, err = watch.ReadState(*stateFile); err != nil {
			return err
		}
	}
	res, err := watch.Scan(k.Root, from, l)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.Encode(map[string]any{"snapshots": res.Snapshots, "scanned": res.Scanned, "matches": res.Matches})
	} else {
		for _, m := range res.Matches {
			fmt.Fprintf(stdout, "MATCH snapshot %s index %d %s: %s\n", m.Snapshot, m.Index, m.Kind, strings.Join(m.Matched, ", "))
		}
		fmt.Fprintf(stdout, "watched %d snapshot(s), %d entries, %d match(es)\n", len(res.Snapshots), res.Scanned, len(res.Matches))
	}
	if *metricsFile != "" {
		if err := writeWatchMetrics(*metricsFile, res); err != nil {
			return err
		}
	}
	if *stateFile != "" {
		if err := watch.WriteState(*stateFile, res.State); err != nil {
			return err
		}
	}
	if len(res.Matches) > 0 {
		return exitError(ExitMatches)
	}
	return nil
}

func writeWatchMetrics(file string, res *watch.Result) error {
	reg := prometheus.NewRegistry()
	matches := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "mirror_watch_matches",
		Help: "Entries of the last watch run matching a watched identity."}, []string{"identity"})
	scanned := prometheus.NewGauge(prometheus.GaugeOpts{Name: "mirror_watch_entries_scanned", Help: "Entries read by the last watch run."})
	size := prometheus.NewGauge(prometheus.GaugeOpts{Name: "mirror_watch_tree_size", Help: "Tree size the last watch run reached."})
	last := prometheus.NewGauge(prometheus.GaugeOpts{Name: "mirror_watch_last_run_timestamp_seconds", Help: "Unix time of the last watch run."})
	reg.MustRegister(matches, scanned, size, last)
	for _, m := range res.Matches {
		for _, id := range m.Matched {
			matches.WithLabelValues(id).Inc()
		}
	}
	scanned.Set(float64(res.Scanned))
	size.Set(float64(res.State.Size))
	last.Set(float64(time.Now().Unix()))
	return prometheus.WriteToTextfile(file, reg)
}
