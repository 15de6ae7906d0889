// Package composetest is the end-to-end test of the compose appliance: it
// builds the images exactly as `make images` does, starts the project from
// the repository's docker-compose.yml, and uses it as a client and an
// operator would. It runs in `make test` when a Docker engine answers and is
// skipped (with the reason) otherwise.
package composetest

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sigstore/rekor/pkg/generated/models"
	fnote "github.com/transparency-dev/formats/note"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"
	"gopkg.in/yaml.v3"

	"github.com/stellaops/tlog/testing/entries"
	"github.com/stellaops/tlog/testing/loadgen"
	"github.com/stellaops/tlog/testing/stack"
)

// project is one compose project under test.
type project struct {
	t       *testing.T
	root    string // repository root
	name    string
	envFile string
	version string // image tag

	logURL, witnessURL, signerURL string
	mirrorMetricsURL              string
	trust                         string // copied trust directory
}

func repoRoot(t *testing.T) string {
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "docker-compose.yml")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no docker-compose.yml above the working directory")
		}
		dir = parent
	}
}

// compose runs `docker compose` on the project and returns its output.
func (p *project) compose(args ...string) (string, error) {
	cmd := exec.Command("docker", append([]string{"compose", "-p", p.name, "--project-directory", p.root,
		"-f", filepath.Join(p.root, "docker-compose.yml"), "--env-file", p.envFile}, args...)...)
	cmd.Env = append(os.Environ(), "STELLA_VERSION="+p.version)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (p *project) must(args ...string) string {
	p.t.Helper()
	out, err := p.compose(args...)
	if err != nil {
		p.t.Fatalf("docker compose %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func docker(args ...string) (string, error) {
	out, err := exec.Command("docker", args...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// container is the id of the service's container.
func (p *project) container(svc string) string {
	p.t.Helper()
	id := strings.TrimSpace(p.must("ps", "-a", "-q", svc))
	if id == "" || strings.Contains(id, "\n") {
		p.t.Fatalf("service %s: containers %q", svc, id)
	}
	return id
}

// ports reads the published host ports.
func (p *project) ports() {
	p.t.Helper()
	url := func(svc, port string) string {
		out := strings.TrimSpace(p.must("port", svc, port))
		return "http://" + out
	}
	p.logURL, p.witnessURL, p.signerURL = url("logserver", "3000"), url("witness", "7380"), url("signer", "8090")
	p.mirrorMetricsURL = url("mirror", "9464") + "/metrics"
}

// images builds the images as `make images` does (the base image made
// locally when it cannot be pulled; compose plugin installed when missing).
func images(t *testing.T, root, version string) {
	t.Helper()
	cmd := exec.Command("make", "-s", "-C", root, "images")
	cmd.Env = append(os.Environ(), "STELLA_VERSION="+version, "COMPOSE_PROJECT_NAME=stella-build")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make images: %v\n%s", err, out)
	}
}

func TestCompose(t *testing.T) {
	if testing.Short() {
		t.Skip("compose end-to-end test skipped in -short mode")
	}
	if out, err := docker("info", "--format", "{{.ServerVersion}}"); err != nil {
		t.Skipf("compose end-to-end test skipped: no Docker engine answers (`docker info`: %v %s)", err, out)
	}
	root := repoRoot(t)
	// Image tags of this run only: concurrent runs do not swap each
	// other's images.
	p := &project{t: t, root: root, name: fmt.Sprintf("stella-e2e-%d", os.Getpid()), version: fmt.Sprintf("e2e-%d", os.Getpid())}
	p.envFile = filepath.Join(t.TempDir(), "env")
	// Free loopback ports, fixed for the project's life: a restarted
	// container keeps its published port only if it is fixed.
	ports, err := stack.FreePorts(4)
	if err != nil {
		t.Fatal(err)
	}
	// The logs' URLs in the trust files are the published ones, so that a
	// client on this machine signs through signing_config.json.
	env := fmt.Sprintf("STELLA_LOG_PORT=%d\nSTELLA_WITNESS_PORT=%d\nSTELLA_SIGNER_PORT=%d\nSTELLA_HOSTNAME=stella.e2e\nSTELLA_LOG_URL=http://127.0.0.1:%d\nSTELLA_MIRROR_METRICS_PORT=%d\n",
		ports[0], ports[1], ports[2], ports[0], ports[3])
	if err := os.WriteFile(p.envFile, []byte(env), 0o644); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	images(t, root, p.version)
	t.Logf("figure: images built in %v", time.Since(t0).Round(time.Second))
	for _, svc := range []string{"logserver", "signer", "witness", "mariadb", "mirror"} {
		size, _ := docker("image", "inspect", "-f", "{{.Size}}", "stella/"+svc+":"+p.version)
		n, _ := strconv.ParseInt(size, 10, 64)
		t.Logf("figure: image stella/%s %.1f MB", svc, float64(n)/1e6)
	}
	p.must("config", "-q")
	t.Cleanup(func() {
		if os.Getenv("STELLA_E2E_KEEP") != "" {
			t.Logf("keeping project %s (STELLA_E2E_KEEP)", p.name)
			return
		}
		if t.Failed() {
			out, _ := p.compose("logs", "--no-color", "--tail", "60")
			t.Logf("compose logs:\n%s", out)
		}
		p.compose("down", "-v", "--remove-orphans", "-t", "60")
		for _, v := range []string{p.version, strings.TrimSuffix(p.version, "-upgrade")} {
			for _, svc := range []string{"logserver", "signer", "witness", "mariadb", "mirror"} {
				docker("image", "rm", "stella/"+svc+":"+v)
			}
		}
	})

	t0 = time.Now()
	p.must("up", "-d", "--wait")
	t.Logf("figure: cold `docker compose up -d --wait` to ready: %v", time.Since(t0).Round(100*time.Millisecond))
	p.ports()
	p.trust = t.TempDir()
	if out, err := docker("cp", p.container("bootstrap")+":/var/lib/stella/trust/.", p.trust); err != nil {
		t.Fatalf("copy trust: %v %s", err, out)
	}
	for _, f := range trustFiles {
		if _, err := os.Stat(filepath.Join(p.trust, f)); err != nil {
			t.Fatalf("trust/%s: %v", f, err)
		}
	}
	checkNoRoot(t, p)

	clients(t, p)
	v2Client(t, p)
	mirrorKit(t, p)
	first := logInfo(t, p.logURL)
	p.witnessed(int64(*first.TreeSize))

	w := startWriters(t, p.logURL, 8)
	crashEach(t, p, w)
	killAll(t, p, w)
	heads := w.stop()
	checkAcknowledged(t, p.logURL, w.acked, heads)

	witnessOutage(t, p)
	databaseOutage(t, p)

	before := logInfo(t, p.logURL)
	cleanStop(t, p)
	p.must("down")
	p.must("up", "-d", "--wait")
	p.ports()
	if out := p.must("logs", "--no-color", "bootstrap"); !strings.Contains(out, "nothing to do") {
		t.Fatalf("the second bootstrap changed something:\n%s", out)
	}
	sameLog(t, p, before, w.acked)

	// Image upgrade: new images, containers recreated, same state.
	p.version += "-upgrade"
	images(t, root, p.version)
	p.must("up", "-d", "--wait")
	p.ports()
	if img, _ := docker("inspect", "-f", "{{.Config.Image}}", p.container("logserver")); !strings.HasSuffix(img, ":"+p.version) {
		t.Fatalf("logserver runs %s after the upgrade", img)
	}
	sameLog(t, p, before, w.acked)

	res, err := loadgen.Write(context.Background(), loadgen.Config{URL: p.logURL, N: 2000, Concurrency: 16})
	if err != nil {
		t.Fatal(err)
	}
	if res.Errors > 0 {
		t.Fatalf("load through compose: %s", res)
	}
	t.Logf("figure: write throughput through compose: %s", res)

	checkMetrics(t, p)
	backupRestore(t, p)
}

// checkMetrics: every metric an alert rule or a dashboard panel names is
// exported by a running service.
func checkMetrics(t *testing.T, p *project) {
	// Refused signer requests, so that the rejection counters exist: one
	// unauthenticated, one by the logserver for a scope it lacks.
	token, err := docker("exec", p.container("logserver"), "cat", "/var/lib/stella/logserver/secrets/signer-token")
	if err != nil {
		t.Fatalf("logserver token: %v %s", err, token)
	}
	for _, bearer := range []string{"not-a-token", token} {
		req, _ := http.NewRequest("POST", p.signerURL+"/api/v1/signer/sign/cosignature", strings.NewReader(`{"key":"witness","text":"x\n"}`))
		req.Header.Set("Authorization", "Bearer "+bearer)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized && resp.StatusCode != http.StatusForbidden {
			t.Fatalf("signer request with bearer %.8s…: %s, want 401 or 403", bearer, resp.Status)
		}
	}
	exported := map[string]bool{"up": true} // up is Prometheus's own
	for _, u := range []string{p.logURL + "/metrics", p.signerURL + "/metrics", p.witnessURL + "/metrics", p.mirrorMetricsURL} {
		b, err := get(u)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			if line == "" || line[0] == '#' {
				continue
			}
			name, _, _ := strings.Cut(line, "{")
			name, _, _ = strings.Cut(name, " ")
			exported[name] = true
		}
	}
	var exprs []string
	rules, err := os.ReadFile(filepath.Join(p.root, "deployment", "observability", "alerts.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var rf struct {
		Groups []struct {
			Rules []struct{ Alert, Expr string }
		}
	}
	if err := yaml.Unmarshal(rules, &rf); err != nil {
		t.Fatal(err)
	}
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			exprs = append(exprs, r.Expr)
		}
	}
	dash, err := os.ReadFile(filepath.Join(p.root, "deployment", "observability", "grafana-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	if err := json.Unmarshal(dash, &d); err != nil {
		t.Fatal(err)
	}
	for _, pn := range d.Panels {
		for _, tg := range pn.Targets {
			exprs = append(exprs, tg.Expr)
		}
	}
	named := 0
	for _, e := range exprs {
		for _, m := range metricName.FindAllString(e, -1) {
			named++
			if !exported[m] {
				t.Errorf("%q names metric %s, which no service exports", e, m)
			}
		}
	}
	if len(exprs) < 20 || named < 30 {
		t.Fatalf("only %d expressions naming %d metrics: the files were not read", len(exprs), named)
	}
}

// metricName matches the metric names in a PromQL expression: ours, the
// process collector's and up (label names and functions never start so).
var metricName = regexp.MustCompile(`\b(?:logserver|signer|witness|mirror|process)_[a-z0-9_]+\b|\bup\b`)

// backupRestore runs deployment/backup.sh and deployment/restore.sh as the
// manual says: a restore of the newest backup has every entry and keeps
// taking (cosigned) writes; a restore of a backup older than what the
// witness cosigned is refused before the log takes a write.
func backupRestore(t *testing.T, p *project) {
	script := func(wantOK bool, name string, args ...string) string {
		t.Helper()
		cmd := exec.Command(filepath.Join(p.root, "deployment", name), args...)
		cmd.Dir = p.root
		cmd.Env = append(os.Environ(), "STELLA_VERSION="+p.version, "COMPOSE=docker compose -p "+p.name+
			" --project-directory "+p.root+" -f "+filepath.Join(p.root, "docker-compose.yml")+" --env-file "+p.envFile)
		out, err := cmd.CombinedOutput()
		if (err == nil) != wantOK {
			t.Fatalf("%s %s: %v, want ok=%v\n%s", name, strings.Join(args, " "), err, wantOK, out)
		}
		return string(out)
	}
	before := logInfo(t, p.logURL)
	p.witnessed(*before.TreeSize)
	backup := t.TempDir()
	t0 := time.Now()
	script(true, "backup.sh", "-p", p.name, backup)
	t.Logf("figure: cold backup (stop, archive, start) took %v", time.Since(t0).Round(100*time.Millisecond))
	p.ports()
	all := entriesUpTo(t, p.logURL, *before.TreeSize)

	// Disaster: everything is lost; the newest backup comes back whole.
	p.must("down", "-v")
	t0 = time.Now()
	script(true, "restore.sh", "-p", p.name, backup)
	t.Logf("figure: restore took %v", time.Since(t0).Round(100*time.Millisecond))
	p.ports()
	sameLog(t, p, before, all)

	// The log goes on (sameLog wrote one entry, cosigned); then it is lost
	// again and only the older backup is left, while the witness kept its
	// state: the restore must refuse.
	p.must("down")
	for _, v := range []string{"mariadb-data", "mariadb-socket", "mariadb-tmp", "logserver-data", "signer-data", "trust"} {
		if out, err := docker("volume", "rm", p.name+"_"+v); err != nil {
			t.Fatalf("volume rm %s: %v %s", v, err, out)
		}
	}
	out := script(false, "restore.sh", "-p", p.name, backup)
	if !strings.Contains(out, "REFUSED: the witness has cosigned size") {
		t.Fatalf("restore of an old backup:\n%s", out)
	}
	if st, _ := p.compose("ps", "-q", "--status", "running", "logserver"); strings.TrimSpace(st) != "" {
		t.Fatal("the logserver runs after a refused restore")
	}
}

// entriesUpTo returns the log's entries [0, size) as acknowledged writes.
func entriesUpTo(t *testing.T, url string, size int64) []ack {
	var out []ack
	for i := int64(0); i < size; i++ {
		b, err := get(fmt.Sprintf("%s/api/v1/log/entries?logIndex=%d", url, i))
		if err != nil {
			t.Fatalf("entry %d: %v", i, err)
		}
		var le models.LogEntry
		if err := json.Unmarshal(b, &le); err != nil {
			t.Fatal(err)
		}
		for _, e := range le {
			out = append(out, ack{index: i, body: e.Body.(string)})
		}
	}
	return out
}

// checkNoRoot: MariaDB has no password-less account reachable over TCP,
// and the services' accounts have what they need only.
func checkNoRoot(t *testing.T, p *project) {
	out, err := docker("exec", p.container("mariadb"), "mariadb", "-N", "-e",
		"SELECT CONCAT(user,'@',host) FROM mysql.user WHERE host <> 'localhost'")
	if err != nil {
		t.Fatalf("list accounts: %v %s", err, out)
	}
	got := strings.Fields(out)
	if strings.Join(got, " ") != "logserver@% signer_audit@%" {
		t.Fatalf("accounts reachable over TCP: %q, want only logserver@%% and signer_audit@%%", got)
	}
	grants, _ := docker("exec", p.container("mariadb"), "mariadb", "-N", "-e", "SHOW GRANTS FOR signer_audit@'%'")
	if !strings.Contains(grants, "GRANT SELECT, INSERT ON `signer`.`signer_audit`") || strings.Contains(grants, "UPDATE") {
		t.Fatalf("signer_audit grants:\n%s", grants)
	}
	for _, c := range []string{"logserver", "signer", "witness", "mariadb"} {
		uid, _ := docker("exec", p.container(c), "id", "-u")
		if uid == "0" || uid == "" {
			t.Fatalf("%s runs as uid %q", c, uid)
		}
	}
}

// clients logs entries as release pipelines do: rekor-cli (hashedrekord)
// and cosign (hashedrekord, dsse), each verified with the trust files only.
func clients(t *testing.T, p *project) {
	dir := t.TempDir()
	pub := filepath.Join(p.trust, "log-key.pub.pem")
	pubPEM, _ := os.ReadFile(pub)
	rekor := stack.RekorCLI.Install(t)
	cosign := stack.Cosign.Install(t)
	run := func(bin string, env []string, args ...string) string {
		t.Helper()
		cmd := exec.Command(bin, args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), append([]string{"HOME=" + dir, "COSIGN_PASSWORD=", "TUF_ROOT=" + filepath.Join(dir, "tuf")}, env...)...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", filepath.Base(bin), strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	s, err := entries.NewSigner()
	if err != nil {
		t.Fatal(err)
	}
	artifact := []byte("compose e2e artifact\n")
	sig, err := s.SignBlob(artifact)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "a.txt"), artifact, 0o644)
	os.WriteFile(filepath.Join(dir, "a.sig"), sig, 0o644)
	os.WriteFile(filepath.Join(dir, "key.pub"), s.PubPEM, 0o644)
	pinned := []string{"REKOR_REKOR_SERVER_PUBLIC_KEY=" + string(pubPEM)}
	out := run(rekor, pinned, "upload", "--rekor_server", p.logURL, "--artifact", "a.txt", "--signature", "a.sig",
		"--public-key", "key.pub", "--pki-format", "x509", "--type", "hashedrekord")
	if !strings.Contains(out, "Created entry at index") {
		t.Fatalf("rekor-cli upload: %s", out)
	}
	run(rekor, pinned, "verify", "--rekor_server", p.logURL, "--artifact", "a.txt", "--signature", "a.sig",
		"--public-key", "key.pub", "--pki-format", "x509", "--type", "hashedrekord")
	run(rekor, pinned, "loginfo", "--rekor_server", p.logURL)

	cpin := []string{"SIGSTORE_REKOR_PUBLIC_KEY=" + pub}
	run(cosign, nil, "generate-key-pair")
	run(cosign, nil, "sign-blob", "--yes", "--key", "cosign.key", "--rekor-url", p.logURL, "--bundle", "a.bundle", "a.txt")
	run(cosign, cpin, "verify-blob", "--key", "cosign.pub", "--bundle", "a.bundle", "a.txt")
	os.WriteFile(filepath.Join(dir, "pred.json"), []byte(`{"buildType":"https://example.com/build","builder":{"id":"ci"}}`), 0o644)
	run(cosign, nil, "attest-blob", "--yes", "--key", "cosign.key", "--rekor-url", p.logURL, "--predicate", "pred.json",
		"--type", "slsaprovenance", "--bundle", "att.bundle", "a.txt")
	run(cosign, cpin, "verify-blob-attestation", "--key", "cosign.pub", "--bundle", "att.bundle", "--type", "slsaprovenance", "a.txt")
}

// witnessed waits until GET /checkpoint carries the witness's cosignature on
// a checkpoint of at least size, verified with the trust files.
func (p *project) witnessed(size int64) {
	p.t.Helper()
	logV, witV := p.verifiers()
	deadline := time.Now().Add(90 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		body, err := get(p.logURL + "/checkpoint")
		if err == nil {
			n, err := note.Open(body, note.VerifierList(logV, witV))
			if err == nil && len(n.Sigs) == 2 {
				lines := strings.SplitN(n.Text, "\n", 3)
				if got, _ := strconv.ParseInt(lines[1], 10, 64); got >= size {
					return
				}
			}
			last = fmt.Sprintf("%v\n%s", err, body)
		}
		time.Sleep(300 * time.Millisecond)
	}
	p.t.Fatalf("no cosigned checkpoint of size >= %d: %s", size, last)
}

func (p *project) verifiers() (note.Verifier, note.Verifier) {
	p.t.Helper()
	read := func(f string) string {
		b, err := os.ReadFile(filepath.Join(p.trust, f))
		if err != nil {
			p.t.Fatal(err)
		}
		return strings.TrimSpace(string(b))
	}
	logV, err := fnote.NewVerifier(read("log-note.vkey"))
	if err != nil {
		p.t.Fatal(err)
	}
	witV, err := fnote.NewVerifierForCosignatureV1(read("witness.vkey"))
	if err != nil {
		p.t.Fatal(err)
	}
	return logV, witV
}

func get(url string) ([]byte, error) {
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return b, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return b, err
}

type info struct {
	TreeID   *string `json:"treeID"`
	TreeSize *int64  `json:"treeSize"`
	RootHash *string `json:"rootHash"`
}

func logInfo(t *testing.T, url string) info {
	t.Helper()
	var li info
	var err error
	for range 60 {
		var b []byte
		if b, err = get(url + "/api/v1/log"); err == nil {
			if err = json.Unmarshal(b, &li); err == nil && li.TreeSize != nil {
				return li
			}
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Fatalf("log info: %v", err)
	return li
}

// ack is one acknowledged (201) write.
type ack struct {
	index int64
	body  string // the canonical body the log returned
}

// writers post unique hashedrekord entries until stopped, recording every
// acknowledged one and every tree head they see.
type writers struct {
	url   string
	done  chan struct{}
	wg    sync.WaitGroup
	mu    sync.Mutex
	acked []ack
	heads []head
	fails int
}

type head struct {
	size int64
	root []byte
}

func startWriters(t *testing.T, url string, n int) *writers {
	w := &writers{url: url, done: make(chan struct{})}
	s, err := entries.NewSigner()
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Timeout: 40 * time.Second}
	for i := range n {
		w.wg.Go(func() {
			for j := 0; ; j++ {
				select {
				case <-w.done:
					return
				default:
				}
				pe, err := s.HashedRekord(fmt.Appendf(nil, "compose load %d %d %d", os.Getpid(), i, j))
				if err != nil {
					panic(err)
				}
				body, _ := json.Marshal(pe)
				resp, err := hc.Post(url+"/api/v1/log/entries", "application/json", bytes.NewReader(body))
				if err != nil {
					w.fail()
					time.Sleep(200 * time.Millisecond)
					continue
				}
				data, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusCreated {
					w.fail()
					time.Sleep(200 * time.Millisecond)
					continue
				}
				var le models.LogEntry
				if err := json.Unmarshal(data, &le); err != nil {
					panic(err)
				}
				for _, e := range le {
					w.mu.Lock()
					w.acked = append(w.acked, ack{index: *e.LogIndex, body: e.Body.(string)})
					w.mu.Unlock()
				}
			}
		})
	}
	// A reader of tree heads, as a monitor would.
	w.wg.Go(func() {
		for {
			select {
			case <-w.done:
				return
			case <-time.After(250 * time.Millisecond):
			}
			b, err := get(url + "/api/v1/log")
			if err != nil {
				continue
			}
			var li info
			if json.Unmarshal(b, &li) != nil || li.RootHash == nil {
				continue
			}
			root, _ := hexDecode(*li.RootHash)
			w.mu.Lock()
			w.heads = append(w.heads, head{*li.TreeSize, root})
			w.mu.Unlock()
		}
	})
	return w
}

func (w *writers) fail() { w.mu.Lock(); w.fails++; w.mu.Unlock() }

func (w *writers) count() int { w.mu.Lock(); defer w.mu.Unlock(); return len(w.acked) }

// progress waits until at least n more writes are acknowledged.
func (w *writers) progress(t *testing.T, what string, n int) {
	t.Helper()
	start := w.count()
	deadline := time.Now().Add(3 * time.Minute)
	for w.count() < start+n {
		if time.Now().After(deadline) {
			t.Fatalf("%s: writes did not resume within 3 minutes (%d acknowledged so far)", what, w.count())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (w *writers) stop() []head {
	close(w.done)
	w.wg.Wait()
	return w.heads
}

// crashEach SIGKILLs each container's main process in turn, as a crash
// would (the restart policy brings it back), under write load.
func crashEach(t *testing.T, p *project, w *writers) {
	w.progress(t, "before the crashes", 50)
	for _, svc := range []string{"logserver", "signer", "witness", "mariadb"} {
		id := p.container(svc)
		pid, err := docker("inspect", "-f", "{{.State.Pid}}", id)
		n, _ := strconv.Atoi(pid)
		if err != nil || n <= 0 {
			t.Fatalf("%s: no pid (%v %s)", svc, err, pid)
		}
		restarts, _ := docker("inspect", "-f", "{{.RestartCount}}", id)
		t0 := time.Now()
		if err := syscallKill(n); err != nil {
			t.Fatalf("kill %s: %v", svc, err)
		}
		waitHealthy(t, p, svc, restarts)
		w.progress(t, "after crashing "+svc, 30)
		t.Logf("figure: %s SIGKILLed under load: writes resumed after %v", svc, time.Since(t0).Round(100*time.Millisecond))
	}
}

// waitHealthy waits for svc's container to have restarted and be healthy.
func waitHealthy(t *testing.T, p *project, svc, restartsBefore string) {
	t.Helper()
	id := p.container(svc)
	deadline := time.Now().Add(3 * time.Minute)
	for time.Now().Before(deadline) {
		st, _ := docker("inspect", "-f", "{{.RestartCount}} {{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{end}}", id)
		f := strings.Fields(st)
		if len(f) == 3 && f[0] != restartsBefore && f[1] == "running" && f[2] == "healthy" {
			return
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Fatalf("%s did not come back healthy after a crash", svc)
}

// killAll kills every container at once (power loss), then brings the
// project up again.
func killAll(t *testing.T, p *project, w *writers) {
	w.progress(t, "before killing everything", 30)
	t0 := time.Now()
	var ids []string
	for _, svc := range []string{"logserver", "signer", "witness", "mariadb"} {
		ids = append(ids, p.container(svc))
	}
	if out, err := docker(append([]string{"kill", "-s", "KILL"}, ids...)...); err != nil {
		t.Fatalf("docker kill: %v %s", err, out)
	}
	p.must("up", "-d", "--wait")
	w.progress(t, "after killing everything", 30)
	t.Logf("figure: all containers SIGKILLed at once: `up -d --wait` and writes resumed after %v", time.Since(t0).Round(100*time.Millisecond))
}

// checkAcknowledged: every acknowledged entry is in the log, at its index,
// with the same body, and every tree head seen is consistent with the
// final one.
func checkAcknowledged(t *testing.T, url string, acked []ack, heads []head) {
	final := logInfo(t, url)
	root, _ := hexDecode(*final.RootHash)
	for _, a := range acked {
		b, err := get(fmt.Sprintf("%s/api/v1/log/entries?logIndex=%d", url, a.index))
		if err != nil {
			t.Fatalf("acknowledged entry %d: %v", a.index, err)
		}
		var le models.LogEntry
		if err := json.Unmarshal(b, &le); err != nil {
			t.Fatal(err)
		}
		for _, e := range le {
			if e.Body.(string) != a.body {
				t.Fatalf("entry %d changed", a.index)
			}
		}
	}
	checked := 0
	for _, h := range heads {
		if h.size == 0 || h.size == *final.TreeSize {
			continue
		}
		b, err := get(fmt.Sprintf("%s/api/v1/log/proof?firstSize=%d&lastSize=%d", url, h.size, *final.TreeSize))
		if err != nil {
			t.Fatalf("consistency proof %d..%d: %v", h.size, *final.TreeSize, err)
		}
		var cp models.ConsistencyProof
		if err := json.Unmarshal(b, &cp); err != nil {
			t.Fatal(err)
		}
		var hashes [][]byte
		for _, x := range cp.Hashes {
			d, _ := hexDecode(x)
			hashes = append(hashes, d)
		}
		if err := proof.VerifyConsistency(rfc6962.DefaultHasher, uint64(h.size), uint64(*final.TreeSize), hashes, h.root, root); err != nil {
			t.Fatalf("head %d is not consistent with the final head %d: %v", h.size, *final.TreeSize, err)
		}
		checked++
	}
	t.Logf("%d acknowledged writes all present; %d heads seen, %d checked consistent with size %d", len(acked), len(heads), checked, *final.TreeSize)
}

// witnessOutage: with the witness stopped the log keeps accepting writes;
// cosignatures resume once it is back.
func witnessOutage(t *testing.T, p *project) {
	p.must("stop", "witness")
	s, _ := entries.NewSigner()
	for i := range 5 {
		pe, _ := s.HashedRekord(fmt.Appendf(nil, "witness down %d %d", os.Getpid(), i))
		if code, body := post(p.logURL, pe, 40*time.Second); code != http.StatusCreated {
			t.Fatalf("write with the witness down: %d %s", code, body)
		}
	}
	size := *logInfo(t, p.logURL).TreeSize
	p.must("start", "witness")
	p.witnessed(size)
}

// databaseOutage: with MariaDB stopped the logserver answers 503 (never
// 500, never a hang), and recovers by itself once it is back.
func databaseOutage(t *testing.T, p *project) {
	p.must("stop", "mariadb")
	s, _ := entries.NewSigner()
	pe, _ := s.HashedRekord(fmt.Appendf(nil, "db down %d", os.Getpid()))
	t0 := time.Now()
	code, body := post(p.logURL, pe, 45*time.Second)
	if code != http.StatusServiceUnavailable {
		t.Fatalf("write with the database down: %d after %v, want 503: %s", code, time.Since(t0).Round(time.Millisecond), body)
	}
	t.Logf("figure: write with MariaDB down answered 503 in %v", time.Since(t0).Round(time.Millisecond))
	resp, err := (&http.Client{Timeout: 20 * time.Second}).Get(p.logURL + "/readyz")
	if err != nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("readyz with the database down: %v %v, want 503", err, resp)
	}
	resp.Body.Close()
	p.must("start", "mariadb")
	deadline := time.Now().Add(2 * time.Minute)
	for i := 0; ; i++ {
		pe, _ := s.HashedRekord(fmt.Appendf(nil, "db back %d %d", os.Getpid(), i))
		code, body := post(p.logURL, pe, 40*time.Second)
		if code == http.StatusCreated {
			break
		}
		if code == http.StatusInternalServerError || time.Now().After(deadline) {
			t.Fatalf("after MariaDB is back: %d %s", code, body)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func post(url string, pe models.ProposedEntry, timeout time.Duration) (int, string) {
	body, _ := json.Marshal(pe)
	resp, err := (&http.Client{Timeout: timeout}).Post(url+"/api/v1/log/entries", "application/json", bytes.NewReader(body))
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// cleanStop: `docker compose stop` stops every service by SIGTERM within its
// stop timeout (exit status 0, not 137 from the SIGKILL after it).
func cleanStop(t *testing.T, p *project) {
	ids := map[string]string{}
	for _, svc := range []string{"logserver", "signer", "witness", "mariadb"} {
		ids[svc] = p.container(svc)
	}
	t0 := time.Now()
	p.must("stop")
	t.Logf("figure: `docker compose stop` took %v", time.Since(t0).Round(100*time.Millisecond))
	for svc, id := range ids {
		code, _ := docker("inspect", "-f", "{{.State.ExitCode}}", id)
		if code != "0" {
			logs, _ := docker("logs", "--tail", "20", id)
			t.Fatalf("%s exited with %s on SIGTERM:\n%s", svc, code, logs)
		}
	}
}

// sameLog: the log after a restart or upgrade is the one before: same tree,
// key and trust files, every acknowledged entry there, and it takes writes.
func sameLog(t *testing.T, p *project, before info, acked []ack) {
	after := logInfo(t, p.logURL)
	if *after.TreeID != *before.TreeID || *after.TreeSize < *before.TreeSize {
		t.Fatalf("tree %s size %d after, %s size %d before", *after.TreeID, *after.TreeSize, *before.TreeID, *before.TreeSize)
	}
	trust := t.TempDir()
	if out, err := docker("cp", p.container("bootstrap")+":/var/lib/stella/trust/.", trust); err != nil {
		t.Fatalf("copy trust: %v %s", err, out)
	}
	for _, f := range trustFiles {
		a, _ := os.ReadFile(filepath.Join(p.trust, f))
		b, _ := os.ReadFile(filepath.Join(trust, f))
		if filepath.Ext(f) == ".json" { // protojson varies its white space between binaries
			a, b = compactJSON(a), compactJSON(b)
		}
		if len(a) == 0 || !bytes.Equal(a, b) {
			t.Fatalf("trust/%s changed", f)
		}
	}
	key, _ := get(p.logURL + "/api/v1/log/publicKey")
	pem, _ := os.ReadFile(filepath.Join(p.trust, "log-key.pub.pem"))
	if !bytes.Equal(bytes.TrimSpace(key), bytes.TrimSpace(pem)) {
		t.Fatalf("the log serves another key:\n%s", key)
	}
	checkAcknowledged(t, p.logURL, acked, nil)
	s, _ := entries.NewSigner()
	pe, _ := s.HashedRekord(fmt.Appendf(nil, "after restart %d %d", os.Getpid(), time.Now().UnixNano()))
	if code, body := post(p.logURL, pe, 40*time.Second); code != http.StatusCreated {
		t.Fatalf("write after restart: %d %s", code, body)
	}
	p.witnessed(*after.TreeSize + 1)
}

func hexDecode(s string) ([]byte, error) { return hex.DecodeString(s) }

// syscallKill SIGKILLs a container's main process from the host, as a crash
// would: unlike `docker kill`, which Docker treats as a manual stop, the
// container's restart policy then applies.
func syscallKill(pid int) error { return syscall.Kill(pid, syscall.SIGKILL) }
