package store_test

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stellaops/tlog/witness/store"
)

func open(t *testing.T, path string) *store.Store {
	t.Helper()
	st, err := store.Open(path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func hash(b byte) []byte { return bytes.Repeat([]byte{b}, sha256.Size) }

func cp(size uint64, h byte) store.Checkpoint {
	return store.Checkpoint{Tree: store.Tree{Size: size, Hash: hash(h)}, Note: []byte{h}}
}

func TestReplaceCAS(t *testing.T) {
	path := filepath.Join(t.TempDir(), "w.db")
	st := open(t, path)
	const o = "example.com/log"
	if err := st.Replace(o, store.Tree{}, cp(1, 1)); !errors.Is(err, store.ErrLogNotFound) {
		t.Fatalf("unknown log: %v", err)
	}
	if err := st.AddLog(store.Log{Origin: o, VerifierKeys: []string{"k"}, Source: store.SourceAdmin}); err != nil {
		t.Fatal(err)
	}
	if err := st.AddLog(store.Log{Origin: o}); !errors.Is(err, store.ErrLogExists) {
		t.Fatalf("duplicate add: %v", err)
	}
	if _, err := st.Checkpoint(store.ID(o)); !errors.Is(err, store.ErrNoCheckpoint) {
		t.Fatalf("no checkpoint yet: %v", err)
	}
	var ce *store.ConflictError
	if err := st.Replace(o, store.Tree{Size: 3, Hash: hash(3)}, cp(5, 5)); !errors.As(err, &ce) || ce.Size != 0 {
		t.Fatalf("first write with old 3: %v", err)
	}
	if err := st.Replace(o, store.Tree{}, cp(5, 5)); err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		old  store.Tree
		next store.Checkpoint
		want error
		size uint64
	}{
		"stale size":           {store.Tree{}, cp(7, 7), nil, 5},
		"right size, bad root": {store.Tree{Size: 5, Hash: hash(9)}, cp(7, 7), nil, 5},
		"rollback":             {store.Tree{Size: 5, Hash: hash(5)}, cp(4, 4), store.ErrRollback, 0},
		"fork":                 {store.Tree{Size: 5, Hash: hash(5)}, cp(5, 6), store.ErrFork, 0},
	} {
		err := st.Replace(o, tc.old, tc.next)
		if tc.want != nil {
			if !errors.Is(err, tc.want) {
				t.Errorf("%s: %v, want %v", name, err, tc.want)
			}
			continue
		}
		if !errors.As(err, &ce) || ce.Size != tc.size {
			t.Errorf("%s: %v, want conflict at %d", name, err, tc.size)
		}
	}
	// Same tree again (fresh cosignature) is allowed.
	if err := st.Replace(o, store.Tree{Size: 5, Hash: hash(5)}, cp(5, 5)); err != nil {
		t.Fatal(err)
	}
	if err := st.SetDisabled(o, true); err != nil {
		t.Fatal(err)
	}
	if err := st.Replace(o, store.Tree{Size: 5, Hash: hash(5)}, cp(6, 6)); !errors.Is(err, store.ErrLogDisabled) {
		t.Fatalf("disabled: %v", err)
	}
	if err := st.SetDisabled("nope", true); !errors.Is(err, store.ErrLogNotFound) {
		t.Fatalf("disable unknown: %v", err)
	}
	if err := st.SetDisabled(o, false); err != nil {
		t.Fatal(err)
	}
	if err := st.Replace(o, store.Tree{Size: 5, Hash: hash(5)}, cp(6, 6)); err != nil {
		t.Fatal(err)
	}

	// Reopen: state is there, and the lock is exclusive while open.
	if _, err := store.Open(path, store.Options{LockTimeout: 50 * time.Millisecond}); !errors.Is(err, store.ErrLocked) {
		t.Fatalf("second open: %v", err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	st = open(t, path)
	defer st.Close()
	c, err := st.Checkpoint(store.ID(o))
	if err != nil || c.Size != 6 || !bytes.Equal(c.Hash, hash(6)) || !bytes.Equal(c.Note, []byte{6}) {
		t.Fatalf("after reopen: %+v, %v", c, err)
	}
	l, cur, err := st.State(o)
	if err != nil || l.Origin != o || cur == nil || cur.Size != 6 {
		t.Fatalf("State: %+v %+v %v", l, cur, err)
	}
}

// TestConcurrentReplace races N writers expecting the same old tree:
// exactly one wins, the rest see the winner's size.
func TestConcurrentReplace(t *testing.T) {
	st := open(t, filepath.Join(t.TempDir(), "w.db"))
	defer st.Close()
	const o = "log"
	if err := st.AddLog(store.Log{Origin: o, VerifierKeys: []string{"k"}}); err != nil {
		t.Fatal(err)
	}
	if err := st.Replace(o, store.Tree{}, cp(10, 10)); err != nil {
		t.Fatal(err)
	}
	const n = 32
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = st.Replace(o, store.Tree{Size: 10, Hash: hash(10)}, cp(uint64(11+i), byte(11+i)))
		}()
	}
	wg.Wait()
	winner := -1
	for i, err := range errs {
		if err == nil {
			if winner >= 0 {
				t.Fatalf("writers %d and %d both won", winner, i)
			}
			winner = i
		}
	}
	if winner < 0 {
		t.Fatal("nobody won")
	}
	for i, err := range errs {
		var ce *store.ConflictError
		if i != winner && (!errors.As(err, &ce) || ce.Size != uint64(11+winner)) {
			t.Errorf("writer %d: %v", i, err)
		}
	}
}

func TestSyncConfigLogs(t *testing.T) {
	st := open(t, filepath.Join(t.TempDir(), "w.db"))
	defer st.Close()
	now := time.Unix(1700000000, 0).UTC()
	if _, err := st.SyncConfigLogs([]store.Log{{Origin: "a", VerifierKeys: []string{"ka"}}, {Origin: "b", VerifierKeys: []string{"kb"}}}, now); err != nil {
		t.Fatal(err)
	}
	if err := st.AddLog(store.Log{Origin: "c", VerifierKeys: []string{"kc"}, Source: store.SourceAdmin}); err != nil {
		t.Fatal(err)
	}
	if err := st.SetDisabled("a", true); err != nil {
		t.Fatal(err)
	}
	// b leaves the config: disabled. a keeps its admin-set disabled flag but
	// gets the new key. c (admin) is untouched.
	disabled, err := st.SyncConfigLogs([]store.Log{{Origin: "a", VerifierKeys: []string{"ka2"}}}, now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if len(disabled) != 1 || disabled[0] != "b" {
		t.Fatalf("disabled %v", disabled)
	}
	logs, err := st.Logs()
	if err != nil {
		t.Fatal(err)
	}
	if len(logs) != 3 {
		t.Fatalf("%d logs", len(logs))
	}
	a, b, c := logs[0], logs[1], logs[2]
	if !a.Disabled || a.VerifierKeys[0] != "ka2" || !a.Added.Equal(now) || a.Source != store.SourceConfig {
		t.Errorf("a: %+v", a)
	}
	if !b.Disabled {
		t.Errorf("b: %+v", b)
	}
	if c.Disabled || c.Source != store.SourceAdmin {
		t.Errorf("c: %+v", c)
	}
	// b listed again: re-enabled; a stays disabled (an operator did that).
	if _, err := st.SyncConfigLogs([]store.Log{{Origin: "a", VerifierKeys: []string{"ka2"}}, {Origin: "b", VerifierKeys: []string{"kb"}}}, now); err != nil {
		t.Fatal(err)
	}
	if l, _ := st.Log("b"); l.Disabled || l.Unlisted {
		t.Errorf("b listed again: %+v", l)
	}
	if l, _ := st.Log("a"); !l.Disabled {
		t.Errorf("a: %+v", l)
	}
}
