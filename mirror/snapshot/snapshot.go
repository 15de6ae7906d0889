// Package snapshot holds the mirror's dated snapshots: per day, the
// verified checkpoint (with its cosignatures), the consistency proof from
// the previous snapshot and a small JSON record. Tiles are shared by all
// snapshots (package store).
//
// Files of snapshots/<YYYY-MM-DD>/:
//
//	checkpoint     the checkpoint as the log served it, verbatim
//	consistency    "consistency <old size> <new size>\n" then one base64
//	               hash per line: the RFC 6962 proof from the previous snapshot
//	snapshot.json  Meta
//	pending.json   Pending, if the export was given the log's upstream
//	               replay list: entries the log had not yet replayed to
//	               its upstream (transparency_pending) at export time
//
// Contract: Write builds the directory under a temporary name and renames
// it into place, so a snapshot is complete or absent; rewriting a day
// replaces it atomically.
package snapshot

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/stellaops/tlog/mirror/store"
)

// Dir is the snapshots directory below a mirror or kit root.
const Dir = "snapshots"

// Meta is snapshot.json.
type Meta struct {
	Date    string    `json:"date"`
	TakenAt time.Time `json:"taken_at"`
	Source  string    `json:"source"`
	Origin  string    `json:"origin"`
	Size    int64     `json:"size"`
	Root    string    `json:"root"` // base64
	// Previous is the date of the snapshot the consistency proof starts
	// from ("" for the first one) and PreviousSize its size.
	Previous     string   `json:"previous,omitempty"`
	PreviousSize int64    `json:"previous_size"`
	Witnesses    []string `json:"witnesses"`
	Quorum       bool     `json:"quorum"`
}

// Snapshot is one day's snapshot.
type Snapshot struct {
	Meta       Meta
	Checkpoint []byte
	Proof      [][32]byte
	// Pending is nil when the export did not list pending entries.
	Pending *Pending
}

// Pending is pending.json: the entries the logserver had logged but not
// yet replayed to its upstream log when the snapshot was taken (its
// GET /api/v1/upstream/entries?state=pending, every page).
type Pending struct {
	Source    string         `json:"source"`
	FetchedAt time.Time      `json:"fetched_at"`
	Count     int            `json:"count"`
	Oldest    *time.Time     `json:"oldest,omitempty"`
	Entries   []PendingEntry `json:"entries"`
}

// PendingEntry is one pending entry, with the logserver's field names.
type PendingEntry struct {
	Log        string    `json:"log"`
	LeafHash   string    `json:"leafHash"`
	Status     string    `json:"status"` // transparency_pending, or awaiting_local: not (yet) in the log
	LocalIndex *int64    `json:"localIndex,omitempty"`
	CreatedAt  time.Time `json:"createdAt"`
	Attempts   int       `json:"attempts"`
	LastError  string    `json:"lastError,omitempty"`
}

