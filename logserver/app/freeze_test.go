package app_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/sign"

	"github.com/stellaops/tlog/logserver/config"
	"github.com/stellaops/tlog/testing/entries"
	"github.com/stellaops/tlog/testing/stack"
)

const successor = "https://rekor-next.stella.test"

// TestFreeze runs a logserver with both logs over real MariaDB, restarting
// it with the v1 log frozen, then both, then neither. A frozen log refuses
// every write (the Rekor API with 403 and Rekor's error body, rekor-cli
// showing it; the v2 API with PermissionDenied), naming the successor,
// while its entries, proofs, tiles and checkpoints are served, /readyz is
// 200, logserver_log_frozen says so, and the trust files end its validity
// and stop offering it for writing; unfrozen, it takes writes again.
func TestFreeze(t *testing.T) {
	cli := stack.RekorCLI.Install(t)
	db := stack.TestMariaDB(t, false)
	dsn := stack.TestDatabase(t, db, "freeze")
	dir := t.TempDir()
	port, err := stack.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	u := "http://127.0.0.1:" + strconv.Itoa(port)
	trustDir := filepath.Join(dir, "trust")
	ls := stack.StartLogserver(t, dsn, dir, func(c *config.Config) {
		c.Listen = "127.0.0.1:" + strconv.Itoa(port)
		c.Witnessing = config.Witnessing{Origin: "v1.stella.test/log", KeyFile: filepath.Join(dir, "v1note.pem"), CreateKey: true}
		c.RekorV2 = &config.RekorV2{URL: u, KeyFile: filepath.Join(dir, "v2.pem"), CreateKey: true}
		c.Trust = &config.Trust{URL: u, Dir: trustDir}
	})
	s, err := entries.NewSigner()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	v1Entry := func() []byte {
		n++
		pe, err := s.HashedRekord(fmt.Appendf(nil, "freeze %d", n))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(pe)
		return b
	}
	post := func(path string, body []byte) (int, []byte) {
		resp, err := http.Post(u+path, "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	v2Write := func() error {
		kp, err := sign.NewEphemeralKeypair(nil)
		if err != nil {
			t.Fatal(err)
		}
		n++
		_, err = sign.Bundle(&sign.PlainData{Data: fmt.Appendf(nil, "freeze v2 %d", n)}, kp, sign.BundleOptions{
			TransparencyLogs: []sign.Transparency{sign.NewRekor(&sign.RekorOptions{BaseURL: u, Version: 2})},
		})
		return err
	}
	// Taking writes: an entry in each log.
	if code, b := post("/api/v1/log/entries", v1Entry()); code != http.StatusCreated {
		t.Fatalf("v1 write: %d %s", code, b)
	}
	if err := v2Write(); err != nil {
		t.Fatalf("v2 write: %v", err)
	}
	checkFrozenMetric(t, u, 0, 0)
	checkTrust(t, u, trustDir, false, false)

	// The v1 log frozen: its writes are refused, the v2 log takes them.
	ls.Config.Freeze = config.Freeze{Frozen: true, Successor: successor}
	ls.Restart()
	refusedV1(t, u, post, v1Entry())
	refusedV1(t, u, post, []byte("not even JSON"))              // refused before the body is read
	refusedV1At(t, u, post, "/api/v1/queue/entries", v1Entry()) // nor queued for later
	refusedRekorCLI(t, cli, u, s, dir)
	if err := v2Write(); err != nil {
		t.Fatalf("v2 write with only the v1 log frozen: %v", err)
	}
	checkReads(t, u)
	checkFrozenMetric(t, u, 1, 0)
	checkTrust(t, u, trustDir, true, false)

	// Both frozen.
	ls.Config.RekorV2.Freeze = config.Freeze{Frozen: true, Successor: successor}
	ls.Restart()
	refusedV1(t, u, post, v1Entry())
	code, b := post("/api/v2/log/entries", []byte(`{}`))
	var st struct {
		Code    int
		Message string
	}
	if err := json.Unmarshal(b, &st); code != http.StatusForbidden || err != nil || st.Code != 7 || !strings.Contains(st.Message, "frozen") || !strings.Contains(st.Message, successor) {
		t.Fatalf("v2 write to a frozen log: %d %s, want 403 with PermissionDenied (7) naming the successor", code, b)
	}
	if qc, qb := post("/api/v2/queue/entries", []byte(`{}`)); qc != http.StatusForbidden || !strings.Contains(string(qb), successor) {
		t.Fatalf("v2 queue submission to a frozen log: %d %s, want the same 403", qc, qb)
	}
	if err := v2Write(); err == nil || !strings.Contains(err.Error(), "frozen") {
		t.Fatalf("sigstore-go writing to the frozen v2 log: %v, want the refusal", err)
	}
	checkReads(t, u)
	checkFrozenMetric(t, u, 1, 1)
	checkTrust(t, u, trustDir, true, true)

	// Unfrozen: writes are taken again, the trust files are as before.
	ls.Config.Freeze, ls.Config.RekorV2.Freeze = config.Freeze{}, config.Freeze{}
	ls.Restart()
	if code, b := post("/api/v1/log/entries", v1Entry()); code != http.StatusCreated {
		t.Fatalf("v1 write after unfreezing: %d %s", code, b)
	}
	if err := v2Write(); err != nil {
		t.Fatalf("v2 write after unfreezing: %v", err)
	}
	checkFrozenMetric(t, u, 0, 0)
	checkTrust(t, u, trustDir, false, false)
}

// refusedV1: a write to the frozen v1 log answers 403 with Rekor's error
// body naming the successor, and the log does not grow.
func refusedV1(t *testing.T, u string, post func(string, []byte) (int, []byte), body []byte) {
	t.Helper()
	refusedV1At(t, u, post, "/api/v1/log/entries", body)
}

// refusedV1At: the same for the write endpoint at path.
func refusedV1At(t *testing.T, u string, post func(string, []byte) (int, []byte), path string, body []byte) {
	t.Helper()
	before := treeSize(t, u)
	code, b := post(path, body)
	var e struct {
		Code    int
		Message string
	}
	if err := json.Unmarshal(b, &e); code != http.StatusForbidden || err != nil || e.Code != 403 ||
		!strings.Contains(e.Message, "frozen") || !strings.Contains(e.Message, successor) {
		t.Fatalf("v1 write to a frozen log: %d %s, want 403 naming the successor", code, b)
	}
	if after := treeSize(t, u); after != before {
		t.Fatalf("the frozen log grew from %d to %d", before, after)
	}
}

// refusedRekorCLI: rekor-cli upload to the frozen log fails and shows the
// refusal.
func refusedRekorCLI(t *testing.T, cli, u string, s *entries.Signer, dir string) {
	t.Helper()
	data := []byte("rekor-cli to a frozen log\n")
	sig, err := s.SignBlob(data)
	if err != nil {
		t.Fatal(err)
	}
	art, sigFile, keyFile := filepath.Join(dir, "a.txt"), filepath.Join(dir, "a.sig"), filepath.Join(dir, "key.pub")
	for f, c := range map[string][]byte{art: data, sigFile: sig, keyFile: s.PubPEM} {
		if err := os.WriteFile(f, c, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(cli, "upload", "--artifact", art, "--signature", sigFile, "--public-key", keyFile,
		"--pki-format", "x509", "--type", "hashedrekord", "--rekor_server", u, "--timeout", "30s")
	cmd.Env = []string{"HOME=" + t.TempDir(), "PATH=" + os.Getenv("PATH")}
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || !strings.Contains(string(out), "403") || !strings.Contains(string(out), "frozen") || !strings.Contains(string(out), successor) {
		t.Fatalf("rekor-cli upload to a frozen log: %v\n%s\nwant a failure showing the 403 and the successor", err, out)
	}
	t.Logf("rekor-cli upload to a frozen log: %s", bytes.TrimSpace(out))
}

// checkReads: entries, proofs, tiles and checkpoints of both logs are
// served, and the logserver is ready.
func checkReads(t *testing.T, u string) {
	t.Helper()
	for _, path := range []string{"/readyz", "/api/v1/log", "/api/v1/log/entries?logIndex=0",
		"/api/v1/log/proof?firstSize=1&lastSize=" + strconv.FormatInt(treeSize(t, u), 10),
		"/checkpoint", "/tile/0/000.p/1", "/api/v2/checkpoint", "/api/v2/tile/0/000.p/1", "/api/v2/tile/entries/000.p/1"} {
		resp, err := http.Get(u + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s on a frozen log: %d %s", path, resp.StatusCode, b)
		}
	}
}

func treeSize(t *testing.T, u string) int64 {
	t.Helper()
	resp, err := http.Get(u + "/api/v1/log")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var li struct{ TreeSize int64 }
	if err := json.NewDecoder(resp.Body).Decode(&li); err != nil {
		t.Fatal(err)
	}
	return li.TreeSize
}

func checkFrozenMetric(t *testing.T, u string, v1, v2 int) {
	t.Helper()
	resp, err := http.Get(u + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`logserver_log_frozen{log="rekor-v1"} ` + strconv.Itoa(v1) + "\n",
		`logserver_log_frozen{log="rekor-v2"} ` + strconv.Itoa(v2) + "\n"} {
		if !bytes.Contains(b, []byte(want)) {
			t.Fatalf("metrics lack %q", want)
		}
	}
}

// checkTrust: the served and written trust files end a frozen log's
// validity after its last entry and before now, and leave it out of the
// signing config unless both are frozen (then sigstore-go finds no log
// to write to); a log taking writes has no end.
func checkTrust(t *testing.T, u, dir string, v1Frozen, v2Frozen bool) {
	t.Helper()
	frozen := map[int]bool{1: v1Frozen, 2: v2Frozen}
	type validFor struct{ Start, End *time.Time }
	var tr struct {
		Tlogs []struct {
			PublicKey struct {
				KeyDetails string
				ValidFor   validFor
			}
			CheckpointKeyID *struct{} `json:"checkpointKeyId"`
		}
	}
	trJSON := trustFile(t, u, dir, "trusted_root.json", &tr)
	if _, err := root.NewTrustedRootFromJSON(trJSON); err != nil {
		t.Fatalf("sigstore-go reads trusted_root.json: %v", err)
	}
	if len(tr.Tlogs) != 2 {
		t.Fatalf("%d logs in the trusted root:\n%s", len(tr.Tlogs), trJSON)
	}
	lastV1 := lastIntegrated(t, u)
	for _, l := range tr.Tlogs {
		v := 1
		if l.CheckpointKeyID != nil {
			v = 2
		}
		vf := l.PublicKey.ValidFor
		switch {
		case vf.Start == nil:
			t.Fatalf("v%d log without a start:\n%s", v, trJSON)
		case !frozen[v] && vf.End != nil:
			t.Fatalf("v%d log, not frozen, ends at %v", v, vf.End)
		case frozen[v] && (vf.End == nil || !vf.End.After(*vf.Start) || vf.End.After(time.Now().Add(time.Second))):
			t.Fatalf("frozen v%d log valid for %v..%v, want an end after the start and before now", v, vf.Start, vf.End)
		case frozen[v] && v == 1 && !vf.End.After(lastV1):
			t.Fatalf("frozen v1 log ends at %v, before its last entry (%v)", vf.End, lastV1)
		}
	}
	var sc struct {
		RekorTlogUrls []struct {
			URL             string
			MajorAPIVersion int `json:"majorApiVersion"`
			ValidFor        validFor
		}
	}
	scJSON := trustFile(t, u, dir, "signing_config.json", &sc)
	offered := map[int]bool{}
	// When sigstore-go picks a log: now, or just after the last end (here
	// the logs froze a second after their last entry, in production long
	// after).
	at := time.Now()
	for _, s := range sc.RekorTlogUrls {
		offered[s.MajorAPIVersion] = true
		if e := s.ValidFor.End; e != nil && !e.Before(at) {
			at = e.Add(time.Second)
		}
		if (s.ValidFor.End != nil) != frozen[s.MajorAPIVersion] {
			t.Fatalf("signing config: v%d log valid for %v..%v (frozen %v)", s.MajorAPIVersion, s.ValidFor.Start, s.ValidFor.End, frozen[s.MajorAPIVersion])
		}
	}
	for v := 1; v <= 2; v++ {
		if want := !frozen[v] || (v1Frozen && v2Frozen); offered[v] != want {
			t.Fatalf("signing config offers the v%d log: %v, want %v:\n%s", v, offered[v], want, scJSON)
		}
	}
	parsed, err := root.NewSigningConfigFromJSON(scJSON)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := root.SelectService(parsed.RekorLogURLs(), sign.RekorAPIVersions, at)
	if v1Frozen && v2Frozen {
		if err == nil {
			t.Fatalf("both logs frozen, sigstore-go still selects %+v", svc)
		}
	} else if err != nil || (svc.MajorAPIVersion == 2) == v2Frozen {
		t.Fatalf("sigstore-go selects %+v, %v (v1 frozen %v, v2 frozen %v)", svc, err, v1Frozen, v2Frozen)
	}
}

// trustFile is a trust file as served, which must be the one written to
// dir too, decoded into v.
func trustFile(t *testing.T, u, dir, name string, v any) []byte {
	t.Helper()
	resp, err := http.Get(u + "/trust/" + name)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if onDisk, err := os.ReadFile(filepath.Join(dir, name)); err != nil || !bytes.Equal(onDisk, b) {
		t.Fatalf("%s on disk differs from the served one: %v", name, err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return b
}

// lastIntegrated is when the v1 log's last entry was integrated.
func lastIntegrated(t *testing.T, u string) time.Time {
	t.Helper()
	resp, err := http.Get(u + "/api/v1/log/entries?logIndex=" + strconv.FormatInt(treeSize(t, u)-1, 10))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]struct{ IntegratedTime int64 }
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil || len(m) != 1 {
		t.Fatalf("last entry: %v %v", m, err)
	}
	for _, e := range m {
		return time.Unix(e.IntegratedTime, 0)
	}
	return time.Time{}
}
