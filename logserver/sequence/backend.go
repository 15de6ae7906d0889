package sequence

import (
	"context"

	"github.com/google/trillian"
	"github.com/google/trillian/types"
)

// Backend is the Trillian tree the log writes to: embedded in this process
// (Embedded) or behind external Trillian gRPC servers (Remote).
//
// Contract: a leaf for which QueueLeaves answered OK is durably queued and
// will be integrated; Root and Leaves reflect only integrated leaves.
type Backend interface {
	// TreeID is the Trillian tree ID.
	TreeID() int64
	// QueueLeaves queues leaf values (with their RFC 6962 leaf hashes) in
	// one batch. dup[i] is true when leaf i was already in the log or queue.
	QueueLeaves(ctx context.Context, values [][]byte, hashes [][]byte) (dup []bool, err error)
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
	// start on: all of [start, root.TreeSize), or the first max of them.
	Since(ctx context.Context, start, max int64) (types.LogRootV1, []*trillian.LogLeaf, error)
	// Close releases the backend's connections.
	Close() error
}
