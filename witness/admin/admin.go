// Package admin manages the registry of witnessed logs: add, list, disable,
// enable. Local works on an open store; while the server runs it holds the
// store's lock, so the server also serves the same operations on a Unix
// socket (Handler) and the command line reaches them with Dial. Either way a
// change is durable when the call returns, and the running server applies
// it to the next request: it reads the registry from the store on each
// add-checkpoint.
package admin

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/stellaops/tlog/internal/notekey"
	"github.com/stellaops/tlog/witness/store"
)

// ErrInvalid reports a log definition that does not validate.
var ErrInvalid = errors.New("invalid log definition")

// Registry is the set of admin operations.
type Registry interface {
	// AddLog registers an enabled log; store.ErrLogExists if the origin is taken.
	AddLog(ctx context.Context, origin string, vkeys []string) error
	// Logs lists every log with its latest cosigned size.
	Logs(ctx context.Context) ([]LogStatus, error)
	// SetDisabled disables or re-enables a log; store.ErrLogNotFound if unknown.
	SetDisabled(ctx context.Context, origin string, disabled bool) error
}

// LogStatus describes a registered log.
type LogStatus struct {
	Origin   string    `json:"origin"`
	VKeys    []string  `json:"vkeys"`
	Disabled bool      `json:"disabled"`
	Source   string    `json:"source"`
	Added    time.Time `json:"added"`
	// Cosigned is false until the witness cosigns a checkpoint; Size is then
	// the latest cosigned size.
	Cosigned bool   `json:"cosigned"`
	Size     uint64 `json:"size"`
}

// Local implements Registry on an open store.
type Local struct {
	Store *store.Store
	Now   func() time.Time // nil: time.Now
}

// AddLog validates and stores a new log with source "admin".
func (l *Local) AddLog(_ context.Context, origin string, vkeys []string) error {
	if _, err := notekey.LogVerifiers(origin, vkeys); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	now := time.Now
	if l.Now != nil {
		now = l.Now
	}
	return l.Store.AddLog(store.Log{Origin: origin, VerifierKeys: vkeys, Source: store.SourceAdmin, Added: now().UTC()})
}

// Logs lists the registry.
func (l *Local) Logs(context.Context) ([]LogStatus, error) {
	logs, err := l.Store.Logs()
	if err != nil {
		return nil, err
	}
	out := make([]LogStatus, 0, len(logs))
	for _, g := range logs {
		s := LogStatus{Origin: g.Origin, VKeys: g.VerifierKeys, Disabled: g.Disabled, Source: g.Source, Added: g.Added}
		c, err := l.Store.Checkpoint(store.ID(g.Origin))
		switch {
		case err == nil:
			s.Cosigned, s.Size = true, c.Size
		case !errors.Is(err, store.ErrNoCheckpoint):
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

// SetDisabled flips a log's disabled flag.
func (l *Local) SetDisabled(_ context.Context, origin string, disabled bool) error {
	return l.Store.SetDisabled(origin, disabled)
}
