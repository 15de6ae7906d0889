package cli

import (
	"context"
	"crypto"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/stellaops/tlog/mirror/evidence"
	"github.com/stellaops/tlog/mirror/kit"
)

// multi is a repeatable flag.
type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(s string) error { *m = append(*m, s); return nil }

type bundleOpts struct {
	maxAge   time.Duration
	artifact string
	key      string
	scanID   string
	now      time.Time
}

// Verdict is the machine-readable result of verify --bundle --json, the
// input of policy engines. Attestations carries the fields the operator
// guide's Rego policy reads; the other fields summarise the bundles (Index
// and IntegratedTime are the first bundle's), Bundles has each one.
type Verdict struct {
	ScanID       string `json:"scan_id"`
	Verified     bool   `json:"verified"`
	Attestations struct {
		RekorVerified bool     `json:"rekor_verified"`
		RekorAgeHours *float64 `json:"rekor_age_hours"`
	} `json:"attestations"`
	Witnessed      bool               `json:"witnessed"`
	Index          *int64             `json:"index"`
	IntegratedTime string             `json:"integrated_time,omitempty"`
	Failures       []string           `json:"failures"`
	Kit            KitSummary         `json:"kit"`
	Bundles        []*evidence.Result `json:"bundles"`
}

// KitSummary is the kit part of a verdict.
type KitSummary struct {
	Path     string `json:"path"`
	OK       bool   `json:"ok"`
	Manifest string `json:"manifest_sha256"`
	Newest   string `json:"newest_snapshot"`
	Size     int64  `json:"newest_size"`
}

func verifyBundles(ctx context.Context, rep *kit.Report, files []string, o bundleOpts, asJSON bool, stdout io.Writer) error {
	opts := evidence.Options{Now: o.now, MaxAge: o.maxAge}
	if opts.Now.IsZero() {
		opts.Now = time.Now()
	}
	if o.artifact != "" {
		data, err := os.ReadFile(o.artifact)
		if err != nil {
			return err
		}
		opts.Artifact = data
	}
	if o.key != "" {
		data, err := os.ReadFile(o.key)
		if err != nil {
			return err
		}
		pub, _, err := evidence.KeyMaterial(data)
		if err != nil {
			return fmt.Errorf("--key %s: %w", o.key, err)
		}
		opts.Key = pub.(crypto.PublicKey)
	}
	v := &Verdict{ScanID: o.scanID, Failures: []string{}, Bundles: []*evidence.Result{}}
	v.Kit = KitSummary{Path: rep.Kit, OK: rep.OK, Manifest: rep.Manifest}
	if n := len(rep.Snapshots); n > 0 {
		v.Kit.Newest, v.Kit.Size = rep.Snapshots[n-1].Date, rep.Snapshots[n-1].Size
	}
	if !rep.OK {
		for _, e := range rep.Errors {
			v.Failures = append(v.Failures, "kit: "+e)
		}
		for _, s := range rep.Snapshots {
			for _, e := range s.Errors {
				v.Failures = append(v.Failures, "kit: snapshot "+s.Date+": "+e)
			}
		}
	}
	v.Witnessed = true
	for _, f := range files {
		e, err := evidence.Read(f)
		var r *evidence.Result
		if err != nil {
			r = &evidence.Result{File: f, Failures: []string{err.Error()}}
		} else {
			r = evidence.Check(ctx, rep, e, opts)
		}
		v.Bundles = append(v.Bundles, r)
		for _, msg := range r.Failures {
			v.Failures = append(v.Failures, f+": "+msg)
		}
		if !r.Witnessed {
			v.Witnessed = false
		}
		if r.AgeHours != nil && (v.Attestations.RekorAgeHours == nil || *r.AgeHours > *v.Attestations.RekorAgeHours) {
			h := *r.AgeHours
			v.Attestations.RekorAgeHours = &h
		}
	}
	if first := v.Bundles[0]; first.Format != "" { // the first bundle could be read
		idx := first.Index
		v.Index, v.IntegratedTime = &idx, first.IntegratedTime
	}
	v.Verified = len(v.Failures) == 0
	v.Attestations.RekorVerified = v.Verified
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.Encode(v)
	} else {
		printVerdict(stdout, v)
	}
	if !v.Verified {
		return exitError(ExitFail)
	}
	return nil
}

func printVerdict(w io.Writer, v *Verdict) {
	kitState := "verified"
	if !v.Kit.OK {
		kitState = "NOT verified"
	}
	fmt.Fprintf(w, "kit %s: %s, newest snapshot %s (size %d)\n", v.Kit.Path, kitState, v.Kit.Newest, v.Kit.Size)
	for _, r := range v.Bundles {
		mark := "OK  "
		if !r.Verified {
			mark = "FAIL"
		}
		fmt.Fprintf(w, "%s %s (%s %s)\n", mark, r.File, r.Format, r.Kind)
		if r.Format != "" {
			age := "unknown"
			if r.AgeHours != nil {
				age = fmt.Sprintf("%.1f h", *r.AgeHours)
			}
			fmt.Fprintf(w, "     index %d, integrated %s, age %s, witnessed %v\n", r.Index, orDash(r.IntegratedTime), age, r.Witnessed)
			fmt.Fprintf(w, "     signature %v, inclusion %v, SET %v, quorum %v, fresh %v\n", r.Checks.Signature, r.Checks.Inclusion, r.Checks.SET, r.Checks.Witnessed, r.Checks.Fresh)
			if s := r.Signer.String(); s != "" {
				fmt.Fprintf(w, "     signer %s\n", s)
			}
		}
		for _, f := range r.Failures {
			fmt.Fprintf(w, "     - %s\n", f)
		}
	}
	if v.Verified {
		fmt.Fprintf(w, "VERIFIED: %d bundle(s) against the kit\n", len(v.Bundles))
	} else {
		fmt.Fprintf(w, "NOT VERIFIED: %d failure(s)\n", len(v.Failures))
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
