package stack

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// A Tool is a peer program the tests run for real (rekor-cli, cosign,
// tessera's posix-oneshot): installed with `go install` into <repo>/.cache/bin
// the first time it is needed, then reused.
type Tool struct {
	Name    string // binary name
	Package string // go install path, without @version
	Version string // module version, e.g. v1.5.4
	Tags    string // build tags
	// Dir, if set, is a subdirectory of .cache/bin to install into, for
	// two tools with one binary name (cosign v2 and v3, two "posix").
	Dir string
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
	if p, ok := toolPaths[filepath.Join(tl.Dir, tl.Name)]; ok {
		return p
	}
	bin, err := CacheBin()
	if err != nil {
		t.Fatal(err)
	}
	if tl.Dir != "" {
		bin = filepath.Join(bin, tl.Dir)
		if err := os.MkdirAll(bin, 0o755); err != nil {
			t.Fatal(err)
		}
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
	toolPaths[filepath.Join(tl.Dir, tl.Name)] = p
	return p
}

// present reports whether p was built from the tool's package at its
// version, according to the build information Go embeds in binaries.
func (tl Tool) present(p string) bool {
	out, err := exec.Command("go", "version", "-m", p).Output()
	if err != nil {
		return false
	}
	var path, mod bool
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 2 && f[0] == "path" && f[1] == tl.Package:
			path = true
		case len(f) >= 3 && f[0] == "mod" && strings.HasPrefix(tl.Package, f[1]) && f[2] == tl.Version:
			mod = true
		}
	}
	return path && mod
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
	RekorCLI     = Tool{Name: "rekor-cli", Package: "github.com/sigstore/rekor/cmd/rekor-cli", Version: "v1.5.4"}
	Cosign       = Tool{Name: "cosign", Package: "github.com/sigstore/cosign/v2/cmd/cosign", Version: "v2.6.5"}
	PosixOneshot = Tool{Name: "posix-oneshot", Package: "github.com/transparency-dev/tessera/cmd/examples/posix-oneshot", Version: "v1.0.4"}
	Fsck         = Tool{Name: "fsck", Package: "github.com/transparency-dev/tessera/cmd/fsck", Version: "v1.0.4"}
	Cosign3      = Tool{Name: "cosign", Package: "github.com/sigstore/cosign/v3/cmd/cosign", Version: "v3.1.3", Dir: "cosign-v3.1.3"}
	RekorTiles   = Tool{Name: "posix", Package: "github.com/sigstore/rekor-tiles/v2/cmd/rekor-server/posix", Version: "v2.3.0", Dir: "rekor-tiles-v2.3.0"}
	// Prometheus and promtool without the service discovery plugins but
	// file and HTTP (our configurations use static targets): half the code
	// to compile on a cold machine (75 MB binaries instead of 147 MB).
	Promtool   = Tool{Name: "promtool", Package: "github.com/prometheus/prometheus/cmd/promtool", Version: "v0.316.0", Tags: "remove_all_sd"}
	Prometheus = Tool{Name: "prometheus", Package: "github.com/prometheus/prometheus/cmd/prometheus", Version: "v0.316.0", Tags: "remove_all_sd"}
)
