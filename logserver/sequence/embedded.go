package sequence

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
	"time"

	"github.com/google/trillian"
	"github.com/google/trillian/extension"
	tlog "github.com/google/trillian/log"
	"github.com/google/trillian/monitoring"
	"github.com/google/trillian/quota"
	"github.com/google/trillian/server"
	"github.com/google/trillian/storage"
	"github.com/google/trillian/storage/mysql"
	"github.com/google/trillian/types"
	"github.com/google/trillian/util/clock"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

// Embedded runs Trillian's log storage and sequencer inside this process,
// against MySQL/MariaDB. Only one process may sequence a tree: the logserver
// holds the tree's lease (store.Lease) in this mode (use Remote with
// Trillian's own election to scale out).
type Embedded struct {
	db   *sql.DB
	reg  extension.Registry
	tree *trillian.Tree
}

// initMetrics initialises the sequencer's package-level metrics once.
var initMetrics sync.Once

// OpenEmbedded opens Trillian's storage at dsn. If treeID is 0 a new tree is
// created and initialised; otherwise that tree is opened and must exist.
func OpenEmbedded(ctx context.Context, dsn string, treeID int64, maxConns int) (*Embedded, error) {
	db, err := mysql.OpenDB(dsn)
	if err != nil {
		return nil, fmt.Errorf("trillian storage: %w", err)
	}
	if maxConns > 0 {
		db.SetMaxOpenConns(maxConns)
		db.SetMaxIdleConns(maxConns)
	}
	mf := monitoring.InertMetricFactory{}
	initMetrics.Do(func() { tlog.InitMetrics(mf) })
	e := &Embedded{db: db, reg: extension.Registry{
		AdminStorage:  mysql.NewAdminStorage(db),
		LogStorage:    mysql.NewLogStorage(db, mf),
		QuotaManager:  quota.Noop(),
		MetricFactory: mf,
	}}
	if treeID == 0 {
		t, err := storage.CreateTree(ctx, e.reg.AdminStorage, &trillian.Tree{
			TreeState:       trillian.TreeState_ACTIVE,
			TreeType:        trillian.TreeType_LOG,
			DisplayName:     "stella-rekor",
			MaxRootDuration: durationpb.New(0),
		})
		if err != nil {
			db.Close()
			return nil, fmt.Errorf("create tree: %w", err)
		}
		srv := server.NewTrillianLogRPCServer(e.reg, clock.System)
		if _, err := srv.InitLog(ctx, &trillian.InitLogRequest{LogId: t.TreeId}); err != nil {
			db.Close()
			return nil, fmt.Errorf("init tree %d: %w", t.TreeId, err)
		}
		treeID = t.TreeId
	}
	t, err := storage.GetTree(ctx, e.reg.AdminStorage, treeID)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("tree %d: %w", treeID, err)
	}
	if t.TreeType != trillian.TreeType_LOG || t.TreeState != trillian.TreeState_ACTIVE {
		db.Close()
		return nil, fmt.Errorf("tree %d is %v/%v, want an ACTIVE LOG", treeID, t.TreeType, t.TreeState)
	}
	e.tree = t
	return e, nil
}

// TreeID implements Backend.
func (e *Embedded) TreeID() int64 { return e.tree.TreeId }

// Sequences implements Backend: the embedded sequencer is ours to drive.
func (e *Embedded) Sequences() bool { return true }

// QueueLeaves implements Backend with one storage transaction per batch
// (Trillian's QueueLeaf RPC costs one transaction per leaf).
func (e *Embedded) QueueLeaves(ctx context.Context, in []Leaf) ([]bool, error) {
	leaves := make([]*trillian.LogLeaf, len(in))
	for i, l := range in {
		leaves[i] = &trillian.LogLeaf{LeafValue: l.Value, ExtraData: l.ExtraData, MerkleLeafHash: l.Hash[:], LeafIdentityHash: l.Hash[:]}
	}
	res, err := e.reg.LogStorage.QueueLeaves(ctx, e.tree, leaves, time.Now())
	if err != nil {
		return nil, err
	}
	dup := make([]bool, len(in))
	for i, r := range res {
		if r.GetStatus() == nil {
			continue
		}
		switch codes.Code(r.GetStatus().GetCode()) {
		case codes.OK:
		case codes.AlreadyExists:
			dup[i] = true
		default:
			return nil, status.ErrorProto(r.GetStatus())
		}
	}
	return dup, nil
}

// Integrate implements Backend with one pass of Trillian's sequencer.
func (e *Embedded) Integrate(ctx context.Context, limit int) (int, error) {
	return tlog.IntegrateBatch(ctx, e.tree, limit, 0, 0, clock.System, e.reg.LogStorage, e.reg.QuotaManager)
}

// Root implements Backend.
func (e *Embedded) Root(ctx context.Context) (types.LogRootV1, error) {
	var root types.LogRootV1
	tx, err := e.reg.LogStorage.SnapshotForTree(ctx, e.tree)
	if err != nil {
		return root, err
	}
	defer tx.Close()
	slr, err := tx.LatestSignedLogRoot(ctx)
	if err != nil {
		return root, err
	}
	if err := root.UnmarshalBinary(slr.LogRoot); err != nil {
		return root, err
	}
	return root, tx.Commit(ctx)
}

// Since implements Backend with one read snapshot for the head and leaves,
// read in chunks so the byte bound holds.
func (e *Embedded) Since(ctx context.Context, start, maxLeaves int64, maxBytes int) (types.LogRootV1, []*trillian.LogLeaf, error) {
	var root types.LogRootV1
	tx, err := e.reg.LogStorage.SnapshotForTree(ctx, e.tree)
	if err != nil {
		return root, nil, err
	}
	defer tx.Close()
	slr, err := tx.LatestSignedLogRoot(ctx)
	if err != nil {
		return root, nil, err
	}
	if err := root.UnmarshalBinary(slr.LogRoot); err != nil {
		return root, nil, err
	}
	end := min(int64(root.TreeSize), start+maxLeaves)
	var leaves []*trillian.LogLeaf
	bytes := 0
	for next := start; next < end && (len(leaves) == 0 || bytes < maxBytes); {
		got, err := tx.GetLeavesByRange(ctx, next, chunkLeaves(end-next, len(leaves), bytes, maxBytes))
		if err != nil {
			return root, nil, err
		}
		if len(got) == 0 {
			return root, nil, fmt.Errorf("no leaves at %d below tree size %d", next, root.TreeSize)
		}
		for _, l := range got {
			if len(leaves) > 0 && bytes+leafBytes(l) > maxBytes {
				return root, leaves, tx.Commit(ctx)
			}
			leaves = append(leaves, l)
			bytes += leafBytes(l)
		}
		next += int64(len(got))
	}
	return root, leaves, tx.Commit(ctx)
}

// chunkLeaves is how many of left leaves the next range read asks for:
// 64 at first, then as many as the bytes left allow at the average size
// read so far, so large entries stop at the byte bound without reading far
// past it, and small ones take few reads.
func chunkLeaves(left int64, read, bytes, maxBytes int) int64 {
	if read == 0 {
		return min(left, 64)
	}
	avg := max(1, bytes/read)
	return max(1, min(left, int64((maxBytes-bytes)/avg)+1))
}

// Close implements Backend.
func (e *Embedded) Close() error { return e.db.Close() }
