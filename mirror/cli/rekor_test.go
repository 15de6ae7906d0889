package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	rclient "github.com/sigstore/rekor/pkg/client"
	gclient "github.com/sigstore/rekor/pkg/generated/client"
	rentries "github.com/sigstore/rekor/pkg/generated/client/entries"
	"github.com/sigstore/rekor/pkg/generated/models"

	"github.com/stellaops/tlog/internal/keyfile"
	"github.com/stellaops/tlog/logserver/config"
	"github.com/stellaops/tlog/logserver/witnessing"
	"github.com/stellaops/tlog/mirror/export"
	"github.com/stellaops/tlog/testing/entries"
	"github.com/stellaops/tlog/testing/stack"
)

// rekorLog is our logserver over a private MariaDB, reached through the
// Rekor v1 API only.
type rekorLog struct {
	ls     *stack.Logserver
	client *gclient.Rekor
	signer *entries.Signer
	vkey   string // the log's ECDSA key as a 0x02 vkey named by the hostname
	mu     sync.Mutex
	posted []models.LogEntry
}

func newRekorLog(t *testing.T) *rekorLog { return newRekorLogWith(t, nil) }

func newRekorLogWith(t *testing.T, mutate func(*config.Config)) *rekorLog {
	t.Helper()
	db := stack.TestMariaDB(t, false)
	ls := stack.StartLogserver(t, stack.TestDatabase(t, db, "rekor"), t.TempDir(), mutate)
	c, err := rclient.GetRekorClient(ls.URL, rclient.WithRetryCount(0))
	if err != nil {
		t.Fatal(err)
	}
	s, err := entries.NewSigner()
	if err != nil {
		t.Fatal(err)
	}
	vk, err := vkeyOfPEM(ls.PublicKeyFile, ls.Config.Hostname)
	if err != nil {
		t.Fatal(err)
	}
	return &rekorLog{ls: ls, client: c, signer: s, vkey: vk}
}

