package cli

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stellaops/tlog/mirror/export"
	"github.com/stellaops/tlog/mirror/serve"
	"github.com/stellaops/tlog/testing/stack"
)

var fsckTool = stack.Fsck

// checkServe serves the mirror dir (of a log with vkey) read-only and
// checks it as a tlog-tiles log: tessera's fsck re-derives every tile from
// the entry bundles against the checkpoint, our exporter mirrors the
// mirror, and the history and read-only answers are right.
func checkServe(t *testing.T, dir, vkey, policy string, snapshots int) {
	t.Helper()
	h, err := serve.New(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()

	keyFile := filepath.Join(t.TempDir(), "log.pub")
	os.WriteFile(keyFile, []byte(vkey), 0o600)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute) // hang guard
	defer cancel()
	out, err := exec.CommandContext(ctx, fsckTool.Install(t), "--ui=false", "--storage_url="+srv.URL+"/", "--public_key="+keyFile).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Successfully fsck'd") { // fsck exits 0 on failure
		t.Fatalf("tessera fsck of the served mirror: %v\n%s", err, out)
	}

	now := time.Now()
	e := newExporter(t, export.Config{Source: srv.URL, Dir: t.TempDir(), PolicyFile: policy}, &now)
	res, err := e.Run(t.Context())
	if err != nil || res.Snapshot.Size != h.Served().Meta.Size {
		t.Fatalf("mirror of the mirror: %+v %v", res, err)
	}

	resp, err := http.Get(srv.URL + "/snapshots")
	if err != nil {
		t.Fatal(err)
	}
	var list []map[string]any
	json.NewDecoder(resp.Body).Decode(&list)
	resp.Body.Close()
	if len(list) != snapshots {
		t.Fatalf("/snapshots: %v", list)
	}
	first := list[0]["date"].(string)
	resp, _ = http.Get(srv.URL + "/snapshots/" + first + "/checkpoint")
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("history checkpoint: %d", resp.StatusCode)
	}
	for _, c := range []struct {
		method, path string
		status       int
	}{{"POST", "/checkpoint", 405}, {"PUT", "/tile/0/000", 405}, {"GET", "/trust/policy", 404}, {"GET", "/tile/../trust/policy", 404}, {"GET", "/tile/0/999", 404}} {
		req, _ := http.NewRequest(c.method, srv.URL+c.path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.status {
			t.Errorf("%s %s: %d, want %d", c.method, c.path, resp.StatusCode, c.status)
		}
	}
}
