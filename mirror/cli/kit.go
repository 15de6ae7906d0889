package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/stellaops/tlog/mirror/kit"
)

func runKit(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("kit", stderr)
	dir := fs.String("dir", "", "mirror directory")
	out := fs.String("out", "", "kit archive to write (.tar, or .tar.gz to compress)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *dir == "" || *out == "" {
		return usageError{errors.New("--dir and --out are required")}
	}
	sum, err := kit.Pack(*dir, *out, time.Now())
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "kit %s written; MANIFEST.sha256 SHA-256 %s (give it to the auditor out of band)\n", *out, sum)
	return nil
}

func runVerify(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("verify", stderr)
	kitPath := fs.String("kit", "", "kit archive or directory")
	asJSON := fs.Bool("json", false, "print a machine-readable verdict")
	pins := pinFlags(fs)
	var bundles multi
	fs.Var(&bundles, "bundle", "evidence bundle to check against the kit (repeatable)")
	o := bundleOpts{}
	fs.DurationVar(&o.maxAge, "max-age", 0, "fail evidence whose entry is older than this (e.g. 24h; 0: no limit)")
	fs.StringVar(&o.artifact, "artifact", "", "the artifact the bundles sign (checks its digest)")
	fs.StringVar(&o.key, "key", "", "PEM public key of the signer of DSSE envelopes logged with a .tlog-proof")
	fs.StringVar(&o.scanID, "scan-id", "", "scan_id to put in the JSON verdict (policy messages name it)")
	fs.Func("now", "judge freshness as of this RFC 3339 time (default: the clock)", func(s string) error {
		t, err := time.Parse(time.RFC3339, s)
		o.now = t
		return err
	})
	if err := parse(fs, args); err != nil {
		return err
	}
	if *kitPath == "" {
		return usageError{errors.New("--kit is required")}
	}
	k, err := kit.Open(*kitPath)
	if err != nil {
		return err
	}
	defer k.Close()
	rep := kit.Verify(ctx, k, *pins)
	if len(bundles) > 0 {
		return verifyBundles(ctx, rep, bundles, o, *asJSON, stdout)
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.Encode(rep)
	} else {
		printKit(stdout, rep)
	}
	if !rep.OK {
		return exitError(ExitFail)
	}
	return nil
}

func printKit(w io.Writer, r *kit.Report) {
	fmt.Fprintf(w, "kit %s\n", r.Kit)
	if r.Manifest != "" {
		fmt.Fprintf(w, "  manifest SHA-256 %s, %d files\n", r.Manifest, r.Files)
	}
	for _, s := range r.Snapshots {
		mark := "OK  "
		if len(s.Errors) > 0 {
			mark = "FAIL"
		}
		fmt.Fprintf(w, "  %s snapshot %s  size %d  root %s  witnesses %v quorum %v\n", mark, s.Date, s.Size, s.Root, s.Witnesses, s.Quorum)
		for _, e := range s.Errors {
			fmt.Fprintf(w, "       - %s\n", e)
		}
	}
	for _, e := range r.Errors {
		fmt.Fprintf(w, "  FAIL %s\n", e)
	}
	if p := r.Pending; p != nil {
		if p.Count == 0 {
			fmt.Fprintf(w, "  upstream replay: no entries pending (snapshot %s, listed %s)\n", p.Snapshot, p.FetchedAt.Format(time.RFC3339))
		} else {
			fmt.Fprintf(w, "  PENDING upstream replay: %d entries not yet in the upstream log (snapshot %s, listed %s), oldest since %s (%.1f h); see snapshots/%s/pending.json\n",
				p.Count, p.Snapshot, p.FetchedAt.Format(time.RFC3339), p.Oldest.Format(time.RFC3339), p.OldestAgeHours, p.Snapshot)
		}
	}
	if r.OK {
		fmt.Fprintf(w, "VERIFIED: %d snapshots, signatures, quorum, chain consistency and tiles\n", len(r.Snapshots))
	} else {
		fmt.Fprintln(w, "NOT VERIFIED")
	}
}

// pinFlags adds the flags of what the auditor holds apart from the kit.
func pinFlags(fs *flag.FlagSet) *kit.Pins {
	p := &kit.Pins{}
	fs.StringVar(&p.PolicyFile, "policy", "", "verify with this trust policy instead of the kit's trust/policy (which must match)")
	fs.StringVar(&p.Manifest, "manifest-sha256", "", "the MANIFEST.sha256 digest the kit's maker gave out of band")
	return p
}
