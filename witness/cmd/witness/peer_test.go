package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
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

	flog "github.com/transparency-dev/formats/log"
	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"

	"github.com/stellaops/tlog/testing/stack"
	"github.com/stellaops/tlog/witness/admin"
	"github.com/stellaops/tlog/witness/internal/testlog"
)

// oneshot runs posix-oneshot once: it appends the n entries named
// <prefix>-<i> to the log in storage, collecting a cosignature according to
// policy when policy is not "". It returns the tool's output.
func oneshot(t *testing.T, bin, dir, storage, logKeyFile, policy, prefix string, n int) string {
	t.Helper()
	entries := filepath.Join(dir, "entries-"+prefix)
	if err := os.Mkdir(entries, 0o700); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if err := os.WriteFile(filepath.Join(entries, fmt.Sprintf("%03d", i)), fmt.Appendf(nil, "%s entry %d\n", prefix, i), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	args := []string{"--storage_dir=" + storage, "--entries=" + filepath.Join(entries, "*"), "--private_key=" + logKeyFile}
	if policy != "" {
		// Tessera retries a checkpoint its witnesses refused forever; fail
		// open instead, so that a refusal gives a checkpoint without our
		// cosignature (which the caller detects) and the tool's warning.
		// The witness timeout is generous: a slow machine is not a failure.
		args = append(args, "--witness_policy_file="+policy, "--witness_fail_open", "--witness_timeout=1m")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute) // hang guard
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("posix-oneshot %s: %v\n%s", prefix, err, out)
	}
	return string(out)
}

// verifyPeerCheckpoint checks the checkpoint tessera published: the log's
// signature, our cosignature, the size; it returns the checkpoint text.
// out is posix-oneshot's output, for failure messages.
func verifyPeerCheckpoint(t *testing.T, raw []byte, origin, logVKey, witnessVKey string, size uint64, out string) string {
	t.Helper()
	lv, err := fnote.NewVerifier(logVKey)
	if err != nil {
		t.Fatal(err)
	}
	wv, err := fnote.NewVerifierForCosignatureV1(witnessVKey)
	if err != nil {
		t.Fatal(err)
	}
	cp, _, n, err := flog.ParseCheckpoint(raw, origin, lv, wv)
	if err != nil {
		t.Fatalf("tessera's checkpoint: %v\n%s\nposix-oneshot:\n%s", err, raw, out)
	}
	if cp.Size != size {
		t.Fatalf("checkpoint size %d, want %d\n%s\nposix-oneshot:\n%s", cp.Size, size, raw, out)
	}
	cosigned := false
	for _, s := range n.Sigs {
		if s.Name == wv.Name() && s.Hash == wv.KeyHash() {
			ts, err := fnote.CoSigV1Timestamp(s)
			if err != nil || ts.Unix() <= 0 {
				t.Fatalf("cosignature timestamp %v: %v", ts, err)
			}
			cosigned = true
		}
	}
	if !cosigned {
		t.Fatalf("no verified cosignature of %s on tessera's checkpoint:\n%s\nposix-oneshot:\n%s", wv.Name(), raw, out)
	}
	return n.Text
}

// witnessState checks what our witness stored for origin: the size (admin
// socket) and the monitoring checkpoint, whose text must be text.
func witnessState(t *testing.T, c *child, cfg, origin, text string, size uint64) {
	t.Helper()
	out, err := runCmd(t, "logs", "list", "-c", cfg, "-json")
	if err != nil {
		t.Fatal(err)
	}
	var list []admin.LogStatus
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("logs list: %v\n%s", err, out)
	}
	if len(list) != 1 || list[0].Origin != origin || !list[0].Cosigned || list[0].Size != size {
		t.Fatalf("witness state %+v, want %q cosigned at size %d", list, origin, size)
	}
	id := sha256.Sum256([]byte(origin))
	resp, err := http.Get("http://" + c.addr + "/" + hex.EncodeToString(id[:]) + "/checkpoint")
	if err != nil {
		t.Fatal(err)
	}
	mon, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !bytes.HasPrefix(mon, []byte(text+"\n")) {
		t.Fatalf("monitoring checkpoint: %d %q, want text %q", resp.StatusCode, mon, text)
	}
}

