package admin_test

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/stellaops/tlog/witness/admin"
	"github.com/stellaops/tlog/witness/internal/testlog"
	"github.com/stellaops/tlog/witness/store"
)

// TestSocketRoundTrip drives the registry through a real Unix socket and
// checks each error kind survives the trip.
func TestSocketRoundTrip(t *testing.T) {
	dir := t.TempDir()
	st, err := store.Open(filepath.Join(dir, "w.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	sock := filepath.Join(dir, "admin", "a.sock")
	os.Mkdir(filepath.Dir(sock), 0o700)
	os.WriteFile(sock, nil, 0o600)
	if _, err := admin.Listen(sock); err == nil {
		t.Fatal("Listen replaced a regular file")
	}
	os.Remove(sock)
	ln, err := admin.Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(sock); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode %v %v", fi.Mode(), err)
	}
	srv := &http.Server{Handler: admin.Handler(&admin.Local{Store: st})}
	go srv.Serve(ln)
	defer srv.Close()

	ctx := context.Background()
	c := admin.Dial(sock)
	l, _ := testlog.NewRekor("rekor.example.com", 7)
	if err := c.AddLog(ctx, l.Origin, []string{"nope"}); !errors.Is(err, admin.ErrInvalid) {
		t.Fatalf("invalid: %v", err)
	}
	if err := c.AddLog(ctx, l.Origin, nil); !errors.Is(err, admin.ErrInvalid) {
		t.Fatalf("no keys: %v", err)
	}
	if err := c.AddLog(ctx, l.Origin, []string{l.VKey}); err != nil {
		t.Fatal(err)
	}
	if err := c.AddLog(ctx, l.Origin, []string{l.VKey}); !errors.Is(err, store.ErrLogExists) {
		t.Fatalf("exists: %v", err)
	}
	if err := c.SetDisabled(ctx, "missing", true); !errors.Is(err, store.ErrLogNotFound) {
		t.Fatalf("not found: %v", err)
	}
	if err := c.SetDisabled(ctx, l.Origin, true); err != nil {
		t.Fatal(err)
	}
	logs, err := c.Logs(ctx)
	if err != nil || len(logs) != 1 || !logs[0].Disabled || logs[0].Source != store.SourceAdmin || logs[0].Cosigned {
		t.Fatalf("logs %+v %v", logs, err)
	}
	// The change is in the store the server uses.
	got, err := st.Log(l.Origin)
	if err != nil || !got.Disabled || got.VerifierKeys[0] != l.VKey {
		t.Fatalf("store: %+v %v", got, err)
	}
}

// TestSocketDirectory checks the socket is only created inside a directory
// only its owner can enter: a missing one is created mode 0700, a shared
// one (0755, 0770, 0711) is refused and left without a socket.
func TestSocketDirectory(t *testing.T) {
	base := t.TempDir()
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, mode := range []os.FileMode{0o755, 0o770, 0o711, 0o701} {
		dir := filepath.Join(base, "shared"+mode.String())
		if err := os.Mkdir(dir, mode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(dir, mode) // despite the umask
		sock := filepath.Join(dir, "admin.sock")
		if ln, err := admin.Listen(sock); err == nil {
			ln.Close()
			t.Errorf("Listen in a directory of mode %v succeeded", mode)
		}
		if _, err := os.Lstat(sock); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("mode %v: a socket was created: %v", mode, err)
		}
	}
	sock := filepath.Join(base, "new", "admin.sock")
	ln, err := admin.Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	fi, err := os.Stat(filepath.Dir(sock))
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("created directory mode %v, %v; want 0700", fi.Mode(), err)
	}
}
