// Package kit packs a mirror into an offline kit and verifies kits.
//
// A kit is one tar archive (gzip-compressed if its name ends in .gz):
//
//	MANIFEST.sha256   "<hex SHA-256>  <path>" for every other file
//	VERIFY.txt        how to verify the kit, and the manifest's digest
//	trust/policy      the c2sp.org/tlog-policy the snapshots were verified with
//	trust/log-<n>.vkey, trust/log-<n>.pem    each log key, as vkey and PEM
//	trust/witness-<name>.vkey                each witness's cosignature vkey
//	snapshots/<date>/...                      the snapshot chain (package snapshot)
//	tile/...                                  the tiles of the newest snapshot
//
// Verify needs nothing but the kit: the manifest, every snapshot's log
// signature and witness quorum, the chain of consistency proofs, and the
// tiles against the newest root (every older snapshot's root is recomputed
// from them too). The manifest's own digest is printed when the kit is
// made, for the auditor to compare out of band.
package kit

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/stellaops/tlog/mirror/snapshot"
	"github.com/stellaops/tlog/mirror/store"
	"github.com/stellaops/tlog/mirror/trust"
)

// Manifest is the name of the digest list.
const Manifest = "MANIFEST.sha256"

// Pack writes the kit of mirror directory dir to out (durably: temporary
// file, fsync, rename) and returns the manifest's SHA-256 in hex.
func Pack(dir, out string, now time.Time) (string, error) {
	t, err := trust.Load(filepath.Join(dir, "trust", "policy"), "")
	if err != nil {
		return "", fmt.Errorf("mirror %s has no usable trust/policy (run an export first): %w", dir, err)
	}
	dates, err := snapshot.List(os.DirFS(dir))
	if err != nil {
		return "", err
	}
	if len(dates) == 0 {
		return "", fmt.Errorf("mirror %s has no snapshot", dir)
	}
	files := map[string][]byte{"trust/policy": t.PolicyText}
	for i, l := range t.Logs {
		files[fmt.Sprintf("trust/log-%d.vkey", i+1)] = []byte(l.VKey + "\n")
		files[fmt.Sprintf("trust/log-%d.pem", i+1)] = l.PEM()
	}
	for _, w := range t.Policy.Witnesses {
		files["trust/witness-"+w.Name+".vkey"] = []byte(w.VKey + "\n")
	}
	var names []string
	for _, sub := range []string{"snapshots", "tile"} {
		fs, err := store.Files(filepath.Join(dir, sub))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return "", err
		}
		for _, f := range fs {
			if strings.Contains(f, "/.tmp-") || strings.Contains(f, "/.old-") || strings.HasPrefix(f, ".") {
				continue
			}
			names = append(names, sub+"/"+f)
		}
	}
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	var manifest bytes.Buffer
	digest := func(name string) ([]byte, error) {
		if d, ok := files[name]; ok {
			return d, nil
		}
		return os.ReadFile(filepath.Join(dir, filepath.FromSlash(name)))
	}
	for _, n := range names {
		d, err := digest(n)
		if err != nil {
			return "", err
		}
		sum := sha256.Sum256(d)
		fmt.Fprintf(&manifest, "%x  %s\n", sum, n)
	}
	msum := sha256.Sum256(manifest.Bytes())
	mhex := hex.EncodeToString(msum[:])
	verifyText := verifyTXT(dates, mhex, now)

	tmp, err := os.CreateTemp(filepath.Dir(out), ".tmp-kit-*")
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp.Name())
	var w io.Writer = tmp
	var gz *gzip.Writer
	if strings.HasSuffix(out, ".gz") {
		gz = gzip.NewWriter(tmp)
		w = gz
	}
	tw := tar.NewWriter(w)
	add := func(name string, data []byte) error {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(data)), ModTime: now, Typeflag: tar.TypeReg, Format: tar.FormatPAX}); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	if err := add(Manifest, manifest.Bytes()); err != nil {
		return "", err
	}
	if err := add("VERIFY.txt", []byte(verifyText)); err != nil {
		return "", err
	}
	for _, n := range names {
		d, err := digest(n)
		if err != nil {
			return "", err
		}
		if err := add(n, d); err != nil {
			return "", err
		}
	}
	if err := tw.Close(); err != nil {
		return "", err
	}
	if gz != nil {
		if err := gz.Close(); err != nil {
			return "", err
		}
	}
	if err := tmp.Sync(); err != nil {
		return "", err
	}
	if err := tmp.Close(); err != nil {
		return "", err
	}
	if err := os.Rename(tmp.Name(), out); err != nil {
		return "", err
	}
	return mhex, store.SyncDir(filepath.Dir(out))
}

