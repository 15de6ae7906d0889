package stack

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
)

// A Tool is a peer program the tests run for real (rekor-cli, cosign,
// tessera's posix-oneshot): installed with `go install` into <repo>/.cache/bin
// the first time it is needed, then reused.
type Tool struct {
	Name    string   // binary name
	Package string   // go install path, without @version
	Version string   // module version, e.g. v1.5.4
	Check   []string // arguments that print the version (nil: trust the file)
	Tags    string   // build tags
}

var (
	toolMu    sync.Mutex
	toolPaths = map[string]string{}
)

// Install returns the path of the tool's binary, installing it if it is
// missing or reports another version. Concurrent test processes wait for
// one another (a lock file) instead of compiling twice.
func (tl Tool) Install(t testing.TB) string {
	t.Helper()
	toolMu.Lock()
	defer toolMu.Unlock()
	if p, ok := toolPaths[tl.Name]; ok {
		return p
	}
	bin, err := CacheBin()
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(bin, tl.Name)
	lock, err := os.OpenFile(filepath.Join(bin, "."+tl.Name+".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	if !tl.present(p) {
		t.Logf("installing %s@%s into %s (minutes the first time)", tl.Package, tl.Version, bin)
		tmp := t.TempDir()
		args := []string{"install"}
		if tl.Tags != "" {
			args = append(args, "-tags", tl.Tags)
		}
		cmd := exec.Command("go", append(args, tl.Package+"@"+tl.Version)...)
		cmd.Dir = tmp // outside our module: the tool's own go.mod decides
		cmd.Env = append(os.Environ(), "GOBIN="+bin, "GOTOOLCHAIN=local", "GOFLAGS=")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go install %s@%s: %v\n%s", tl.Package, tl.Version, err, out)
		}
		if !tl.present(p) {
			t.Fatalf("%s installed but does not report %s", p, tl.Version)
		}
	}
	toolPaths[tl.Name] = p
	return p
}

func (tl Tool) present(p string) bool {
	if _, err := os.Stat(p); err != nil {
		return false
	}
	if tl.Check == nil {
		return true
	}
	out, err := exec.Command(p, tl.Check...).CombinedOutput()
	return err == nil && bytes.Contains(out, []byte(tl.Version))
}

// CacheBin is <repo>/.cache/bin (created): the repository is the nearest
// directory above the working directory holding go.mod.
func CacheBin() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above the working directory")
		}
		dir = parent
	}
	bin := filepath.Join(dir, ".cache", "bin")
	return bin, os.MkdirAll(bin, 0o755)
}

// Peer tools the tests use.
var (
	RekorCLI = Tool{Name: "rekor-cli", Package: "github.com/sigstore/rekor/cmd/rekor-cli", Version: "v1.5.4", Check: []string{"version"}}
	Cosign   = Tool{Name: "cosign", Package: "github.com/sigstore/cosign/v2/cmd/cosign", Version: "v2.6.5", Check: []string{"version"}}
)
