package sequence

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	"github.com/stellaops/tlog/internal/durablefile"
	"github.com/stellaops/tlog/logserver/store"
	"github.com/stellaops/tlog/logserver/tree"
)

// ErrForked is wrapped by every refusal to publish a head inconsistent with
// one already published for the same origin and key.
var ErrForked = errors.New("sequence: refusing to sign a second history")

// Origin names a checkpoint signed from the log's heads: its origin (or
// log name) and the SHA-256 of its key.
type Origin struct {
	Name  string
	KeyID [32]byte
}

// guard keeps, per origin and key, the highest head published, in two
// places a single mistake cannot both erase: a file in the state directory
// (written durably before the head is published) and a row in the
// database (in the pass's transaction). A head is published only if it
// continues every record: same tree, size not smaller, and the tree's root
// at the recorded size is the recorded root.
type guard struct {
	dir     string
	treeID  int64
	origins []Origin

	mu   sync.Mutex
	last []store.PublishedHead // the highest of both records, per origin

	fmu   sync.Mutex
	files map[string]*recordFile // open record files, by path
}

// headFile is the JSON form of a record file.
type headFile struct {
	Origin string `json:"origin"`
	KeyID  string `json:"key_id"`
	TreeID int64  `json:"tree_id"`
	Size   int64  `json:"tree_size"`
	Root   string `json:"root_hash"`
}

func (g *guard) path(o Origin) string {
	sum := sha256.Sum256(append([]byte(o.Name+"\x00"), o.KeyID[:]...))
	return filepath.Join(g.dir, "published-head-"+hex.EncodeToString(sum[:8]))
}

// openGuard reads the records of origins from the state files and the
// store and refuses a tree other than the recorded one.
func openGuard(ctx context.Context, dir string, s Store, treeID int64, origins []Origin) (*guard, error) {
	if dir == "" {
		return nil, errors.New("sequence: no state directory for the published-head records")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("state directory: %w", err)
	}
	g := &guard{dir: dir, treeID: treeID, origins: origins}
	for _, o := range origins {
		rec := store.PublishedHead{Origin: o.Name, KeyID: o.KeyID, TreeID: treeID, Size: -1}
		fromFile, err := g.read(o)
		if err != nil {
			return nil, err
		}
		fromDB, err := s.PublishedHead(ctx, o.Name, o.KeyID)
		switch {
		case errors.Is(err, store.ErrNotFound):
		case err != nil:
			return nil, fmt.Errorf("published head of %q: %w", o.Name, err)
		}
		for _, r := range []struct {
			h     store.PublishedHead
			ok    bool
			where string
		}{{fromFile, fromFile.Size >= 0, g.path(o)}, {fromDB, err == nil, "the database"}} {
			if !r.ok {
				continue
			}
			if r.h.TreeID != treeID {
				return nil, fmt.Errorf("%w: origin %q with this key was published from tree %d up to size %d (recorded in %s); this database's tree is %d: the database was replaced or wiped. Restore it, or give the new log a new name or key",
					ErrForked, o.Name, r.h.TreeID, r.h.Size, r.where, treeID)
			}
			if rec.Size >= 0 && rec.Size == r.h.Size && rec.Root != r.h.Root {
				return nil, fmt.Errorf("%w: origin %q has two records at size %d with different roots (%x in %s)", ErrForked, o.Name, r.h.Size, r.h.Root, r.where)
			}
			if r.h.Size > rec.Size {
				rec = r.h
			}
		}
		g.last = append(g.last, rec)
	}
	return g, nil
}

// A record file holds two slots of slotSize bytes, written alternately in
// place (one fdatasync per pass, no rename): each is the hex SHA-256 of a
// JSON record, a space, the record, padded with newlines. A slot is a disk
// sector, so a write lands whole or not at all; the checksum catches the
// rest, and the other slot still holds the previous record.
const slotSize = 512

// read returns the file record of o; Size -1 if there is none.
func (g *guard) read(o Origin) (store.PublishedHead, error) {
	h := store.PublishedHead{Origin: o.Name, KeyID: o.KeyID, Size: -1}
	data, err := os.ReadFile(g.path(o))
	if errors.Is(err, os.ErrNotExist) {
		return h, nil
	}
	if err != nil {
		return h, err
	}
	valid := 0
	for slot := 0; slot+slotSize <= len(data) && slot < 2*slotSize; slot += slotSize {
		r, ok := parseSlot(data[slot:slot+slotSize], o)
		if !ok {
			continue
		}
		valid++
		switch {
		case h.Size >= 0 && r.TreeID != h.TreeID:
			return h, fmt.Errorf("published-head file %s: its slots name trees %d and %d", g.path(o), h.TreeID, r.TreeID)
		case r.Size > h.Size:
			h = r
		}
	}
	if valid == 0 {
		return h, fmt.Errorf("published-head file %s: no valid record (restore it from a backup of the state directory)", g.path(o))
	}
	return h, nil
}

