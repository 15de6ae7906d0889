package tlogtiles

import (
	"strings"
	"testing"

	"github.com/transparency-dev/tessera/api/layout"
)

// Paths as tessera writes them parse back to the same resource.
func TestParseTilePathMatchesTessera(t *testing.T) {
	for _, idx := range []uint64{0, 1, 999, 1000, 1234067, 1 << 40} {
		for _, p := range []uint8{0, 1, 255} {
			for _, level := range []uint64{0, 1, 63} {
				want := resource{level: int(level), index: int64(idx), width: 256}
				if p > 0 {
					want.width = int(p)
				}
				got, err := parseTilePath(strings.TrimPrefix(layout.TilePath(level, idx, p), "tile/"))
				if err != nil || got != want {
					t.Errorf("%s: got %+v, %v; want %+v", layout.TilePath(level, idx, p), got, err, want)
				}
			}
			want := resource{entries: true, index: int64(idx), width: 256}
			if p > 0 {
				want.width = int(p)
			}
			got, err := parseTilePath(strings.TrimPrefix(layout.EntriesPath(idx, p), "tile/"))
			if err != nil || got != want {
				t.Errorf("%s: got %+v, %v; want %+v", layout.EntriesPath(idx, p), got, err, want)
			}
		}
	}
}

func TestParseTilePathRejects(t *testing.T) {
	for _, p := range []string{
		"", "0", "0/", "00/000", "64/000", "-1/000", "0/00", "0/0000", "0/abc", "0/001/002", "0/x000/001",
		"0/000.p/0", "0/000.p/256", "0/000.p/01", "0/000.p/", "0/000.p", "entries/000.p/300", "entries", "entries/",
		"0/y001/000", "1/x1/000", "0/000/", "0/x001/000.p/1/", "0/x999999999999999999/000",
	} {
		if r, err := parseTilePath(p); err == nil {
			t.Errorf("%q parsed as %+v", p, r)
		}
	}
}