// conflicts is our witness's count of 409 answers.
func conflicts(t *testing.T, c *child) int {
	t.Helper()
	resp, err := http.Get("http://" + c.addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	const prefix = `witness_add_checkpoint_requests_total{outcome="conflict"} `
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), prefix); ok {
			n, err := strconv.Atoi(v)
			if err != nil {
				t.Fatalf("metric %q: %v", sc.Text(), err)
			}
			return n
		}
	}
	t.Fatalf("no %s in /metrics", prefix)
	return 0
}

// TestPeerTesseraPOSIX has tessera's posix-oneshot (v1.0.4, installed by
// the test) publish a log witnessed by our witness binary, then checks the
// checkpoint tessera wrote with transparency-dev/formats: log signature,
// our cosignature, size, and our stored state. Tessera sends as old size
// the size of its own previous checkpoint, so the 409 path is driven by
// growing the log once without the witness: tessera then offers an old
// size we never cosigned, must take the size from our 409 answer and
// prove consistency from there.
func TestPeerTesseraPOSIX(t *testing.T) {
	bin := stack.PosixOneshot.Install(t)
	dir := t.TempDir()
	const origin = "example.com/tessera-peer"
	skey, logVKey, err := note.GenerateKey(rand.Reader, origin)
	if err != nil {
		t.Fatal(err)
	}
	logKeyFile := filepath.Join(dir, "log.sec")
	if err := os.WriteFile(logKeyFile, []byte(skey), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, witnessVKey := setup(t, &testlog.Log{Origin: origin, VKey: logVKey})
	c := startChild(t, cfg)
	policy := filepath.Join(dir, "policy.txt")
	if err := os.WriteFile(policy, fmt.Appendf(nil, "log %s\nwitness OURS %s http://%s\nquorum OURS\n",
		logVKey, witnessVKey, c.addr), 0o600); err != nil {
		t.Fatal(err)
	}
	storage := filepath.Join(dir, "log")
	checkpoint := func() []byte {
		t.Helper()
		raw, err := os.ReadFile(filepath.Join(storage, "checkpoint"))
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}

	// A new log, witnessed from its first checkpoint.
	out := oneshot(t, bin, dir, storage, logKeyFile, policy, "one", 5)
	text := verifyPeerCheckpoint(t, checkpoint(), origin, logVKey, witnessVKey, 5, out)
	witnessState(t, c, cfg, origin, text, 5)

	// Grows, witnessed again: tessera offers old 5 with a proof 5→8.
	out = oneshot(t, bin, dir, storage, logKeyFile, policy, "two", 3)
	text = verifyPeerCheckpoint(t, checkpoint(), origin, logVKey, witnessVKey, 8, out)
	witnessState(t, c, cfg, origin, text, 8)

	// Grows to 12 without the witness, so we still hold 8.
	oneshot(t, bin, dir, storage, logKeyFile, "", "three", 4)
	if _, _, _, err := flog.ParseCheckpoint(checkpoint(), origin, mustVerifier(t, logVKey)); err != nil {
		t.Fatalf("unwitnessed checkpoint: %v", err)
	}
	witnessState(t, c, cfg, origin, text, 8)

	// Grows to 14, witnessed: tessera offers old 12, we answer 409 "8",
	// tessera retries with old 8 and a proof 8→14.
	before := conflicts(t, c)
	out = oneshot(t, bin, dir, storage, logKeyFile, policy, "four", 2)
	if got := conflicts(t, c) - before; got != 1 {
		t.Errorf("our witness answered 409 %d times during the fourth run, want 1", got)
	}
	if !strings.Contains(out, "x.tlog.size 8 ") {
		t.Errorf("posix-oneshot did not report our 409 size 8:\n%s", out)
	}
	text = verifyPeerCheckpoint(t, checkpoint(), origin, logVKey, witnessVKey, 14, out)
	witnessState(t, c, cfg, origin, text, 14)
}

func mustVerifier(t *testing.T, vkey string) note.Verifier {
	t.Helper()
	v, err := fnote.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	return v
}
