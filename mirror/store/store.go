// Package store is the mirror's directory on disk and its durable writes.
//
// Layout of a mirror directory:
//
//	tile/...                     verified tlog-tiles (hash tiles and entry
//	                             bundles, full and partial), shared by all
//	                             snapshots: a tile's path names its content
//	snapshots/<YYYY-MM-DD>/      one verified snapshot per day (package snapshot)
//	trust/                       the trust policy the snapshots were verified with
//	staging/tile/...             downloaded, not yet verified tiles (resume)
//	evidence/<time>/             checkpoints kept after a failed consistency check
//
// Contract: every file is written to a temporary name, fsynced, renamed
// into place and its directory fsynced (WriteFile), so a crash leaves the
// old file or the new one, never a torn one. Nothing under tile/ or
// snapshots/ is written before it is verified. Staged tiles are written
// without fsync (they are verified before use); a commit flushes the file
// system (SyncFS) before and after moving them into place, and only then
// writes the snapshot that refers to them.
package store

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/stellaops/tlog/internal/durablefile"
	"github.com/stellaops/tlog/mirror/c2sp"
)

// WriteFile writes data to path durably (internal/durablefile: temporary
// file, fsync, rename, fsync of the directory). Missing directories are
// created.
func WriteFile(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return durablefile.Write(path, data, 0o644)
}

// WriteFileNoSync writes data to path via a temporary file and a rename,
// without fsync: after a crash the file is absent, complete, or (if the
// rename reached the disk before the data) empty or short. Only for
// staging, whose files are verified before use; SyncFS makes them durable.
func WriteFileNoSync(path string, data []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".tmp-"+filepath.Base(path)+"-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// SyncFS flushes the whole file system holding dir (syncfs(2)): one call
// instead of an fsync per file when thousands of tiles are committed.
func SyncFS(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return unix.Syncfs(int(d.Fd()))
}

// SyncDir fsyncs a directory, making renames in it durable.
func SyncDir(dir string) error { return durablefile.SyncDir(dir) }

// Dir is a mirror directory.
type Dir struct {
	Root string
}

// Open opens (creating) the mirror directory root.
func Open(root string) (*Dir, error) {
	if root == "" {
		return nil, errors.New("store: empty directory name")
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, err
	}
	return &Dir{Root: root}, nil
}

// Path joins a slash-separated path below the directory.
func (d *Dir) Path(rel string) string { return filepath.Join(d.Root, filepath.FromSlash(rel)) }

// StagingDir is where tiles wait for verification.
func (d *Dir) StagingDir() string { return d.Path("staging") }

// Tiles returns a reader of the tiles stored in the directory under prefix
// ("" for verified tiles, "staging" for staged ones).
func (d *Dir) Tiles(prefix string) FileTiles {
	return FileTiles{Root: filepath.Join(d.Root, filepath.FromSlash(prefix))}
}

// FileTiles reads tiles from <Root>/tile/....
type FileTiles struct{ Root string }

// Tile reads a tile; a missing one is an error wrapping fs.ErrNotExist.
func (t FileTiles) Tile(ref c2sp.TileRef) ([]byte, error) {
	return os.ReadFile(t.File(ref))
}

// File is the tile's file name.
func (t FileTiles) File(ref c2sp.TileRef) string {
	return filepath.Join(t.Root, filepath.FromSlash(ref.Path()))
}

// Has reports whether the tile exists.
func (t FileTiles) Has(ref c2sp.TileRef) bool {
	_, err := os.Stat(t.File(ref))
	return err == nil
}

// Stage writes a tile without fsync (WriteFileNoSync): for staging only.
func (t FileTiles) Stage(ref c2sp.TileRef, data []byte) error {
	return WriteFileNoSync(t.File(ref), data)
}

// Files lists every regular file below dir as slash-separated paths
// relative to dir, skipping hidden (temporary) files.
func Files(dir string) ([]string, error) {
	var out []string
	err := filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if e.Type().IsRegular() && !strings.HasPrefix(e.Name(), ".") {
			rel, err := filepath.Rel(dir, p)
			if err != nil {
				return err
			}
			out = append(out, filepath.ToSlash(rel))
		}
		return nil
	})
	return out, err
}
