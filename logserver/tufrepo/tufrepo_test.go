package tufrepo_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sigstore/sigstore-go/pkg/tuf"

	"github.com/stellaops/tlog/logserver/logkey"
	"github.com/stellaops/tlog/logserver/tufrepo"
)

type fixture struct {
	dir, keys string
	opts      tufrepo.Options
	repo      *tufrepo.Repo
	url       string
}

func key(t *testing.T, path string) *logkey.File {
	t.Helper()
	k, err := logkey.OpenFile(path, true)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func newFixture(t *testing.T, ts time.Duration, mutate ...func(*tufrepo.Options)) *fixture {
	t.Helper()
	f := &fixture{dir: filepath.Join(t.TempDir(), "repo"), keys: t.TempDir()}
	f.opts = tufrepo.Options{
		Dir: f.dir, RootKey: key(t, filepath.Join(f.keys, "root.pem")), OnlineKey: key(t, filepath.Join(f.keys, "online.pem")),
		RootExpiry: 24 * time.Hour, TargetsExpiry: 24 * time.Hour, TimestampExpiry: ts, RefreshMargin: ts / 2,
	}
	for _, m := range mutate {
		m(&f.opts)
	}
	f.open(t)
	mux := http.NewServeMux()
	mux.HandleFunc("/tuf/", func(w http.ResponseWriter, r *http.Request) { f.repo.Handler("/tuf/").ServeHTTP(w, r) })
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	f.url = srv.URL + "/tuf"
	return f
}

func (f *fixture) open(t *testing.T) {
	t.Helper()
	r, err := tufrepo.Open(context.Background(), f.opts)
	if err != nil {
		t.Fatal(err)
	}
	f.repo = r
}

func (f *fixture) rootJSON(t *testing.T) []byte {
	t.Helper()
	b, err := f.repo.RootJSON()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// client is sigstore-go v1.3.0's TUF client (what cosign v3 uses) with a
// fresh cache, starting from root.
func (f *fixture) client(t *testing.T, root []byte) (*tuf.Client, error) {
	t.Helper()
	opts := tuf.DefaultOptions()
	opts.Root = root
	opts.RepositoryBaseURL = f.url
	opts.CachePath = t.TempDir()
	return tuf.New(opts)
}

func (f *fixture) target(t *testing.T, root []byte, name string) ([]byte, error) {
	t.Helper()
	c, err := f.client(t, root)
	if err != nil {
		return nil, err
	}
	return c.GetTarget(name)
}

func version(t *testing.T, f *fixture, name string) int64 {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(f.dir, name))
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		Signed struct {
			Version int64 `json:"version"`
		} `json:"signed"`
	}
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	return m.Signed.Version
}

func TestPublishAndFetch(t *testing.T) {
	f := newFixture(t, time.Hour)
	ctx := context.Background()
	files := map[string][]byte{"trusted_root.json": []byte(`{"a":1}`), "signing_config.v0.2.json": []byte(`{"b":2}`)}
	if err := f.repo.Publish(ctx, files); err != nil {
		t.Fatal(err)
	}
	root1 := f.rootJSON(t)
	for name, want := range files {
		got, err := f.target(t, root1, name)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%s: %q, %v", name, got, err)
		}
	}
	if _, err := f.target(t, root1, "other.json"); err == nil {
		t.Fatal("an unknown target was found")
	}
	// The same files again: no new version, also after a restart.
	if err := f.repo.Publish(ctx, files); err != nil {
		t.Fatal(err)
	}
	f.open(t)
	if err := f.repo.Publish(ctx, files); err != nil {
		t.Fatal(err)
	}
	if v := version(t, f, "timestamp.json"); v != 1 {
		t.Fatalf("timestamp version %d after republishing the same files", v)
	}
	// Changed trust files: a new targets version, fetched by a client
	// that already had the old one.
	c, err := f.client(t, root1)
	if err != nil {
		t.Fatal(err)
	}
	files["trusted_root.json"] = []byte(`{"a":2}`)
	if err := f.repo.Publish(ctx, files); err != nil {
		t.Fatal(err)
	}
	if err := c.Refresh(); err != nil {
		t.Fatal(err)
	}
	if got, err := c.GetTarget("trusted_root.json"); err != nil || string(got) != `{"a":2}` {
		t.Fatalf("after publish: %q, %v", got, err)
	}
	if v := version(t, f, "2.targets.json"); v != 2 {
		t.Fatalf("targets version %d", v)
	}
	// Bad names change nothing.
	if err := f.repo.Publish(ctx, map[string][]byte{"../x": nil}); err == nil {
		t.Fatal("a bad target name was taken")
	}
	if got, err := f.target(t, root1, "trusted_root.json"); err != nil || string(got) != `{"a":2}` {
		t.Fatalf("after a refused publish: %q, %v", got, err)
	}
}

