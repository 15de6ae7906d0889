package witnessing

import (
	"context"
	"errors"
	"time"
)

// ErrNoCheckpoint is what Store.LatestCheckpoint returns (or wraps) when no
// C2SP checkpoint was ever published.
var ErrNoCheckpoint = errors.New("witnessing: no checkpoint published")

// Store keeps every published C2SP checkpoint version and the last size
// of each witness. The logserver implements it on MySQL (sqlstore:
// checkpoints one row per call, never updated or deleted; a tree size may
// be saved several times, with more cosignatures each time).
type Store interface {
	// WitnessSizes returns the last saved size of each witness, by the
	// witness's vkey (absent: never saved).
	WitnessSizes(ctx context.Context) (map[string]int64, error)
	// SaveWitnessSize durably records the size a witness cosigned or
	// reported, replacing the previous one.
	SaveWitnessSize(ctx context.Context, vkey string, size int64) error
	// SaveCheckpoint durably records a published version: tree size, root
	// hash and the signed note (log signature plus cosignatures).
	SaveCheckpoint(ctx context.Context, size int64, root [32]byte, note []byte) error
	// LatestCheckpoint returns the last saved version of the largest size,
	// or ErrNoCheckpoint.
	LatestCheckpoint(ctx context.Context) (StoredCheckpoint, error)
}

// StoredCheckpoint is a saved version.
type StoredCheckpoint struct {
	Size    int64
	Root    [32]byte
	Note    []byte
	Created time.Time // zero if unknown
}
