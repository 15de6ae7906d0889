// Package durablefile is the project's one way to write a file that must
// survive a crash whole or not at all (keys, vkeys, state files): the data
// goes to a temporary file in the same directory, which is fsynced, then
// moved into place, then the directory is fsynced so the new name is
// durable too. A reader sees the old file or the new one, never a
// half-written one; after Write or Create returns nil, a power loss keeps
// the new file.
package durablefile

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// Write replaces (or creates) path with data, mode perm.
func Write(path string, data []byte, perm os.FileMode) error {
	return write(path, data, perm, func(tmp string) error { return os.Rename(tmp, path) })
}

// Create writes path with data, mode perm, only if it does not exist: an
// existing file is never replaced (the error wraps os.ErrExist), even when
// two processes race to create it.
func Create(path string, data []byte, perm os.FileMode) error {
	return write(path, data, perm, func(tmp string) error { return os.Link(tmp, path) })
}

func write(path string, data []byte, perm os.FileMode, place func(tmp string) error) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*") // mode 0600
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // after Rename it no longer exists; after Link it is the spare name
	_, werr := f.Write(data)
	if err := errors.Join(werr, f.Chmod(perm), f.Sync(), f.Close()); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := place(tmp); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return SyncDir(dir)
}

// SyncDir fsyncs a directory, making the names created or removed in it
// durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	return errors.Join(d.Sync(), d.Close())
}
