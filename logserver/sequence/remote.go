package sequence

import (
	"context"
	"fmt"

	"github.com/google/trillian"
	"github.com/google/trillian/client"
	"github.com/google/trillian/types"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

// Remote talks to external Trillian log servers over gRPC; their own log
// signer sequences the tree, so Integrate does nothing and the log watches
// the tree head instead.
type Remote struct {
	conn   *grpc.ClientConn
	log    trillian.TrillianLogClient
	treeID int64
}

// DialRemote connects to the Trillian log server at addr. If treeID is 0 a
// new tree is created (Admin API on the same address) and initialised.
// maxRecvBytes bounds one gRPC answer (range reads): it must hold the
// largest leaf, so it is at least twice maxEntryBytes.
func DialRemote(ctx context.Context, addr string, treeID int64, maxEntryBytes int) (*Remote, error) {
	recv := max(64<<20, 2*maxEntryBytes+1<<20)
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(recv)))
	if err != nil {
		return nil, fmt.Errorf("trillian %s: %w", addr, err)
	}
	r := &Remote{conn: conn, log: trillian.NewTrillianLogClient(conn), treeID: treeID}
	if treeID == 0 {
		t, err := client.CreateAndInitTree(ctx, &trillian.CreateTreeRequest{Tree: &trillian.Tree{
			TreeState:       trillian.TreeState_ACTIVE,
			TreeType:        trillian.TreeType_LOG,
			DisplayName:     "stella-rekor",
			MaxRootDuration: durationpb.New(0),
		}}, trillian.NewTrillianAdminClient(conn), r.log)
		if err != nil {
			conn.Close()
			return nil, fmt.Errorf("create tree on %s: %w", addr, err)
		}
		r.treeID = t.TreeId
	}
	if _, err := r.Root(ctx); err != nil {
		conn.Close()
		return nil, fmt.Errorf("tree %d on %s: %w", r.treeID, addr, err)
	}
	return r, nil
}

// TreeID implements Backend.
func (r *Remote) TreeID() int64 { return r.treeID }

// Sequences implements Backend: the external signer sequences.
func (r *Remote) Sequences() bool { return false }

// QueueLeaves implements Backend with concurrent QueueLeaf RPCs (the v1
// Trillian API has no batch queue RPC).
func (r *Remote) QueueLeaves(ctx context.Context, leaves []Leaf) ([]bool, error) {
	dup := make([]bool, len(leaves))
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(32)
	for i := range leaves {
		g.Go(func() error {
			resp, err := r.log.QueueLeaf(ctx, &trillian.QueueLeafRequest{LogId: r.treeID,
				Leaf: &trillian.LogLeaf{LeafValue: leaves[i].Value, ExtraData: leaves[i].ExtraData}})
			if err != nil {
				return err
			}
			if st := resp.GetQueuedLeaf().GetStatus(); st != nil {
				switch codes.Code(st.GetCode()) {
				case codes.OK:
				case codes.AlreadyExists:
					dup[i] = true
				default:
					return fmt.Errorf("queue leaf: %s", st.GetMessage())
				}
			}
			return nil
		})
	}
	return dup, g.Wait()
}

// Integrate implements Backend: nothing to do.
func (r *Remote) Integrate(context.Context, int) (int, error) { return 0, nil }

// Root implements Backend.
func (r *Remote) Root(ctx context.Context) (types.LogRootV1, error) {
	var root types.LogRootV1
	resp, err := r.log.GetLatestSignedLogRoot(ctx, &trillian.GetLatestSignedLogRootRequest{LogId: r.treeID})
	if err != nil {
		return root, err
	}
	return root, root.UnmarshalBinary(resp.GetSignedLogRoot().GetLogRoot())
}

// Since implements Backend: the head first, then the leaves below it, in
// range reads sized like the embedded backend's; a read whose answer
// exceeds the gRPC limit is retried with half as many leaves.
func (r *Remote) Since(ctx context.Context, start, maxLeaves int64, maxBytes int) (types.LogRootV1, []*trillian.LogLeaf, error) {
	root, err := r.Root(ctx)
	if err != nil {
		return root, nil, err
	}
	end := min(int64(root.TreeSize), start+maxLeaves)
	var leaves []*trillian.LogLeaf
	bytes := 0
	for next := start; next < end && (len(leaves) == 0 || bytes < maxBytes); {
		count := chunkLeaves(end-next, len(leaves), bytes, maxBytes)
		if len(leaves) == 0 {
			count = min(count, 16)
		}
		resp, err := r.log.GetLeavesByRange(ctx, &trillian.GetLeavesByRangeRequest{LogId: r.treeID, StartIndex: next, Count: count})
		for status.Code(err) == codes.ResourceExhausted && count > 1 {
			count /= 2
			resp, err = r.log.GetLeavesByRange(ctx, &trillian.GetLeavesByRangeRequest{LogId: r.treeID, StartIndex: next, Count: count})
		}
		if err != nil {
			return root, nil, err
		}
		if len(resp.GetLeaves()) == 0 {
			return root, nil, fmt.Errorf("no leaves at %d below tree size %d", next, root.TreeSize)
		}
		for _, l := range resp.GetLeaves() {
			if len(leaves) > 0 && bytes+leafBytes(l) > maxBytes {
				return root, leaves, nil
			}
			leaves = append(leaves, l)
			bytes += leafBytes(l)
		}
		next += int64(len(resp.GetLeaves()))
	}
	return root, leaves, nil
}

// Close implements Backend.
func (r *Remote) Close() error { return r.conn.Close() }
