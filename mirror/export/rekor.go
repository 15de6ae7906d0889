package export

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/sync/errgroup"

	"github.com/stellaops/tlog/logserver/tree"
	"github.com/stellaops/tlog/mirror/c2sp"
	"github.com/stellaops/tlog/mirror/snapshot"
	"github.com/stellaops/tlog/mirror/tiles"
	"github.com/stellaops/tlog/mirror/trust"
)

// rekorSource is a Rekor v1 API log: GET /api/v1/log for the signed tree
// head, /api/v1/log/proof for consistency, POST /api/v1/log/entries/retrieve
// (logIndexes, rekorBatch per request, Rekor's limit) for the entries. The
// mirror rebuilds the tiles from the entries' canonical bodies.
type rekorSource struct {
	e    *Exporter
	f    *fetcher
	base string

	mu   sync.Mutex
	info *rekorLogInfo
}

// rekorBatch is the number of log indexes per retrieve request (Rekor
// v1.5 refuses more than 10).
const rekorBatch = 10

type rekorLogInfo struct {
	RootHash       string `json:"rootHash"`
	TreeSize       int64  `json:"treeSize"`
	SignedTreeHead string `json:"signedTreeHead"`
	TreeID         string `json:"treeID"`
}

func (s *rekorSource) checkpoint(ctx context.Context) ([]byte, error) {
	data, err := s.f.get(ctx, s.base+"/api/v1/log")
	if err != nil {
		return nil, err
	}
	var info rekorLogInfo
	if err := json.Unmarshal(data, &info); err != nil {
		return nil, fmt.Errorf("GET /api/v1/log: %w", err)
	}
	s.mu.Lock()
	s.info = &info
	s.mu.Unlock()
	if s.e.cfg.CheckpointURL != "" {
		return s.f.get(ctx, s.e.cfg.CheckpointURL)
	}
	return []byte(info.SignedTreeHead), nil
}

// matchSTH checks the Rekor signed tree head against the C2SP checkpoint c
// of the same tree: same size and root, or a larger tree that the log
// proves consistent with c.
func (s *rekorSource) matchSTH(ctx context.Context, info *rekorLogInfo, c *trust.Checkpoint) error {
	sthSnap := &snapshot.Snapshot{Meta: snapshot.Meta{Date: "the Rekor signed tree head"}, Checkpoint: []byte(info.SignedTreeHead)}
	sth, err := s.e.trust.VerifyLog([]byte(info.SignedTreeHead))
	if err != nil {
		return &VerifyError{fmt.Errorf("Rekor signed tree head: %w", err)}
	}
	switch {
	case sth.Size < c.Size:
		return &VerifyError{fmt.Errorf("Rekor signed tree head (size %d) is behind the checkpoint (size %d)", sth.Size, c.Size)}
	case sth.Size == c.Size && sth.Root != c.Root:
		return s.e.inconsistent(sthSnap, c, fmt.Sprintf("split view: the Rekor signed tree head and the checkpoint give size %d two roots", c.Size))
	case sth.Size > c.Size && c.Size > 0:
		if err := s.verifyProof(ctx, c.Size, sth.Size, c.Root[:], sth.Root[:], info.TreeID); err != nil {
			return s.e.inconsistent(sthSnap, c, fmt.Sprintf("the Rekor signed tree head (size %d) is not consistent with the checkpoint (size %d): %v", sth.Size, c.Size, err))
		}
	}
	return nil
}

func (s *rekorSource) stage(ctx context.Context, old, c *trust.Checkpoint) (int, error) {
	s.mu.Lock()
	info := s.info
	s.mu.Unlock()
	if s.e.cfg.CheckpointURL != "" {
		if err := s.matchSTH(ctx, info, c); err != nil {
			return 0, err
		}
	} else if root, err := hex.DecodeString(info.RootHash); err != nil || info.TreeSize != c.Size || string(root) != string(c.Root[:]) {
		return 0, &VerifyError{fmt.Errorf("GET /api/v1/log: treeSize %d rootHash %s disagree with its signed tree head (size %d)", info.TreeSize, info.RootHash, c.Size)}
	}
	m := int64(0)
	if old != nil {
		m = old.Size
	}
	if m > 0 && m < c.Size {
		if err := s.checkProof(ctx, old, c, info.TreeID); err != nil {
			return 0, err
		}
	}
	staged, final := s.e.dir.Tiles("staging"), s.e.dir.Tiles("")
	verified := tiles.Layers{Layers: []interface {
		Tile(c2sp.TileRef) ([]byte, error)
	}{final}, TrustLast: true}
	tr, err := tiles.Open(ctx, verified, m)
	if err != nil {
		return 0, err
	}
	first, last := m/c2sp.TileWidth, (c.Size+c2sp.TileWidth-1)/c2sp.TileWidth
	s.e.progress.start("entries", int(c.Size-m))
	defer s.e.progress.done()
	fetched := 0
	for b := first; b < last; b++ {
		lo, hi := b*c2sp.TileWidth, min((b+1)*c2sp.TileWidth, c.Size)
		ref := c2sp.TileRef{Level: c2sp.EntriesLevel, Index: b, Width: int(hi - lo)}
		var bodies [][]byte
		if data, err := staged.Tile(ref); err == nil {
			if bodies, err = c2sp.ParseEntryBundle(data, ref.Width); err != nil {
				return fetched, err
			}
		} else {
			if bodies, err = s.bundle(ctx, final, lo, hi, m); err != nil {
				return fetched, err
			}
			var data []byte
			for _, e := range bodies {
				if data, err = c2sp.AppendEntry(data, e); err != nil {
					return fetched, err
				}
			}
			if err := staged.Stage(ref, data); err != nil {
				return fetched, err
			}
			fetched += int((hi - max(lo, m) + rekorBatch - 1) / rekorBatch)
		}
		var hs []tree.Hash
		for i := max(lo, m) - lo; i < hi-lo; i++ {
			hs = append(hs, tiles.LeafHash(bodies[i]))
		}
		for _, t := range tr.Append(hs) {
			if err := staged.Stage(c2sp.TileRef{Level: t.Level, Index: t.Index, Width: c2sp.TileWidth}, t.Data); err != nil {
				return fetched, err
			}
		}
	}
	for _, ref := range c2sp.Tiles(m, c.Size) {
		if ref.Level < 0 || ref.Width == c2sp.TileWidth {
			continue
		}
		data, err := tr.TileData(ctx, ref.Level, ref.Index)
		if err != nil {
			return fetched, err
		}
		if err := staged.Stage(ref, data); err != nil {
			return fetched, err
		}
	}
	return fetched, nil
}

