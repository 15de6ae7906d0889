package rekorpeer

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stellaops/tlog/testing/stack"
)

// rekorE2E are Rekor v1.5.4's e2e test packages (`-tags e2e`) that need
// only the URL of a log (REKOR_SERVER) and rekor-cli, run against our
// logserver, each with the tests that need more than that, and why.
//
// pkg/pki/minisign runs the minisign program (Debian package minisign,
// installed when missing).
var rekorE2E = []struct {
	pkg  string
	skip map[string]string // test name → why it cannot run against another server
}{
	{pkg: "./cmd/rekor-cli"},
	{pkg: "./cmd/rekor-server", skip: map[string]string{
		"TestMetricsCounts": "reads rekor-server's own Prometheus metrics on localhost:2112",
		"TestHostnameInSTH": "compares the checkpoint origin with the rekor-server docker container's ID",
	}},
	{pkg: "./pkg/pki/minisign"},
	{pkg: "./pkg/pki/ssh"},
	{pkg: "./pkg/pki/tuf"},
	{pkg: "./pkg/pki/x509"},
	{pkg: "./pkg/types/alpine"},
	{pkg: "./pkg/types/dsse/v0.0.1"},
	{pkg: "./pkg/types/hashedrekord/v0.0.1"},
	{pkg: "./pkg/types/intoto", skip: map[string]string{
		"TestIntoto":         noAttestations,
		"TestIntotoMultiSig": noAttestations,
	}},
	{pkg: "./pkg/types/jar"},
	{pkg: "./pkg/types/rekord"},
	{pkg: "./pkg/types/rfc3161"},
	{pkg: "./pkg/types/rpm"},
	{pkg: "./tests", skip: map[string]string{
		"TestNewAPIWithTLS":    "tests rekor-server's own API constructor in-process; does not touch the log",
		"TestDialE2E":          "tests Rekor's Trillian gRPC dialer against an in-process gRPC server; does not touch the log",
		"TestEntryUpload":      "reads rekor-server's new-entry events from the GCP Pub/Sub emulator of docker-compose.test.yml",
		"TestHarnessAddIntoto": noAttestations,
	}},
}

// noAttestations: Rekor's docker-compose runs rekor-server with
// --enable_attestation_storage, which keeps an intoto entry's payload and
// returns it as the entry's "attestation"; our log does not store
// attestations (Rekor's default, off).
const noAttestations = "reads the in-toto attestation back (rekor-server --enable_attestation_storage)"

// rekorModuleCopy copies Rekor's module from the module cache into
// .cache/rekor-e2e@v1.5.4 (once; the tests must not run inside the module
// cache, which they could write to), with the rekor-cli test binary the
// e2e helpers run (built with -cover: they pass it -test.coverprofile).
func rekorModuleCopy(t *testing.T) string {
	t.Helper()
	bin, err := stack.CacheBin()
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(filepath.Dir(bin), "rekor-e2e@v1.5.4")
	lock, err := os.OpenFile(dst+".lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dst, "rekor-cli")); err == nil {
		return dst
	}
	os.RemoveAll(dst)
	src := rekorModuleDir(t)
	if out, err := exec.Command("cp", "-r", src, dst).CombinedOutput(); err != nil {
		t.Fatalf("copy %s: %v %s", src, err, out)
	}
	if out, err := exec.Command("chmod", "-R", "u+w", dst).CombinedOutput(); err != nil {
		t.Fatalf("chmod: %v %s", err, out)
	}
	goCmd(t, dst, "test", "-c", "-cover", "-o", filepath.Join(dst, "rekor-cli.tmp"), "./cmd/rekor-cli")
	if err := os.Rename(filepath.Join(dst, "rekor-cli.tmp"), filepath.Join(dst, "rekor-cli")); err != nil {
		t.Fatal(err)
	}
	return dst
}

// goCmd runs the go command in dir (Rekor's module: its go.mod decides).
func goCmd(t *testing.T, dir string, args ...string) {
	t.Helper()
	cmd := exec.Command("go", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOTOOLCHAIN=local", "GOFLAGS=")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// e2eTests are the tests of package directory dir defined in its e2e
// files (`//go:build e2e`): its unit tests are Rekor's business.
func e2eTests(t *testing.T, dir string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*_test.go"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if !e2eBuildTag.Match(b) {
			continue
		}
		for _, m := range testFunc.FindAllSubmatch(b, -1) {
			names = append(names, string(m[1]))
		}
	}
	if len(names) == 0 {
		t.Fatalf("no e2e tests in %s", dir)
	}
	sort.Strings(names)
	return names
}