func parseSlot(slot []byte, o Origin) (store.PublishedHead, bool) {
	h := store.PublishedHead{Origin: o.Name, KeyID: o.KeyID}
	sumHex, rest, ok := strings.Cut(strings.TrimRight(string(slot), "\n"), " ")
	sum := sha256.Sum256([]byte(rest))
	if !ok || sumHex != hex.EncodeToString(sum[:]) {
		return h, false
	}
	var f headFile
	if json.Unmarshal([]byte(rest), &f) != nil {
		return h, false
	}
	root, err := hex.DecodeString(f.Root)
	if err != nil || len(root) != len(h.Root) || f.Origin != o.Name || f.KeyID != hex.EncodeToString(o.KeyID[:]) || f.Size < 0 {
		return h, false
	}
	h.TreeID, h.Size = f.TreeID, f.Size
	copy(h.Root[:], root)
	return h, true
}

func formatSlot(h store.PublishedHead) ([]byte, error) {
	rec, err := json.Marshal(headFile{Origin: h.Origin, KeyID: hex.EncodeToString(h.KeyID[:]), TreeID: h.TreeID,
		Size: h.Size, Root: hex.EncodeToString(h.Root[:])})
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(rec)
	line := hex.EncodeToString(sum[:]) + " " + string(rec)
	if len(line) >= slotSize {
		return nil, fmt.Errorf("published-head record of %d bytes does not fit a slot", len(line))
	}
	return []byte(line + strings.Repeat("\n", slotSize-len(line))), nil
}

// check returns the records advanced to h, or an error (fatal, wrapping
// ErrForked) if h does not continue one of them. With behind, records
// ahead of h are not an error (start-up: publishing may still catch up).
func (g *guard) check(ctx context.Context, t *tree.Tree, h *Head, behind bool) ([]store.PublishedHead, error) {
	g.mu.Lock()
	last := append([]store.PublishedHead(nil), g.last...)
	g.mu.Unlock()
	next := make([]store.PublishedHead, len(last))
	for i, r := range last {
		if r.Size > h.Size && behind {
			continue
		}
		if r.Size >= 0 {
			if h.Size < r.Size {
				return nil, fatal(fmt.Errorf("%w: origin %q was published up to size %d, refusing size %d", ErrForked, r.Origin, r.Size, h.Size))
			}
			root := h.Root
			if h.Size > r.Size {
				var err error
				if root, err = t.Root(ctx, r.Size); err != nil {
					return nil, fmt.Errorf("root at recorded size %d: %w", r.Size, err)
				}
			}
			if root != r.Root {
				return nil, fatal(fmt.Errorf("%w: origin %q was published at size %d with root %x; this tree has root %x there",
					ErrForked, r.Origin, r.Size, r.Root[:], root[:]))
			}
		}
		next[i] = store.PublishedHead{Origin: r.Origin, KeyID: r.KeyID, TreeID: h.TreeID, Size: h.Size, Root: h.Root}
	}
	return next, nil
}

// covered returns an error if a record is ahead of the head at start-up:
// Trillian and the store together no longer hold what was published.
func (g *guard) covered(h *Head) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, r := range g.last {
		if r.Size > h.Size {
			return fmt.Errorf("%w: origin %q was published up to size %d, but the database holds the log only up to %d: it was restored from an older backup or lost commits. Restore the newest backup",
				ErrForked, r.Origin, r.Size, h.Size)
		}
	}
	return nil
}

// record writes the record files of heads durably, before the heads are
// published: in place, in the slot not holding the newest record, then
// fdatasync. A missing file is created whole (temporary file, fsync,
// rename, fsync of the directory).
func (g *guard) record(heads []store.PublishedHead) error {
	g.fmu.Lock()
	defer g.fmu.Unlock()
	if g.files == nil {
		g.files = map[string]*recordFile{}
	}
	for _, h := range heads {
		slot, err := formatSlot(h)
		if err != nil {
			return err
		}
		o := Origin{h.Origin, h.KeyID}
		path := g.path(o)
		rf := g.files[path]
		if rf == nil {
			if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
				err := durablefile.Create(path, append(append([]byte(nil), slot...), slot...), 0o600)
				if err != nil && !errors.Is(err, os.ErrExist) {
					return fmt.Errorf("published-head file: %w", err)
				}
			}
			f, err := os.OpenFile(path, os.O_RDWR, 0)
			if err != nil {
				return fmt.Errorf("published-head file: %w", err)
			}
			// Write first into the slot not holding the newest record.
			rf = &recordFile{f: f}
			if data, err := os.ReadFile(path); err == nil && len(data) >= 2*slotSize {
				a, okA := parseSlot(data[:slotSize], o)
				b, okB := parseSlot(data[slotSize:2*slotSize], o)
				if okB && (!okA || b.Size > a.Size) {
					rf.next = 1
				}
			}
			g.files[path] = rf
		}
		rf.next = 1 - rf.next
		if _, err := rf.f.WriteAt(slot, int64(rf.next*slotSize)); err != nil {
			return fmt.Errorf("published-head file %s: %w", path, err)
		}
		if err := syscall.Fdatasync(int(rf.f.Fd())); err != nil {
			return fmt.Errorf("published-head file %s: %w", path, err)
		}
	}
	return nil
}

// recordFile is an open record file and the slot holding its newest record.
type recordFile struct {
	f    *os.File
	next int
}

// close closes the open record files.
func (g *guard) close() {
	g.fmu.Lock()
	defer g.fmu.Unlock()
	for p, rf := range g.files {
		rf.f.Close()
		delete(g.files, p)
	}
}

// advanced records heads as published.
func (g *guard) advanced(heads []store.PublishedHead) {
	g.mu.Lock()
	g.last = heads
	g.mu.Unlock()
}