var dateRE = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}$`)

// Date is the snapshot name of a time (UTC day).
func Date(t time.Time) string { return t.UTC().Format(time.DateOnly) }

// List returns the snapshot dates in fsys, oldest first.
func List(fsys fs.FS) ([]string, error) {
	es, err := fs.ReadDir(fsys, Dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range es {
		if e.IsDir() && dateRE.MatchString(e.Name()) {
			out = append(out, e.Name())
		}
	}
	sort.Strings(out)
	return out, nil
}

// Read reads the snapshot of date.
func Read(fsys fs.FS, date string) (*Snapshot, error) {
	dir := path.Join(Dir, date)
	s := &Snapshot{}
	raw, err := fs.ReadFile(fsys, path.Join(dir, "snapshot.json"))
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(raw, &s.Meta); err != nil {
		return nil, fmt.Errorf("snapshot %s: snapshot.json: %w", date, err)
	}
	if s.Checkpoint, err = fs.ReadFile(fsys, path.Join(dir, "checkpoint")); err != nil {
		return nil, err
	}
	cons, err := fs.ReadFile(fsys, path.Join(dir, "consistency"))
	if err != nil {
		return nil, err
	}
	if s.Proof, err = parseProof(cons, s.Meta.PreviousSize, s.Meta.Size); err != nil {
		return nil, fmt.Errorf("snapshot %s: consistency: %w", date, err)
	}
	pend, err := fs.ReadFile(fsys, path.Join(dir, "pending.json"))
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, err
	default:
		s.Pending = &Pending{}
		if err := json.Unmarshal(pend, s.Pending); err != nil {
			return nil, fmt.Errorf("snapshot %s: pending.json: %w", date, err)
		}
		if s.Pending.Count != len(s.Pending.Entries) {
			return nil, fmt.Errorf("snapshot %s: pending.json: count %d, %d entries", date, s.Pending.Count, len(s.Pending.Entries))
		}
	}
	return s, nil
}

// Latest reads the newest snapshot, or returns nil if there is none.
func Latest(fsys fs.FS) (*Snapshot, error) {
	ds, err := List(fsys)
	if err != nil || len(ds) == 0 {
		return nil, err
	}
	return Read(fsys, ds[len(ds)-1])
}

func parseProof(data []byte, m, n int64) ([][32]byte, error) {
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	f := strings.Fields(lines[0])
	if len(f) != 3 || f[0] != "consistency" || f[1] != strconv.FormatInt(m, 10) || f[2] != strconv.FormatInt(n, 10) {
		return nil, fmt.Errorf("header %q, want \"consistency %d %d\"", lines[0], m, n)
	}
	var out [][32]byte
	for _, l := range lines[1:] {
		h, err := base64.StdEncoding.DecodeString(l)
		if err != nil || len(h) != 32 {
			return nil, fmt.Errorf("bad hash line %q", l)
		}
		out = append(out, [32]byte(h))
	}
	return out, nil
}

func marshalProof(m, n int64, proof [][32]byte) []byte {
	b := fmt.Appendf(nil, "consistency %d %d\n", m, n)
	for _, h := range proof {
		b = append(b, base64.StdEncoding.EncodeToString(h[:])+"\n"...)
	}
	return b
}

// Write stores s under root/snapshots/<date>, replacing that day's snapshot.
func Write(root string, s *Snapshot) error {
	if !dateRE.MatchString(s.Meta.Date) {
		return fmt.Errorf("snapshot: bad date %q", s.Meta.Date)
	}
	base := filepath.Join(root, Dir)
	if err := os.MkdirAll(base, 0o755); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(base, ".tmp-"+s.Meta.Date+"-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	meta, err := json.MarshalIndent(s.Meta, "", "  ")
	if err != nil {
		return err
	}
	files := map[string][]byte{
		"checkpoint":    s.Checkpoint,
		"consistency":   marshalProof(s.Meta.PreviousSize, s.Meta.Size, s.Proof),
		"snapshot.json": append(meta, '\n'),
	}
	if s.Pending != nil {
		p, err := json.MarshalIndent(s.Pending, "", "  ")
		if err != nil {
			return err
		}
		files["pending.json"] = append(p, '\n')
	}
	for name, data := range files {
		if err := store.WriteFile(filepath.Join(tmp, name), data); err != nil {
			return err
		}
	}
	final := filepath.Join(base, s.Meta.Date)
	old := filepath.Join(base, ".old-"+s.Meta.Date)
	os.RemoveAll(old)
	if _, err := os.Stat(final); err == nil {
		if err := os.Rename(final, old); err != nil {
			return err
		}
	}
	if err := os.Rename(tmp, final); err != nil {
		return err
	}
	if err := store.SyncDir(base); err != nil {
		return err
	}
	return os.RemoveAll(old)
}

// Recover undoes a Write interrupted between its two renames: a day whose
// directory is missing but whose previous version (.old-<date>) is there
// gets it back. Leftover temporary directories are removed.
func Recover(root string) error {
	base := filepath.Join(root, Dir)
	es, err := os.ReadDir(base)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range es {
		name := e.Name()
		switch {
		case strings.HasPrefix(name, ".old-"):
			final := filepath.Join(base, strings.TrimPrefix(name, ".old-"))
			if _, err := os.Stat(final); errors.Is(err, fs.ErrNotExist) {
				if err := os.Rename(filepath.Join(base, name), final); err != nil {
					return err
				}
			} else if err := os.RemoveAll(filepath.Join(base, name)); err != nil {
				return err
			}
		case strings.HasPrefix(name, ".tmp-"):
			if err := os.RemoveAll(filepath.Join(base, name)); err != nil {
				return err
			}
		}
	}
	return store.SyncDir(base)
}