var (
	e2eBuildTag = regexp.MustCompile(`(?m)^//go:build e2e$`)
	testFunc    = regexp.MustCompile(`(?m)^func (Test\w+)\(t \*testing\.T\)`)
)

// testEvent is a line of `go test -json`.
type testEvent struct {
	Action, Package, Test, Output string
	Elapsed                       float64
}

// TestRekorE2E runs Rekor v1.5.4's own e2e tests against our logserver:
// rekor-cli upload/verify/get/search of every kind and key format, search
// by SAN subject, duplicate detection, SET verification, query limits.
func TestRekorE2E(t *testing.T) {
	if err := stack.EnsurePackages(context.Background(), map[string]string{"minisign": "minisign"}); err != nil {
		t.Fatal(err)
	}
	mod := rekorModuleCopy(t)
	db := stack.TestMariaDB(t, false)
	ls := stack.StartLogserver(t, stack.TestDatabase(t, db, "stella"), t.TempDir(), nil)
	tmp := t.TempDir()
	// Rekor's helpers run $REKORTMPDIR/rekor-cli with HOME=$REKORTMPDIR
	// and --config=$REKORTMPDIR.rekor.yaml (a sibling file).
	cli, err := os.ReadFile(filepath.Join(mod, "rekor-cli"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tmp, "rekor-cli"), cli, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tmp+".rekor.yaml", nil, 0o600); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(tmp + ".rekor.yaml")
	env := []string{"REKOR_SERVER=" + ls.URL, "REKORTMPDIR=" + tmp}
	total := map[string]int{}
	for _, p := range rekorE2E {
		start := time.Now()
		run := e2eTests(t, filepath.Join(mod, p.pkg))
		args := []string{"test", "-tags", "e2e", "-count=1", "-json", "-timeout", "5m", "-run", "^(" + strings.Join(run, "|") + ")$"}
		if len(p.skip) > 0 {
			names := make([]string, 0, len(p.skip))
			for n := range p.skip {
				names = append(names, n)
			}
			sort.Strings(names)
			args = append(args, "-skip", "^("+strings.Join(names, "|")+")$")
		}
		cmd := exec.Command("go", append(args, p.pkg)...)
		cmd.Dir = mod
		cmd.Env = append(os.Environ(), append([]string{"GOTOOLCHAIN=local", "GOFLAGS="}, env...)...)
		out, _ := cmd.Output() // failures are read from the events
		counts := map[string]int{}
		names := map[string][]string{}
		output := map[string]*strings.Builder{}
		sc := bufio.NewScanner(bytes.NewReader(out))
		sc.Buffer(make([]byte, 1<<20), 1<<24)
		for sc.Scan() {
			var e testEvent
			if json.Unmarshal(sc.Bytes(), &e) != nil {
				continue
			}
			if output[e.Test] == nil {
				output[e.Test] = &strings.Builder{}
			}
			output[e.Test].WriteString(e.Output)
			if e.Test != "" && !strings.Contains(e.Test, "/") && (e.Action == "pass" || e.Action == "fail" || e.Action == "skip") {
				counts[e.Action]++
				names[e.Action] = append(names[e.Action], e.Test)
				if e.Action == "fail" {
					t.Errorf("%s %s failed against our log:\n%s", p.pkg, e.Test, output[e.Test])
				}
			}
		}
		if counts["pass"]+counts["fail"]+counts["skip"] != len(run)-len(p.skip) {
			t.Errorf("%s: %d of its %d e2e tests ran:\n%s", p.pkg, counts["pass"]+counts["fail"]+counts["skip"], len(run)-len(p.skip), out)
		}
		for k, v := range counts {
			total[k] += v
		}
		total["excluded"] += len(p.skip)
		t.Logf("%-32s pass %2d fail %d skip %d excluded %d (%.1fs)\n\tpassed: %s\n\tskipped by Rekor: %s", p.pkg,
			counts["pass"], counts["fail"], counts["skip"], len(p.skip), time.Since(start).Seconds(),
			strings.Join(names["pass"], " "), strings.Join(names["skip"], " "))
	}
	t.Logf("Rekor v1.5.4 e2e tests against our log: %d packages, %d passed, %d failed, %d skipped by Rekor's tests, %d excluded", len(rekorE2E), total["pass"], total["fail"], total["skip"], total["excluded"])
}
