package tlogtiles_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/tessera/api"
	"github.com/transparency-dev/tessera/client"
	"golang.org/x/mod/sumdb/note"

	"github.com/stellaops/tlog/logserver/config"
	"github.com/stellaops/tlog/testing/entries"
	"github.com/stellaops/tlog/testing/stack"
)

type tilesEnv struct {
	ls     *stack.Logserver
	dsn    string
	vkey   string
	origin string
	signer *entries.Signer
	count  int // entries logged
}

func newTilesEnv(t testing.TB, prefix string) *tilesEnv {
	t.Helper()
	db := stack.TestMariaDB(t, false)
	dsn := stack.TestDatabase(t, db, "tiles")
	dir := t.TempDir()
	e := &tilesEnv{dsn: dsn, vkey: filepath.Join(dir, "note.vkey"), origin: "tiles.stella.test/log"}
	e.ls = stack.StartLogserver(t, dsn, dir, func(c *config.Config) {
		c.Witnessing = config.Witnessing{Origin: e.origin, KeyFile: filepath.Join(dir, "note.pem"), CreateKey: true, VKeyFile: e.vkey}
		c.Tiles.Prefix = prefix
	})
	s, err := entries.NewSigner()
	if err != nil {
		t.Fatal(err)
	}
	e.signer = s
	return e
}