// A new online key: a new root version (signed by the root key) names it,
// and a client holding root 1 follows it. Another root key is refused.
func TestKeys(t *testing.T) {
	f := newFixture(t, time.Hour)
	ctx := context.Background()
	root1 := f.rootJSON(t)
	if err := f.repo.Publish(ctx, map[string][]byte{"trusted_root.json": []byte("x")}); err != nil {
		t.Fatal(err)
	}
	f.opts.OnlineKey = key(t, filepath.Join(f.keys, "online2.pem"))
	f.open(t)
	if v := version(t, f, "2.root.json"); v != 2 {
		t.Fatalf("root version %d", v)
	}
	if got, err := f.target(t, root1, "trusted_root.json"); err != nil || string(got) != "x" {
		t.Fatalf("after an online key change: %q, %v", got, err)
	}
	// A crash after the new root but before the new timestamp: the next
	// start signs the timestamp with the new key.
	old, err := os.ReadFile(filepath.Join(f.dir, "timestamp.json"))
	if err != nil {
		t.Fatal(err)
	}
	f.opts.OnlineKey = key(t, filepath.Join(f.keys, "online3.pem"))
	f.open(t)
	if err := os.WriteFile(filepath.Join(f.dir, "timestamp.json"), old, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := f.target(t, root1, "trusted_root.json"); err == nil {
		t.Fatal("a timestamp signed by a key the root no longer names was accepted")
	}
	f.open(t)
	if got, err := f.target(t, root1, "trusted_root.json"); err != nil || string(got) != "x" {
		t.Fatalf("after the crash: %q, %v", got, err)
	}
	bad := f.opts
	bad.RootKey = key(t, filepath.Join(f.keys, "root2.pem"))
	if _, err := tufrepo.Open(ctx, bad); err == nil || !strings.Contains(err.Error(), "root key") {
		t.Fatalf("another root key: %v", err)
	}
	bad = f.opts
	bad.OnlineKey = bad.RootKey
	if _, err := tufrepo.Open(ctx, bad); err == nil {
		t.Fatal("one key for both roles was taken")
	}
}

// A target changed on the server fails its hash; an expired timestamp is
// refused; Run signs a new timestamp before it expires.
func TestTamperExpiryRefresh(t *testing.T) {
	f := newFixture(t, 2*time.Second)
	ctx := context.Background()
	if err := f.repo.Publish(ctx, map[string][]byte{"trusted_root.json": []byte(`{"a":1}`)}); err != nil {
		t.Fatal(err)
	}
	root := f.rootJSON(t)
	paths, _ := filepath.Glob(filepath.Join(f.dir, "targets", "*.trusted_root.json"))
	if len(paths) != 1 {
		t.Fatalf("targets: %v", paths)
	}
	if err := os.WriteFile(paths[0], []byte(`{"a":9}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := f.target(t, root, "trusted_root.json"); err == nil {
		t.Fatalf("a tampered target was accepted: %q", got)
	}
	if err := os.WriteFile(paths[0], []byte(`{"a":1}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := f.target(t, root, "trusted_root.json"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Until(f.repo.Expires("timestamp")) + 100*time.Millisecond)
	if _, err := f.client(t, root); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("an expired timestamp: %v", err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { f.repo.Run(runCtx); close(done) }()
	defer func() { cancel(); <-done }()
	deadline := time.Now().Add(5 * time.Second)
	for version(t, f, "timestamp.json") < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("timestamp version %d: not refreshed", version(t, f, "timestamp.json"))
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Every timestamp the loop signed was still valid when replaced, so a
	// client at any moment succeeds.
	for range 3 {
		if _, err := f.target(t, root, "trusted_root.json"); err != nil {
			t.Fatalf("while refreshing: %v", err)
		}
		time.Sleep(700 * time.Millisecond)
	}
}

// Every role is re-signed before it expires: with short root and targets
// expiries the loop publishes root 2 (signed by the root key), which a
// client holding root 1 follows.
func TestRefreshAllRoles(t *testing.T) {
	f := newFixture(t, 2*time.Second, func(o *tufrepo.Options) { o.RootExpiry, o.TargetsExpiry = 3*time.Second, 3*time.Second })
	ctx := context.Background()
	if err := f.repo.Publish(ctx, map[string][]byte{"trusted_root.json": []byte("r")}); err != nil {
		t.Fatal(err)
	}
	root1 := f.rootJSON(t)
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { f.repo.Run(runCtx); close(done) }()
	defer func() { cancel(); <-done }()
	deadline := time.Now().Add(6 * time.Second)
	for {
		_, errRoot := os.Stat(filepath.Join(f.dir, "2.root.json"))
		_, errTargets := os.Stat(filepath.Join(f.dir, "2.targets.json"))
		if errRoot == nil && errTargets == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("root or targets not re-signed: %v, %v", errRoot, errTargets)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if got, err := f.target(t, root1, "trusted_root.json"); err != nil || string(got) != "r" {
		t.Fatalf("after re-signing every role: %q, %v", got, err)
	}
}

// The handler serves the repository's files and nothing else.
func TestHandler(t *testing.T) {
	f := newFixture(t, time.Hour)
	if err := f.repo.Publish(context.Background(), map[string][]byte{"trusted_root.json": []byte("r")}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(f.dir, ".tmp-x"), []byte("partial"), 0o644); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]int{
		"/tuf/1.root.json": 200, "/tuf/timestamp.json": 200, "/tuf/1.snapshot.json": 200, "/tuf/1.targets.json": 200,
		"/tuf/2.root.json": 404, "/tuf/": 404, "/tuf/targets/": 404, "/tuf/.tmp-x": 404, "/tuf/other/1.root.json": 404,
		"/tuf/targets/../1.root.json": 404, "/tuf/targets/a/b": 404,
	} {
		req := httptest.NewRequest("GET", path, nil)
		req.URL.Path = path // as sent, uncleaned
		w := httptest.NewRecorder()
		f.repo.Handler("/tuf/").ServeHTTP(w, req)
		if w.Code != want {
			t.Errorf("GET %s: %d, want %d", path, w.Code, want)
		}
		if path == "/tuf/timestamp.json" && w.Header().Get("Cache-Control") != "no-cache" {
			t.Errorf("timestamp.json Cache-Control %q", w.Header().Get("Cache-Control"))
		}
	}
}
