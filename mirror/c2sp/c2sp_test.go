package c2sp

import (
	"bytes"
	"reflect"
	"testing"
)

func TestTilePath(t *testing.T) {
	for _, c := range []struct {
		level int
		index int64
		width int
		want  string
	}{
		{0, 0, 256, "tile/0/000"},
		{0, 1234067, 256, "tile/0/x001/x234/067"},
		{1, 5, 17, "tile/1/005.p/17"},
		{EntriesLevel, 1000, 3, "tile/entries/x001/000.p/3"},
	} {
		if got := TilePath(c.level, c.index, c.width); got != c.want {
			t.Errorf("TilePath(%d,%d,%d) = %q, want %q", c.level, c.index, c.width, got, c.want)
		}
	}
}

func TestTiles(t *testing.T) {
	got := Tiles(5, 305)
	want := []TileRef{{EntriesLevel, 0, 256}, {EntriesLevel, 1, 49}, {0, 0, 256}, {0, 1, 49}, {1, 0, 1}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Tiles(5, 305) = %v, want %v", got, want)
	}
	if got := Tiles(305, 305); len(got) != 0 {
		t.Fatalf("Tiles(305, 305) = %v", got)
	}
	// 256 → 257: level 1 does not change.
	if got := Tiles(256, 257); !reflect.DeepEqual(got, []TileRef{{EntriesLevel, 1, 1}, {0, 1, 1}}) {
		t.Fatalf("Tiles(256, 257) = %v", got)
	}
}

func TestBundleAndProof(t *testing.T) {
	var b []byte
	for _, e := range []string{"a", "", "ccc"} {
		b, _ = AppendEntry(b, []byte(e))
	}
	es, err := ParseEntryBundle(b, 3)
	if err != nil || string(es[2]) != "ccc" {
		t.Fatal(es, err)
	}
	if _, err := ParseEntryBundle(b[:len(b)-1], 3); err == nil {
		t.Fatal("truncated bundle accepted")
	}
	if _, err := ParseEntryBundle(b, 4); err == nil {
		t.Fatal("short bundle accepted")
	}
	if _, err := AppendEntry(nil, make([]byte, MaxEntry+1)); err == nil {
		t.Fatal("oversized entry accepted")
	}
	p := &Proof{Extra: [][]byte{[]byte("x")}, Index: 7, Hashes: [][HashSize]byte{{1}, {2}}, Checkpoint: []byte("o\n1\nAA==\n\n— o sig\n")}
	q, err := ParseProof(p.Marshal())
	if err != nil || !reflect.DeepEqual(p, q) {
		t.Fatalf("round trip: %+v %v", q, err)
	}
	if _, err := ParseProof(bytes.Replace(p.Marshal(), []byte("index 7"), []byte("index -7"), 1)); err == nil {
		t.Fatal("negative index accepted")
	}
}
