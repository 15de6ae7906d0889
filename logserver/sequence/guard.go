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
	"sync"

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
	return filepath.Join(g.dir, "published-head-"+hex.EncodeToString(sum[:8])+".json")
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
	var f headFile
	if err := json.Unmarshal(data, &f); err != nil {
		return h, fmt.Errorf("published-head file %s: %w", g.path(o), err)
	}
	root, err := hex.DecodeString(f.Root)
	if err != nil || len(root) != len(h.Root) || f.Origin != o.Name || f.KeyID != hex.EncodeToString(o.KeyID[:]) || f.Size < 0 {
		return h, fmt.Errorf("published-head file %s: malformed or for another origin", g.path(o))
	}
	h.TreeID, h.Size = f.TreeID, f.Size
	copy(h.Root[:], root)
	return h, nil
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

// record writes the record files of heads durably: a temporary file,
// fsync, rename, fsync of the directory.
func (g *guard) record(heads []store.PublishedHead) error {
	for _, h := range heads {
		data, err := json.Marshal(headFile{Origin: h.Origin, KeyID: hex.EncodeToString(h.KeyID[:]), TreeID: h.TreeID,
			Size: h.Size, Root: hex.EncodeToString(h.Root[:])})
		if err != nil {
			return err
		}
		if err := writeDurably(g.path(Origin{h.Origin, h.KeyID}), append(data, '\n')); err != nil {
			return fmt.Errorf("published-head file: %w", err)
		}
	}
	return nil
}

// advanced records heads as published.
func (g *guard) advanced(heads []store.PublishedHead) {
	g.mu.Lock()
	g.last = heads
	g.mu.Unlock()
}

func writeDurably(path string, data []byte) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, ".tmp-"+filepath.Base(path))
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