// checkProof asks the log for a consistency proof from the newest snapshot:
// a proof that does not verify is a fork.
func (s *rekorSource) checkProof(ctx context.Context, old, c *trust.Checkpoint, treeID string) error {
	if err := s.verifyProof(ctx, old.Size, c.Size, old.Root[:], c.Root[:], treeID); err != nil {
		latest, lerr := s.e.latestSnapshot()
		if lerr != nil {
			return lerr
		}
		return s.e.inconsistent(latest, c, fmt.Sprintf("the log's consistency proof %d→%d does not verify against snapshot %s: %v",
			old.Size, c.Size, latest.Meta.Date, err))
	}
	return nil
}

// verifyProof fetches and verifies the log's consistency proof m→n.
func (s *rekorSource) verifyProof(ctx context.Context, m, n int64, rootM, rootN []byte, treeID string) error {
	u := fmt.Sprintf("%s/api/v1/log/proof?firstSize=%d&lastSize=%d", s.base, m, n)
	if treeID != "" {
		u += "&treeID=" + treeID
	}
	data, err := s.f.get(ctx, u)
	if err != nil {
		return err
	}
	var p struct {
		RootHash string   `json:"rootHash"`
		Hashes   []string `json:"hashes"`
	}
	if err := json.Unmarshal(data, &p); err != nil {
		return fmt.Errorf("consistency proof: %w", err)
	}
	var hs [][]byte
	for _, h := range p.Hashes {
		b, err := hex.DecodeString(h)
		if err != nil {
			return fmt.Errorf("consistency proof: bad hash %q", h)
		}
		hs = append(hs, b)
	}
	return proof.VerifyConsistency(rfc6962.DefaultHasher, uint64(m), uint64(n), hs, rootM, rootN)
}

// bundle returns the entries [lo, hi): those below m from the stored
// partial bundle, the others from the log.
func (s *rekorSource) bundle(ctx context.Context, final interface {
	Tile(c2sp.TileRef) ([]byte, error)
}, lo, hi, m int64) ([][]byte, error) {
	bodies := make([][]byte, hi-lo)
	if m > lo {
		ref := c2sp.TileRef{Level: c2sp.EntriesLevel, Index: lo / c2sp.TileWidth, Width: int(m - lo)}
		data, err := final.Tile(ref)
		if err != nil {
			return nil, fmt.Errorf("stored %s: %w", ref.Path(), err)
		}
		prev, err := c2sp.ParseEntryBundle(data, ref.Width)
		if err != nil {
			return nil, fmt.Errorf("stored %s: %w", ref.Path(), err)
		}
		copy(bodies, prev)
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(s.e.cfg.Workers)
	for start := max(lo, m); start < hi; start += rekorBatch {
		end := min(start+rekorBatch, hi)
		g.Go(func() error {
			got, err := s.retrieve(gctx, start, end)
			if err != nil {
				return err
			}
			for i, b := range got {
				bodies[start-lo+int64(i)] = b
			}
			s.e.progress.add(int(end-start), 0)
			s.e.metrics.tiles.Inc()
			return nil
		})
	}
	return bodies, g.Wait()
}

// retrieve fetches the canonical bodies of entries [start, end).
func (s *rekorSource) retrieve(ctx context.Context, start, end int64) ([][]byte, error) {
	var q struct {
		LogIndexes []int64 `json:"logIndexes"`
	}
	for i := start; i < end; i++ {
		q.LogIndexes = append(q.LogIndexes, i)
	}
	body, _ := json.Marshal(q)
	data, err := s.f.do(ctx, http.MethodPost, s.base+"/api/v1/log/entries/retrieve", "application/json", body)
	if err != nil {
		return nil, err
	}
	var list []map[string]struct {
		Body     string `json:"body"`
		LogIndex *int64 `json:"logIndex"`
	}
	if err := json.Unmarshal(data, &list); err != nil {
		return nil, fmt.Errorf("entries/retrieve: %w", err)
	}
	out := make([][]byte, end-start)
	for _, m := range list {
		for uuid, e := range m {
			if e.LogIndex == nil || *e.LogIndex < start || *e.LogIndex >= end {
				return nil, fmt.Errorf("entries/retrieve: entry %s has log index %v outside [%d, %d)", uuid, e.LogIndex, start, end)
			}
			b, err := base64.StdEncoding.DecodeString(e.Body)
			if err != nil {
				return nil, fmt.Errorf("entries/retrieve: entry %d: body is not base64", *e.LogIndex)
			}
			out[*e.LogIndex-start] = b
		}
	}
	for i, b := range out {
		if b == nil {
			return nil, errors.New("entries/retrieve: log did not return entry " + strconv.FormatInt(start+int64(i), 10))
		}
	}
	return out, nil
}
