package tree

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/merkle/testonly"
)

type memTiles struct {
	mu sync.Mutex
	m  map[tileKey][]byte
}

func (m *memTiles) ReadTile(_ context.Context, level int, index int64) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	d, ok := m.m[tileKey{level, index}]
	if !ok {
		return nil, errors.New("no such tile")
	}
	return d, nil
}

func (m *memTiles) store(ts []Tile) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, t := range ts {
		m.m[tileKey{t.Level, t.Index}] = t.Data
	}
}

func leaf(i int) []byte { return []byte(fmt.Sprintf("leaf %d", i)) }

// TestAgainstReference grows a tree past two tile levels and checks roots and
// proofs against transparency-dev/merkle's reference tree and verifiers.
func TestAgainstReference(t *testing.T) {
	ctx := context.Background()
	const n = 66000 // crosses the first level-1 tile (65536 leaves)
	store := &memTiles{m: map[tileKey][]byte{}}
	tr := New(store, 16) // a small cache forces reads through the store
	ref := testonly.New(rfc6962.DefaultHasher)
	h := rfc6962.DefaultHasher
	checkpoints := map[int64]bool{1: true, 2: true, 3: true, 255: true, 256: true, 257: true, 511: true, 512: true, 1000: true, 65535: true, 65536: true, 65537: true, n: true}
	var batch []Hash
	for i := 0; i < n; i++ {
		lh := h.HashLeaf(leaf(i))
		ref.AppendData(leaf(i))
		var x Hash
		copy(x[:], lh)
		batch = append(batch, x)
		size := int64(i + 1)
		if !checkpoints[size] && len(batch) < 777 {
			continue
		}
		store.store(tr.Append(batch))
		batch = nil
		if !checkpoints[size] {
			continue
		}
		root, err := tr.Root(ctx, size)
		if err != nil {
			t.Fatal(err)
		}
		want := ref.HashAt(uint64(size))
		if string(root[:]) != string(want) {
			t.Fatalf("root at %d differs", size)
		}
		for _, idx := range []int64{0, size / 2, size - 1} {
			p, err := tr.InclusionProof(ctx, idx, size)
			if err != nil {
				t.Fatalf("inclusion %d/%d: %v", idx, size, err)
			}
			if err := proof.VerifyInclusion(h, uint64(idx), uint64(size), h.HashLeaf(leaf(int(idx))), toBytes(p), want); err != nil {
				t.Fatalf("inclusion %d/%d: %v", idx, size, err)
			}
		}
		for _, old := range []int64{1, size / 3, size - 1} {
			if old < 1 || old >= size {
				continue
			}
			p, err := tr.ConsistencyProof(ctx, old, size)
			if err != nil {
				t.Fatalf("consistency %d->%d: %v", old, size, err)
			}
			if err := proof.VerifyConsistency(h, uint64(old), uint64(size), toBytes(p), ref.HashAt(uint64(old)), want); err != nil {
				t.Fatalf("consistency %d->%d: %v", old, size, err)
			}
		}
	}

	// A restored tree answers the same as the one that grew.
	for _, size := range []int64{0, 5, 256, 300, 65536, 65790, n} {
		tail := make([]Hash, 0)
		for i := size - size%Width; i < size; i++ {
			var x Hash
			copy(x[:], h.HashLeaf(leaf(int(i))))
			tail = append(tail, x)
		}
		r := New(store, 16)
		if err := r.Restore(ctx, size, tail); err != nil {
			t.Fatalf("restore %d: %v", size, err)
		}
		got, err := r.Root(ctx, size)
		if err != nil {
			t.Fatal(err)
		}
		if string(got[:]) != string(ref.HashAt(uint64(size))) {
			t.Fatalf("restored root at %d differs", size)
		}
		// And keeps growing correctly.
		var x Hash
		copy(x[:], h.HashLeaf(leaf(int(size))))
		if size < n {
			r.Append([]Hash{x})
			got, _ := r.Root(ctx, size+1)
			if string(got[:]) != string(ref.HashAt(uint64(size+1))) {
				t.Fatalf("root after restore+append at %d differs", size+1)
			}
		}
	}

	if _, err := tr.InclusionProof(ctx, n, n); !errors.Is(err, ErrSize) {
		t.Errorf("proof beyond size: %v", err)
	}
	if _, err := tr.ConsistencyProof(ctx, 2, n+1); !errors.Is(err, ErrSize) {
		t.Errorf("consistency beyond size: %v", err)
	}
	// The partial level-0 tile is served as tlog-tiles does.
	d, err := tr.TileData(ctx, 0, n/Width)
	if err != nil || len(d) != (n%Width)*32 {
		t.Errorf("partial tile: %d bytes, %v", len(d), err)
	}
	sum := sha256.Sum256(append([]byte{0}, leaf(n-1)...))
	if string(d[len(d)-32:]) != string(sum[:]) {
		t.Errorf("partial tile does not end with the last leaf hash")
	}
}

func toBytes(hs []Hash) [][]byte {
	out := make([][]byte, len(hs))
	for i := range hs {
		out[i] = hs[i][:]
	}
	return out
}
