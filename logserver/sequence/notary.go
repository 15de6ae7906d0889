package sequence

import (
	"context"

	"github.com/stellaops/tlog/logserver/store"
	"github.com/stellaops/tlog/logserver/tree"
)

// Notary is the log personality: what is signed when a pass is published.
// Rekor v1 (NewRekor) signs a SET per entry and a Rekor checkpoint; a
// personality without per-entry signatures (a tiles log with an Ed25519
// checkpoint key) returns no SETs. The pipeline, the store and the guard
// are the same for every personality.
type Notary interface {
	// Name identifies the log for the published-head records (with the
	// key): records carry the tree, so a new tree under the same name and
	// key is refused.
	Name() string
	// KeyID identifies the signing key (SHA-256 of its public form).
	KeyID() [32]byte
	// Format is the checkpoint format stored with the checkpoints.
	Format() string
	// Sign signs a pass: sets[i] is entries[i]'s signature (sets is nil if
	// the personality signs no entries) and note the checkpoint of (size,
	// root) of treeID. Every returned signature must be verified under the
	// key: nothing unverified is ever stored.
	Sign(ctx context.Context, treeID int64, entries []store.Entry, size int64, root tree.Hash) (sets [][]byte, note []byte, err error)
	// CheckNote returns an error wrapping ErrKeyChanged if a stored
	// checkpoint note was not signed by this key.
	CheckNote(note []byte) error
}