func verifyTXT(dates []string, manifest string, now time.Time) string {
	return fmt.Sprintf(`Offline kit of a transparency log mirror
Made %s; snapshots %s to %s (%d).

MANIFEST.sha256 SHA-256: %s
Compare this digest with the one the kit's maker gave you out of band.

To verify, with no network:

  mirror verify --kit <this archive>
      checks every file against MANIFEST.sha256, every snapshot's log
      signature and witness quorum (trust/policy), the consistency of the
      snapshot chain, and every tile against the newest checkpoint.

  mirror verify --kit <this archive> --bundle <evidence>... [--max-age 24h] [--json]
      checks evidence bundles (Rekor LogEntry JSON, cosign bundles, sigstore
      bundles, DSSE envelope + .tlog-proof) against the kit.

Without the mirror tool: "sha256sum -c MANIFEST.sha256" checks the files;
trust/ holds the log keys (PEM, vkey) and witness vkeys; tile/ is a
c2sp.org/tlog-tiles tree any tlog-tiles client can prove against.
`, now.UTC().Format(time.RFC3339), dates[0], dates[len(dates)-1], len(dates), manifest)
}

// Kit is an opened kit: its files under Root.
type Kit struct {
	Root string
	// Source is the path the kit was opened from.
	Source  string
	cleanup string
}

// Close removes an extracted archive.
func (k *Kit) Close() error {
	if k.cleanup != "" {
		return os.RemoveAll(k.cleanup)
	}
	return nil
}

// FS is the kit's files.
func (k *Kit) FS() fs.FS { return os.DirFS(k.Root) }

// maxKitFile caps one file of an archive.
const maxKitFile = 1 << 30

// Open opens a kit: a directory (an unpacked kit or a mirror directory)
// or a tar archive, extracted to a temporary directory.
func Open(p string) (*Kit, error) {
	st, err := os.Stat(p)
	if err != nil {
		return nil, err
	}
	if st.IsDir() {
		return &Kit{Root: p, Source: p}, nil
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	br := bufio.NewReader(f)
	var r io.Reader = br
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		gz, err := gzip.NewReader(br)
		if err != nil {
			return nil, err
		}
		r = gz
	}
	tmp, err := os.MkdirTemp("", "mirror-kit-")
	if err != nil {
		return nil, err
	}
	k := &Kit{Root: tmp, Source: p, cleanup: tmp}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			k.Close()
			return nil, fmt.Errorf("%s: not a kit archive: %w", p, err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		name := path.Clean(h.Name)
		if !fs.ValidPath(name) || h.Size > maxKitFile {
			k.Close()
			return nil, fmt.Errorf("%s: bad member %q", p, h.Name)
		}
		dst := filepath.Join(tmp, filepath.FromSlash(name))
		os.MkdirAll(filepath.Dir(dst), 0o755)
		out, err := os.Create(dst)
		if err != nil {
			k.Close()
			return nil, err
		}
		_, err = io.Copy(out, io.LimitReader(tr, maxKitFile))
		out.Close()
		if err != nil {
			k.Close()
			return nil, err
		}
	}
	return k, nil
}
