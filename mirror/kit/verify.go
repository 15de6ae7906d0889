package kit

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"

	"github.com/stellaops/tlog/logserver/tree"
	"github.com/stellaops/tlog/mirror/c2sp"
	"github.com/stellaops/tlog/mirror/snapshot"
	"github.com/stellaops/tlog/mirror/store"
	"github.com/stellaops/tlog/mirror/tiles"
	"github.com/stellaops/tlog/mirror/trust"
)

// Report is the result of verifying a kit.
type Report struct {
	Kit       string           `json:"kit"`
	Manifest  string           `json:"manifest_sha256,omitempty"`
	Files     int              `json:"files"`
	Snapshots []SnapshotResult `json:"snapshots"`
	// Errors are the failures not tied to one snapshot.
	Errors []string `json:"errors"`
	OK     bool     `json:"ok"`

	// Trust and Tree are set when the kit's policy parsed and its newest
	// snapshot's tiles verified: what evidence is checked against.
	Trust *trust.Trust `json:"-"`
	Tree  *tree.Tree   `json:"-"`
	// Verified are the checkpoints of the snapshots that verified.
	Verified []*trust.Checkpoint `json:"-"`

	// Pending, if the newest snapshot lists them (pending.json), sums up
	// the entries the log had not yet replayed to its upstream log. They
	// are not a failure: the kit's own log holds them.
	Pending *PendingSummary `json:"pending,omitempty"`
}

// PendingSummary is the newest snapshot's pending.json in short.
type PendingSummary struct {
	Snapshot  string    `json:"snapshot"`
	Source    string    `json:"source"`
	FetchedAt time.Time `json:"fetched_at"`
	Count     int       `json:"count"`
	// Oldest is the creation time of the oldest pending entry and
	// OldestAgeHours its age when the list was fetched.
	Oldest         *time.Time `json:"oldest,omitempty"`
	OldestAgeHours float64    `json:"oldest_age_hours"`
}

// SnapshotResult is one snapshot's verification.
type SnapshotResult struct {
	Date         string   `json:"date"`
	Size         int64    `json:"size"`
	Root         string   `json:"root"`
	Previous     string   `json:"previous,omitempty"`
	PreviousSize int64    `json:"previous_size"`
	Witnesses    []string `json:"witnesses"`
	Quorum       bool     `json:"quorum"`
	LogSignature bool     `json:"log_signature"`
	Consistent   bool     `json:"consistent"`
	TakenAt      string   `json:"taken_at"`
	Errors       []string `json:"errors"`
}

// Pins are what the auditor holds independently of the kit.
type Pins struct {
	// PolicyFile, if set, is the trust policy to verify with instead of
	// the kit's own trust/policy (which must then be identical).
	PolicyFile string
	// Manifest, if set, is the expected hex SHA-256 of MANIFEST.sha256.
	Manifest string
}

// Verify checks a kit (see the package comment). It never stops at the
// first failure: every failure is in the report.
func Verify(ctx context.Context, k *Kit, pins Pins) *Report {
	r := &Report{Kit: k.Source, Errors: []string{}, Snapshots: []SnapshotResult{}}
	r.checkManifest(k)
	if pins.Manifest != "" && !strings.EqualFold(pins.Manifest, r.Manifest) {
		r.Errors = append(r.Errors, fmt.Sprintf("%s has SHA-256 %s, not the pinned %s: another or altered kit", Manifest, r.Manifest, pins.Manifest))
	}
	policy := filepath.Join(k.Root, "trust", "policy")
	if pins.PolicyFile != "" {
		own, _ := os.ReadFile(policy)
		pinned, err := os.ReadFile(pins.PolicyFile)
		if err != nil {
			r.Errors = append(r.Errors, "pinned policy: "+err.Error())
			return r.done()
		}
		if !bytes.Equal(own, pinned) {
			r.Errors = append(r.Errors, "trust/policy differs from the pinned policy "+pins.PolicyFile+" (verifying with the pinned one)")
		}
		policy = pins.PolicyFile
	}
	t, err := trust.Load(policy, "")
	if err != nil {
		r.Errors = append(r.Errors, "trust policy: "+err.Error())
		return r.done()
	}
	r.Trust = t
	fsys := k.FS()
	dates, err := snapshot.List(fsys)
	if err != nil || len(dates) == 0 {
		r.Errors = append(r.Errors, fmt.Sprintf("no snapshots in the kit (%v)", err))
		return r.done()
	}
	var prev *trust.Checkpoint
	var prevDate string
	var newest *trust.Checkpoint
	var cps []*trust.Checkpoint
	for _, d := range dates {
		sr := SnapshotResult{Date: d, Errors: []string{}}
		s, err := snapshot.Read(fsys, d)
		if err != nil {
			sr.Errors = append(sr.Errors, err.Error())
			r.Snapshots = append(r.Snapshots, sr)
			continue
		}
		r.Pending = nil
		if p := s.Pending; p != nil {
			r.Pending = &PendingSummary{Snapshot: d, Source: p.Source, FetchedAt: p.FetchedAt, Count: p.Count, Oldest: p.Oldest}
			if p.Oldest != nil {
				r.Pending.OldestAgeHours = p.FetchedAt.Sub(*p.Oldest).Hours()
			}
		}
		sr.Previous, sr.PreviousSize, sr.TakenAt = s.Meta.Previous, s.Meta.PreviousSize, s.Meta.TakenAt.UTC().Format("2006-01-02T15:04:05Z")
		cp, err := t.Verify(s.Checkpoint)
		var q *trust.QuorumError
		if cp != nil {
			sr.LogSignature = true
			sr.Size, sr.Root, sr.Witnesses, sr.Quorum = cp.Size, b64(cp.Root[:]), cp.Witnesses, cp.Quorum
		}
		switch {
		case errors.As(err, &q):
			sr.Errors = append(sr.Errors, "checkpoint: "+err.Error()+" (dropped or invalid cosignature)")
		case err != nil:
			sr.Errors = append(sr.Errors, err.Error())
		}
		if cp == nil {
			r.Snapshots = append(r.Snapshots, sr)
			continue
		}
		if s.Meta.Size != cp.Size || s.Meta.Root != b64(cp.Root[:]) {
			sr.Errors = append(sr.Errors, fmt.Sprintf("snapshot.json says size %d root %s, the checkpoint size %d root %s", s.Meta.Size, s.Meta.Root, cp.Size, b64(cp.Root[:])))
		}
		sr.Consistent = true
		if prev != nil {
			if cp.Origin != prev.Origin {
				sr.Errors = append(sr.Errors, fmt.Sprintf("origin %q differs from snapshot %s's %q", cp.Origin, prevDate, prev.Origin))
				sr.Consistent = false
			}
			switch {
			case s.Meta.Previous != prevDate || s.Meta.PreviousSize != prev.Size:
				sr.Errors = append(sr.Errors, fmt.Sprintf("consistency proof is from %s (size %d), the previous snapshot in the kit is %s (size %d)",
					s.Meta.Previous, s.Meta.PreviousSize, prevDate, prev.Size))
				sr.Consistent = false
			case cp.Size < prev.Size:
				sr.Errors = append(sr.Errors, fmt.Sprintf("forks from snapshot %s: the tree shrank from %d to %d", prevDate, prev.Size, cp.Size))
				sr.Consistent = false
			default:
				if err := proof.VerifyConsistency(rfc6962.DefaultHasher, uint64(prev.Size), uint64(cp.Size), proofBytes(s.Proof), prev.Root[:], cp.Root[:]); err != nil {
					sr.Errors = append(sr.Errors, fmt.Sprintf("forks from snapshot %s: consistency proof %d→%d does not verify: %v", prevDate, prev.Size, cp.Size, err))
					sr.Consistent = false
				}
			}
		}
		if len(sr.Errors) == 0 {
			cps = append(cps, cp)
		}
		prev, prevDate, newest = cp, d, cp
		r.Snapshots = append(r.Snapshots, sr)
	}
	if newest != nil {
		r.checkTiles(ctx, k, newest, cps)
	}
	r.Verified = cps
	return r.done()
}