// add posts n hashedrekord entries, 16 at a time.
func (r *rekorLog) add(t *testing.T, prefix string, n int) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	sem := make(chan struct{}, 16)
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			pe, err := r.signer.HashedRekord(fmt.Appendf(nil, "%s artifact %d", prefix, i))
			if err != nil {
				errs <- err
				return
			}
			resp, err := r.client.Entries.CreateLogEntry(rentries.NewCreateLogEntryParams().WithProposedEntry(pe))
			if err != nil {
				errs <- err
				return
			}
			r.mu.Lock()
			r.posted = append(r.posted, resp.Payload)
			r.mu.Unlock()
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// TestExportRekorV1 mirrors our logserver through its Rekor v1 API (no
// tiles): entries by index, the tree rebuilt and checked against the signed
// tree head, consistency with the previous day from the log's proof, then
// the kit verifies offline.
func TestExportRekorV1(t *testing.T) {
	r := newRekorLog(t)
	r.add(t, "one", 20)
	policy := filepath.Join(t.TempDir(), "policy")
	os.WriteFile(policy, []byte("log "+r.vkey+"\nquorum none\n"), 0o600)
	dir := t.TempDir()
	now := day1
	e := newExporter(t, export.Config{Source: r.ls.URL, Kind: export.KindRekorV1, Dir: dir, PolicyFile: policy}, &now)
	res, err := e.Run(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if res.Snapshot.Size != 20 || !strings.HasPrefix(res.Snapshot.Origin, "stella.test - ") {
		t.Fatalf("day 1: %+v", res.Snapshot)
	}
	r.add(t, "two", 250)
	now = now.Add(24 * time.Hour)
	if res, err = e.Run(t.Context()); err != nil || res.Snapshot.Size != 270 || res.Snapshot.PreviousSize != 20 {
		t.Fatalf("day 2: %+v %v", res, err)
	}
	kitFile := filepath.Join(t.TempDir(), "rekor-kit.tar")
	mustRun(t, "kit", "--dir", dir, "--out", kitFile)
	out := mustRun(t, "verify", "--kit", kitFile)
	if !strings.Contains(out, "VERIFIED: 2 snapshots") {
		t.Fatalf("verify:\n%s", out)
	}

	// The same key signing another tree (a second logserver given a copy
	// of our log's key file but not its head records, which would make the
	// logserver itself refuse): its checkpoints verify, but the chain
	// refuses them and keeps both as evidence.
	other := newRekorLogWith(t, func(c *config.Config) {
		c.Key.File = r.ls.Config.Key.File
		c.Key.Create = false
		c.Sequencer.StateDir = t.TempDir()
	})
	if other.vkey != r.vkey {
		t.Fatal("the second log does not use the first one's key")
	}
	other.add(t, "fork", 300)
	ef := newExporter(t, export.Config{Source: other.ls.URL, Kind: export.KindRekorV1, Dir: dir, PolicyFile: policy}, &now)
	var inc *export.InconsistentError
	if _, err := ef.Run(t.Context()); !errors.As(err, &inc) {
		t.Fatalf("another tree under our key: %v", err)
	}
	if _, err := os.Stat(filepath.Join(inc.Evidence, "new.checkpoint")); err != nil {
		t.Fatal(err)
	}
	t.Logf("fork: %v", inc)
}

// TestExportRekorV1Witnessed mirrors our logserver through its Rekor v1 API
// at its C2SP checkpoint, cosigned by our witness binary: the snapshot has
// the witness quorum, the Rekor signed tree head is checked against it, and
// a Rekor LogEntry (whose proof is against the Rekor checkpoint) verifies
// against the kit as witnessed.
func TestExportRekorV1Witnessed(t *testing.T) {
	const origin = "stella.test/log"
	keyPath := filepath.Join(t.TempDir(), "note.pem")
	key, err := keyfile.CreateEd25519(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := witnessing.NewCheckpointSigner(origin, key)
	if err != nil {
		t.Fatal(err)
	}
	w := startWitness(t, "witness.test/w3", origin, cs.VerifierKey())
	lsPolicy := filepath.Join(t.TempDir(), "log-policy")
	os.WriteFile(lsPolicy, fmt.Appendf(nil, "log %s\nwitness W %s %s\nquorum W\n", cs.VerifierKey(), w.VKey, w.URL), 0o600)
	r := newRekorLogWith(t, func(c *config.Config) {
		c.Witnessing = config.Witnessing{Origin: origin, KeyFile: keyPath, PolicyFile: lsPolicy, RetryMin: 100 * time.Millisecond, RetryMax: time.Second}
	})
	r.add(t, "w", 30)
	deadline := time.Now().Add(time.Minute) // hang guard
	for {
		resp, err := http.Get(r.ls.URL + "/checkpoint")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if strings.Contains(string(b), "\n30\n") && strings.Contains(string(b), "— witness.test/w3 ") {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("the logserver never published a cosigned checkpoint of size 30")
		}
		time.Sleep(50 * time.Millisecond)
	}
	policy := filepath.Join(t.TempDir(), "policy")
	os.WriteFile(policy, fmt.Appendf(nil, "log %s\nlog %s\nwitness W %s\nquorum W\n", cs.VerifierKey(), r.vkey, w.VKey), 0o600)
	dir := t.TempDir()
	now := time.Now()
	e := newExporter(t, export.Config{Source: r.ls.URL, Kind: export.KindRekorV1, CheckpointURL: r.ls.URL + "/checkpoint", Dir: dir, PolicyFile: policy}, &now)
	res, err := e.Run(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if res.Snapshot.Size != 30 || res.Snapshot.Origin != origin || !res.Snapshot.Quorum || len(res.Snapshot.Witnesses) != 1 {
		t.Fatalf("snapshot %+v", res.Snapshot)
	}
	kitFile := filepath.Join(t.TempDir(), "kit.tar")
	mustRun(t, "kit", "--dir", dir, "--out", kitFile)
	entry := filepath.Join(t.TempDir(), "entry.json")
	data, _ := json.Marshal(r.posted[len(r.posted)-1])
	os.WriteFile(entry, data, 0o644)
	code, v, out := verdictOf(t, "--kit", kitFile, "--bundle", entry)
	if code != 0 || !v.Verified || !v.Witnessed {
		t.Fatalf("exit %d\n%s", code, out)
	}
}
