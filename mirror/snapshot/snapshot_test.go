package snapshot

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestWriteReadRecover(t *testing.T) {
	root := t.TempDir()
	s := &Snapshot{Meta: Meta{Date: "2026-11-28", TakenAt: time.Unix(1, 0).UTC(), Size: 5, PreviousSize: 3, Previous: "2026-11-27"},
		Checkpoint: []byte("o\n5\nAA==\n\n— o x\n"), Proof: [][32]byte{{1}, {2}}}
	if err := Write(root, s); err != nil {
		t.Fatal(err)
	}
	got, err := Read(os.DirFS(root), "2026-11-28")
	if err != nil || got.Meta.Size != 5 || len(got.Proof) != 2 || got.Proof[1] != s.Proof[1] {
		t.Fatalf("read back %+v %v", got, err)
	}
	// A crash between Write's renames: only .old-<date> is left.
	base := filepath.Join(root, Dir)
	if err := os.Rename(filepath.Join(base, "2026-11-28"), filepath.Join(base, ".old-2026-11-28")); err != nil {
		t.Fatal(err)
	}
	os.Mkdir(filepath.Join(base, ".tmp-2026-11-28-123"), 0o755)
	if ds, _ := List(os.DirFS(root)); len(ds) != 0 {
		t.Fatalf("listed %v", ds)
	}
	if err := Recover(root); err != nil {
		t.Fatal(err)
	}
	if ds, _ := List(os.DirFS(root)); len(ds) != 1 {
		t.Fatalf("after recovery: %v", ds)
	}
	if _, err := os.Stat(filepath.Join(base, ".tmp-2026-11-28-123")); err == nil {
		t.Fatal("temporary directory left")
	}
	if err := Write(root, &Snapshot{Meta: Meta{Date: "bad"}}); err == nil {
		t.Fatal("bad date accepted")
	}
}
