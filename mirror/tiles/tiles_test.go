package tiles

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"testing"

	"github.com/stellaops/tlog/logserver/tree"
	"github.com/stellaops/tlog/mirror/c2sp"
)

// mem is an in-memory tile set.
type mem map[string][]byte

func (m mem) Tile(ref c2sp.TileRef) ([]byte, error) {
	d, ok := m[ref.Path()]
	if !ok {
		return nil, fs.ErrNotExist
	}
	return d, nil
}

// build returns the tiles of a tree of n entries and its root.
func build(t *testing.T, n int) (mem, tree.Hash) {
	t.Helper()
	tr := tree.New(nil, 1<<12)
	entries := make([][]byte, n)
	hs := make([]tree.Hash, n)
	for i := range entries {
		entries[i] = fmt.Appendf(nil, "e%d", i)
		hs[i] = LeafHash(entries[i])
	}
	m := mem{}
	for _, tl := range tr.Append(hs) {
		m[c2sp.TilePath(tl.Level, tl.Index, c2sp.TileWidth)] = tl.Data
	}
	ctx := context.Background()
	for _, ref := range c2sp.Tiles(0, int64(n)) {
		switch {
		case ref.Level == c2sp.EntriesLevel:
			var b []byte
			for _, e := range entries[ref.Index*256 : ref.Index*256+int64(ref.Width)] {
				b, _ = c2sp.AppendEntry(b, e)
			}
			m[ref.Path()] = b
		case ref.Width < c2sp.TileWidth:
			d, err := tr.TileData(ctx, ref.Level, ref.Index)
			if err != nil {
				t.Fatal(err)
			}
			m[ref.Path()] = d
		}
	}
	root, err := tr.Root(ctx, int64(n))
	if err != nil {
		t.Fatal(err)
	}
	return m, root
}

func TestVerify(t *testing.T) {
	ctx := context.Background()
	m, root := build(t, 70000)
	r := Layers{Layers: []interface {
		Tile(c2sp.TileRef) ([]byte, error)
	}{m}}
	tr, err := Verify(ctx, r, 0, 70000, root, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := tr.Root(ctx, 70000); got != root {
		t.Fatal("root")
	}
	if _, err := Verify(ctx, r, 0, 70000, tree.Hash{1}, nil); !errors.Is(err, ErrRoot) {
		t.Fatalf("wrong root: %v", err)
	}
	for _, c := range []struct {
		path   string
		tamper func([]byte) []byte
		want   string
	}{
		{"tile/0/007", func(d []byte) []byte { d[3] ^= 1; return d }, "tile/1/000: hash 7 is not the root of tile/0/007"},
		{"tile/0/007", func(d []byte) []byte { return d[:100] }, "tile/0/007: truncated"},
		{"tile/entries/010", func(d []byte) []byte { d[2] ^= 1; return d }, "entry 0 (log index 2560)"},
		{"tile/2/000.p/1", func(d []byte) []byte { d[0] ^= 1; return d }, "tile/2/000.p/1: hash 0 is not the root of tile/1/000"},
		{"tile/0/273.p/112", func(d []byte) []byte { d[0] ^= 1; return d }, "root differs"},
		{"tile/entries/273.p/112", func(d []byte) []byte { return append(d, 0, 1, 'x') }, "holds 113 entries, want 112"},
	} {
		bad := mem{}
		for k, v := range m {
			bad[k] = v
		}
		bad[c.path] = c.tamper(append([]byte(nil), m[c.path]...))
		br := Layers{Layers: []interface {
			Tile(c2sp.TileRef) ([]byte, error)
		}{bad}}
		if _, err := Verify(ctx, br, 0, 70000, root, nil); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s tampered: %v, want %q", c.path, err, c.want)
		}
	}
	// Missing tile.
	delete(m, "tile/0/100")
	if _, err := Verify(ctx, r, 0, 70000, root, nil); err == nil || !strings.Contains(err.Error(), "tile/0/100: missing") {
		t.Errorf("missing tile: %v", err)
	}
}