func (r *Report) done() *Report {
	r.OK = len(r.Errors) == 0 && len(r.Snapshots) > 0
	for _, s := range r.Snapshots {
		if len(s.Errors) > 0 {
			r.OK = false
		}
	}
	return r
}

// checkTiles verifies the tiles against the newest snapshot and the roots
// of the older snapshots in that tree.
func (r *Report) checkTiles(ctx context.Context, k *Kit, newest *trust.Checkpoint, cps []*trust.Checkpoint) {
	reader := tiles.Layers{Layers: []interface {
		Tile(c2sp.TileRef) ([]byte, error)
	}{store.FileTiles{Root: k.Root}}}
	tr, err := tiles.Verify(ctx, reader, 0, newest.Size, newest.Root, nil)
	if err != nil {
		r.Errors = append(r.Errors, "tiles: "+err.Error())
		return
	}
	r.Tree = tr
	for i := range r.Snapshots {
		s := &r.Snapshots[i]
		if s.Root == "" {
			continue
		}
		root, err := tr.Root(ctx, s.Size)
		if err != nil || b64(root[:]) != s.Root {
			s.Errors = append(s.Errors, fmt.Sprintf("root %s is not the root of the kit's tree at size %d: swapped root or forked snapshot", s.Root, s.Size))
			s.Consistent = false
		}
	}
}

// checkManifest checks every file against MANIFEST.sha256 and that no
// file is unlisted.
func (r *Report) checkManifest(k *Kit) {
	data, err := os.ReadFile(filepath.Join(k.Root, Manifest))
	if err != nil {
		r.Errors = append(r.Errors, "no "+Manifest+": not a kit (mirror kit makes one)")
		return
	}
	sum := sha256.Sum256(data)
	r.Manifest = hex.EncodeToString(sum[:])
	listed := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for line := 1; sc.Scan(); line++ {
		want, name, ok := strings.Cut(sc.Text(), "  ")
		if !ok || len(want) != 64 || !fs.ValidPath(name) {
			r.Errors = append(r.Errors, fmt.Sprintf("%s line %d: malformed", Manifest, line))
			continue
		}
		listed[name] = true
		got, err := os.ReadFile(filepath.Join(k.Root, filepath.FromSlash(name)))
		if err != nil {
			r.Errors = append(r.Errors, fmt.Sprintf("%s: listed in the manifest but missing", name))
			continue
		}
		if s := sha256.Sum256(got); hex.EncodeToString(s[:]) != want {
			r.Errors = append(r.Errors, fmt.Sprintf("%s: SHA-256 %x differs from the manifest's %s: altered", name, s, want))
		}
	}
	files, err := store.Files(k.Root)
	if err != nil {
		r.Errors = append(r.Errors, err.Error())
		return
	}
	r.Files = len(files)
	sort.Strings(files)
	for _, f := range files {
		if f != Manifest && f != "VERIFY.txt" && !listed[f] {
			r.Errors = append(r.Errors, fmt.Sprintf("%s: not in the manifest: added", f))
		}
	}
}

func proofBytes(p [][32]byte) [][]byte {
	out := make([][]byte, len(p))
	for i := range p {
		out[i] = p[i][:]
	}
	return out
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
