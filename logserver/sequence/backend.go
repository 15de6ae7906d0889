package sequence

import (
	"context"

	"github.com/google/trillian"
	"github.com/google/trillian/types"

	"github.com/stellaops/tlog/logserver/tree"
)

// Leaf is a leaf to queue: the canonical entry, its search keys (Trillian
// ExtraData) and its RFC 6962 leaf hash.
type Leaf struct {
	Value     []byte
	ExtraData []byte
	Hash      tree.Hash
}

// Backend is the Trillian tree the log writes to: embedded in this process
// (Embedded) or behind external Trillian gRPC servers (Remote).
//
// Contract: a leaf for which QueueLeaves answered OK is durably queued, with
// its ExtraData, and will be integrated; Root and Since reflect only
// integrated leaves, and Since returns each leaf's ExtraData.
type Backend interface {
	// TreeID is the Trillian tree ID.
	TreeID() int64
	// QueueLeaves queues leaves in one batch. dup[i] is true when leaf i
	// was already in the log or queue.
	QueueLeaves(ctx context.Context, leaves []Leaf) (dup []bool, err error)
	// Integrate runs one sequencing pass of at most limit leaves and returns
	// how many were integrated. Remote backends leave sequencing to the
	// external signer and return 0.
	Integrate(ctx context.Context, limit int) (int, error)
	// Sequences reports whether Integrate does work (embedded), so the log
	// knows whether to drive it or only to watch the tree head.
	Sequences() bool
	// Root returns the latest tree head.
	Root(ctx context.Context) (types.LogRootV1, error)
	// Since returns the latest tree head and the integrated leaves from
	// start on: [start, root.TreeSize), or a prefix of it of at most
	// maxLeaves leaves and, beyond its first leaf, at most maxBytes bytes
	// of values and extra data.
	Since(ctx context.Context, start, maxLeaves int64, maxBytes int) (types.LogRootV1, []*trillian.LogLeaf, error)
	// Close releases the backend's connections.
	Close() error
}

// leafBytes is what a leaf weighs against Since's byte bound.
func leafBytes(l *trillian.LogLeaf) int { return len(l.LeafValue) + len(l.ExtraData) }