// add logs n new hashedrekord entries, 16 at a time, and waits for the
// C2SP checkpoint to cover them.
func (e *tilesEnv) add(t testing.TB, n int) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	work := make(chan int)
	base := e.count
	e.count += n
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				pe, err := e.signer.HashedRekord([]byte(fmt.Sprintf("artifact %d %d", base, i)))
				if err != nil {
					errs <- err
					continue
				}
				data, _ := json.Marshal(pe)
				resp, err := http.Post(e.ls.URL+"/api/v1/log/entries", "application/json", bytes.NewReader(data))
				if err != nil {
					errs <- err
					continue
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusCreated {
					errs <- fmt.Errorf("POST entry: %d %s", resp.StatusCode, body)
				}
			}
		}()
	}
	for i := 0; i < n; i++ {
		work <- i
	}
	close(work)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	want := uint64(base + n)
	deadline := time.Now().Add(30 * time.Second)
	for {
		cp, _, _ := e.checkpoint(t)
		if cp != nil && cp.Size == want {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("checkpoint did not reach size %d", want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (e *tilesEnv) verifier(t testing.TB) note.Verifier {
	t.Helper()
	vk, err := os.ReadFile(e.vkey)
	if err != nil {
		t.Fatal(err)
	}
	v, err := note.NewVerifier(strings.TrimSpace(string(vk)))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func (e *tilesEnv) fetcher(t testing.TB, prefix string) *client.HTTPFetcher {
	t.Helper()
	u, err := url.Parse(e.ls.URL + prefix)
	if err != nil {
		t.Fatal(err)
	}
	f, err := client.NewHTTPFetcher(u, nil)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

type checkpoint struct {
	Size uint64
	Hash []byte
}

func (e *tilesEnv) checkpoint(t testing.TB) (*checkpoint, []byte, error) {
	t.Helper()
	f := e.fetcher(t, e.ls.Config.Tiles.Prefix)
	cp, raw, _, err := client.FetchCheckpoint(context.Background(), f.ReadCheckpoint, e.verifier(t), e.origin)
	if err != nil {
		return nil, nil, err
	}
	return &checkpoint{cp.Size, cp.Hash}, raw, nil
}

func get(t *testing.T, u string) (int, http.Header, []byte) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, b
}

// rekorV1 reads the Rekor v1 view: tree size and root, an inclusion proof
// at the current size, a consistency proof.
func rekorV1Root(t *testing.T, base string) (uint64, []byte) {
	t.Helper()
	_, _, b := get(t, base+"/api/v1/log")
	var info struct {
		RootHash string `json:"rootHash"`
		TreeSize uint64 `json:"treeSize"`
	}
	if err := json.Unmarshal(b, &info); err != nil {
		t.Fatal(err)
	}
	root, _ := hex.DecodeString(info.RootHash)
	return info.TreeSize, root
}

func rekorV1Inclusion(t *testing.T, base string, index uint64) (leafBody []byte, treeSize uint64, hashes [][]byte) {
	t.Helper()
	code, _, b := get(t, fmt.Sprintf("%s/api/v1/log/entries?logIndex=%d", base, index))
	if code != 200 {
		t.Fatalf("entry %d: %d %s", index, code, b)
	}
	var m map[string]struct {
		Body         []byte `json:"body"`
		Verification struct {
			InclusionProof struct {
				TreeSize uint64   `json:"treeSize"`
				Hashes   []string `json:"hashes"`
			} `json:"inclusionProof"`
		} `json:"verification"`
	}
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, v := range m {
		for _, h := range v.Verification.InclusionProof.Hashes {
			x, _ := hex.DecodeString(h)
			hashes = append(hashes, x)
		}
		return v.Body, v.Verification.InclusionProof.TreeSize, hashes
	}
	t.Fatal("no entry")
	return nil, 0, nil
}

func rekorV1Consistency(t *testing.T, base string, m, n uint64) [][]byte {
	t.Helper()
	code, _, b := get(t, fmt.Sprintf("%s/api/v1/log/proof?firstSize=%d&lastSize=%d", base, m, n))
	if code != 200 {
		t.Fatalf("proof %d..%d: %d %s", m, n, code, b)
	}
	var p struct {
		Hashes []string `json:"hashes"`
	}
	if err := json.Unmarshal(b, &p); err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for _, h := range p.Hashes {
		x, _ := hex.DecodeString(h)
		out = append(out, x)
	}
	return out
}

// runFsck runs tessera's tlog-tiles checker: it re-derives every tile from
// the entry bundles and checks the checkpoint's root. It exits 0 even when
// it fails: judge it by its "Successfully fsck'd" line.
func runFsck(t *testing.T, storageURL, vkeyFile string) (bool, string) {
	t.Helper()
	bin := stack.Fsck.Install(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	// fsck can hang on a corrupted resource: the timeout counts as failure.
	out, _ := exec.CommandContext(ctx, bin, "--ui=false", "--storage_url="+storageURL, "--public_key="+vkeyFile, "--N=4").CombinedOutput()
	return strings.Contains(string(out), "Successfully fsck'd"), string(out)
}

func sameHashes(a, b [][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

// The v1 log as tlog-tiles, read with tessera's own tools: fsck passes,
// tessera's client builds inclusion and consistency proofs that verify and
// equal the Rekor v1 API's, at the current size and at an older one (from
// the checkpoint history and older partial tiles).
func TestTilesWithTessera(t *testing.T) {
	const prefix = "/tiles/"
	e := newTilesEnv(t, prefix)
	ctx := context.Background()
	tilesURL := e.ls.URL + prefix

	// Before any entry: the empty checkpoint, no tiles.
	code, _, _ := get(t, tilesURL+"tile/0/000.p/1")
	if code != http.StatusNotFound {
		t.Fatalf("tile of the empty tree: %d", code)
	}

	e.add(t, 300)
	old, _, err := e.checkpoint(t)
	if err != nil {
		t.Fatal(err)
	}
	e.add(t, 400) // 700: two full bundles, a partial one, a partial level-1 tile

	cp, raw, err := e.checkpoint(t)
	if err != nil {
		t.Fatal(err)
	}
	size, root := rekorV1Root(t, e.ls.URL)
	if cp.Size != 700 || size != 700 || !bytes.Equal(cp.Hash, root) {
		t.Fatalf("tiles checkpoint %d %x, Rekor v1 %d %x", cp.Size, cp.Hash, size, root)
	}

	if ok, out := runFsck(t, tilesURL, e.vkey); !ok {
		t.Fatalf("fsck failed:\n%s", out)
	}

	f := e.fetcher(t, prefix)
	pb, err := client.NewProofBuilder(ctx, cp.Size, f.ReadTile)
	if err != nil {
		t.Fatal(err)
	}
	for _, idx := range []uint64{0, 1, 255, 256, 299, 511, 512, 699} {
		body, v1Size, v1Proof := rekorV1Inclusion(t, e.ls.URL, idx)
		if v1Size != cp.Size {
			t.Fatalf("v1 proof at size %d", v1Size)
		}
		p, err := pb.InclusionProof(ctx, idx)
		if err != nil {
			t.Fatal(err)
		}
		if !sameHashes(p, v1Proof) {
			t.Fatalf("inclusion of %d: tiles %x, v1 %x", idx, p, v1Proof)
		}
		if err := proof.VerifyInclusion(rfc6962.DefaultHasher, idx, cp.Size, rfc6962.DefaultHasher.HashLeaf(body), p, cp.Hash); err != nil {
			t.Fatalf("inclusion of %d: %v", idx, err)
		}
		// The entry bundle holds the same body.
		bundle, err := client.GetEntryBundle(ctx, f.ReadEntryBundle, idx/256, cp.Size)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(bundle.Entries[idx%256], body) {
			t.Fatalf("bundle entry %d differs from the v1 body", idx)
		}
	}
	for _, m := range []uint64{1, 255, 256, 300, 513} {
		p, err := pb.ConsistencyProof(ctx, m, cp.Size)
		if err != nil {
			t.Fatal(err)
		}
		if v1 := rekorV1Consistency(t, e.ls.URL, m, cp.Size); !sameHashes(p, v1) {
			t.Fatalf("consistency %d..%d: tiles %x, v1 %x", m, cp.Size, p, v1)
		}
	}

	// The older checkpoint is still served, by size, and the older
	// (partial) tiles give proofs against it.
	code, hdr, oldRaw := get(t, fmt.Sprintf("%scheckpoints/%d", tilesURL, old.Size))
	if code != 200 || hdr.Get("Cache-Control") != "no-cache" {
		t.Fatalf("checkpoint history: %d %v", code, hdr)
	}
	n, err := note.Open(oldRaw, note.VerifierList(e.verifier(t)))
	if err != nil || !strings.HasPrefix(n.Text, fmt.Sprintf("%s\n%d\n", e.origin, old.Size)) {
		t.Fatalf("old checkpoint %q: %v", oldRaw, err)
	}
	oldPB, err := client.NewProofBuilder(ctx, old.Size, f.ReadTile)
	if err != nil {
		t.Fatal(err)
	}
	cons, err := pb.ConsistencyProof(ctx, old.Size, cp.Size)
	if err != nil {
		t.Fatal(err)
	}
	if err := proof.VerifyConsistency(rfc6962.DefaultHasher, old.Size, cp.Size, cons, old.Hash, cp.Hash); err != nil {
		t.Fatalf("consistency old..new: %v", err)
	}
	body, _, _ := rekorV1Inclusion(t, e.ls.URL, 299)
	p, err := oldPB.InclusionProof(ctx, 299)
	if err != nil {
		t.Fatal(err)
	}
	if err := proof.VerifyInclusion(rfc6962.DefaultHasher, 299, old.Size, rfc6962.DefaultHasher.HashLeaf(body), p, old.Hash); err != nil {
		t.Fatalf("inclusion at the old size: %v", err)
	}
	if code, _, _ := get(t, tilesURL+"checkpoints/12345"); code != http.StatusNotFound {
		t.Fatalf("checkpoint never published: %d", code)
	}
	if !bytes.Contains(raw, []byte("\n— "+e.origin+" ")) {
		t.Fatalf("checkpoint not signed by the log's note key: %q", raw)
	}
}

// Headers, status codes, HEAD; bundles survive a restart, one deleted from
// storage is recomputed, and a corrupted one makes fsck fail.
func TestTilesHTTP(t *testing.T) {
	e := newTilesEnv(t, "/")
	e.add(t, 260)
	u := e.ls.URL

	for _, c := range []struct {
		path  string
		code  int
		size  int
		cache string
	}{
		{"/tile/0/000", 200, 8192, "public, max-age=31536000, immutable"},
		{"/tile/0/001.p/4", 200, 128, "public, max-age=31536000, immutable"},
		{"/tile/0/001.p/3", 200, 96, "public, max-age=31536000, immutable"}, // a prefix: an older tree's tile
		{"/tile/1/000.p/1", 200, 32, "public, max-age=31536000, immutable"},
		{"/tile/0/001.p/5", 404, -1, "no-cache"},
		{"/tile/0/001", 404, -1, "no-cache"},
		{"/tile/1/000", 404, -1, "no-cache"},
		{"/tile/2/000.p/1", 404, -1, "no-cache"},
		{"/tile/0/002.p/1", 404, -1, "no-cache"},
		{"/tile/entries/001.p/4", 200, -1, "public, max-age=31536000, immutable"},
		{"/tile/entries/001.p/5", 404, -1, "no-cache"},
		{"/tile/0/1", 400, -1, ""},
		{"/tile/0/000.p/0", 400, -1, ""},
		{"/tile/entries/000.p/256", 400, -1, ""},
	} {
		code, hdr, body := get(t, u+c.path)
		if code != c.code || c.size >= 0 && len(body) != c.size || c.cache != "" && hdr.Get("Cache-Control") != c.cache {
			t.Errorf("%s: %d, %d bytes, Cache-Control %q; want %d, %d, %q", c.path, code, len(body), hdr.Get("Cache-Control"), c.code, c.size, c.cache)
		}
		if code == 200 && hdr.Get("Content-Type") != "application/octet-stream" {
			t.Errorf("%s: Content-Type %q", c.path, hdr.Get("Content-Type"))
		}
	}
	code, hdr, _ := get(t, u+"/checkpoint")
	if code != 200 || hdr.Get("Cache-Control") != "no-cache" || hdr.Get("Content-Type") != "text/plain; charset=utf-8" {
		t.Fatalf("checkpoint: %d %v", code, hdr)
	}
	resp, err := http.Head(u + "/tile/0/000")
	if err != nil || resp.StatusCode != 200 || resp.ContentLength != 8192 {
		t.Fatalf("HEAD full tile: %v %v", resp, err)
	}
	resp.Body.Close()

	// A full partial-tile prefix equals the full tile's prefix.
	_, _, full := get(t, u+"/tile/0/000")
	_, _, part := get(t, u+"/tile/0/000.p/7")
	if !bytes.Equal(full[:7*32], part) {
		t.Fatal("partial tile is not a prefix of the full tile")
	}

	db, err := sql.Open("mysql", e.dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var stored int
	if err := db.QueryRow("SELECT COUNT(*) FROM entry_bundles").Scan(&stored); err != nil || stored != 1 {
		t.Fatalf("stored bundles: %d, %v (want 1: written in the publish transaction)", stored, err)
	}
	_, _, bundle0 := get(t, u+"/tile/entries/000")
	var eb api.EntryBundle
	if err := eb.UnmarshalText(bundle0); err != nil || len(eb.Entries) != 256 {
		t.Fatalf("bundle 0: %d entries, %v", len(eb.Entries), err)
	}

	// Restart: the same resources. A bundle missing from storage (a log
	// published before bundles were stored) is recomputed and stored.
	e.ls.Restart()
	u = e.ls.URL
	if _, err := db.Exec("DELETE FROM entry_bundles"); err != nil {
		t.Fatal(err)
	}
	if _, _, b := get(t, u+"/tile/entries/000"); !bytes.Equal(b, bundle0) {
		t.Fatal("recomputed bundle differs")
	}
	if err := db.QueryRow("SELECT COUNT(*) FROM entry_bundles").Scan(&stored); err != nil || stored != 1 {
		t.Fatalf("recomputed bundle not stored: %d, %v", stored, err)
	}
	if ok, out := runFsck(t, u+"/", e.vkey); !ok {
		t.Fatalf("fsck after restart:\n%s", out)
	}

	// A corrupted bundle in storage: fsck must notice.
	if _, err := db.Exec("UPDATE entry_bundles SET data = CONCAT(LEFT(data, 100), 'X', SUBSTRING(data, 102)) WHERE bundle_index = 0"); err != nil {
		t.Fatal(err)
	}
	if ok, out := runFsck(t, u+"/", e.vkey); ok {
		t.Fatalf("fsck passed a corrupted bundle:\n%s", out)
	}
}
