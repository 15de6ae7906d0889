package cosig

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"

	"github.com/stellaops/tlog/internal/c2sp"
	"github.com/stellaops/tlog/signer/client"
)

// A Cosigner makes the witness's cosignature lines. *Signer (a key in this
// process) and *Remote (a key held by the signer service) implement it.
type Cosigner interface {
	// Name is the cosigner name of the signature lines.
	Name() string
	// VerifierKey is the witness vkey that verifies the lines.
	VerifierKey() string
	// Sign returns one or more signature lines cosigning text. A local key
	// uses timestamp t; the signer service uses its own clock. An error
	// wrapping *UnavailableError means the key cannot sign for now (retry
	// later); any other error is a failure of this request.
	Sign(ctx context.Context, text []byte, t time.Time) ([]byte, error)
	// Ready reports whether Sign can be expected to work (nil), for the
	// witness's readiness check. It must be cheap: no signature.
	Ready(ctx context.Context) error
}

// UnavailableError means the cosigning key is out of reach for now: the
// signer service is down, overloaded (429, 503) or too slow. Retry after
// RetryAfter.
type UnavailableError struct {
	RetryAfter time.Duration
	Err        error
}

func (e *UnavailableError) Error() string { return "cosigning key unavailable: " + e.Err.Error() }
func (e *UnavailableError) Unwrap() error { return e.Err }

// DefaultRetryAfter is the Retry-After of an unavailable signer that gave
// none.
const DefaultRetryAfter = time.Second

// Remote cosigns through the signer service (POST /api/v1/signer/sign/
// cosignature), so the witness holds no private key. Every line the
// service returns is verified against the vkeys of the key's active
// versions, read at start-up, before it is used.
//
// Every failed call makes the service unavailable (*UnavailableError):
// the witness cannot cosign until the signer answers again, whether the
// cause is the network, the signer's pushback or a refusal (a revoked
// token is a configuration fault the operator must see in readiness).
type Remote struct {
	c       *client.Client
	key     string
	name    string
	vkey    string // newest active version: what the witness advertises
	verify  note.Verifiers
	timeout time.Duration
	slots   chan struct{} // one per call in flight

	probeMu  sync.Mutex // one readiness probe at a time
	mu       sync.Mutex // guards the fields below, never held across a call
	lastErr  error      // the last Sign failure, nil after a success
	failedAt time.Time  // when lastErr happened
	backOff  time.Time  // failedAt + the Retry-After of lastErr
	probedAt time.Time  // last Ready probe, cached for probeEvery
	probeErr error
}

// probeEvery is how long a readiness probe of the signer is reused.
const probeEvery = time.Second

// NewRemote looks key up in the signer's published keys: it must have the
// cosignature purpose, note name name and at least one active version.
// Each Sign takes at most timeout, waiting for the service included, and
// at most maxInFlight calls are in flight at once (more wait).
func NewRemote(ctx context.Context, c *client.Client, key, name string, timeout time.Duration, maxInFlight int) (*Remote, error) {
	ks, err := c.Keys(ctx)
	if err != nil {
		return nil, fmt.Errorf("signer keys: %w", err)
	}
	r := &Remote{c: c, key: key, name: name, timeout: timeout, slots: make(chan struct{}, max(1, maxInFlight))}
	var vs []note.Verifier
	for _, k := range ks.Keys {
		if k.Name != key {
			continue
		}
		if k.NoteName != name {
			return nil, fmt.Errorf("%w: signer key %q signs as %q, the witness is %q", ErrBadKey, key, k.NoteName, name)
		}
		for _, v := range k.Versions {
			if v.State != "active" || v.CosignatureVerifierKey == "" {
				continue
			}
			ver, err := fnote.NewVerifierForCosignatureV1(v.CosignatureVerifierKey)
			if err != nil {
				return nil, fmt.Errorf("%w: signer key %q version %d: %v", ErrBadKey, key, v.Version, err)
			}
			vs = append(vs, ver)
			r.vkey = v.CosignatureVerifierKey
		}
	}
	if len(vs) == 0 {
		return nil, fmt.Errorf("%w: the signer has no active cosignature key %q", ErrBadKey, key)
	}
	r.verify = note.VerifierList(vs...)
	return r, nil
}

// Name implements Cosigner.
func (r *Remote) Name() string { return r.name }

// VerifierKey implements Cosigner.
func (r *Remote) VerifierKey() string { return r.vkey }

// Sign implements Cosigner with one call to the signer service.
func (r *Remote) Sign(ctx context.Context, text []byte, _ time.Time) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	select {
	case r.slots <- struct{}{}:
		defer func() { <-r.slots }()
	case <-ctx.Done():
		return nil, &UnavailableError{RetryAfter: DefaultRetryAfter,
			Err: fmt.Errorf("no free signer slot within %v: %w", r.timeout, ctx.Err())}
	}
	resp, err := r.c.Cosign(ctx, r.key, string(text))
	if err != nil {
		return nil, r.failed(fmt.Errorf("signer cosignature: %w", err))
	}
	var out strings.Builder
	for _, line := range resp.Signatures {
		if !strings.HasSuffix(line, "\n") {
			line += "\n"
		}
		if _, err := c2sp.Open([]byte(string(text)+"\n"+line), r.verify); err != nil {
			return nil, fmt.Errorf("signer returned a cosignature that does not verify: %w", err)
		}
		out.WriteString(line)
	}
	if out.Len() == 0 {
		return nil, fmt.Errorf("signer returned no cosignature")
	}
	r.mu.Lock()
	r.lastErr = nil
	r.mu.Unlock()
	return []byte(out.String()), nil
}

// failed records a failed call and returns it as an *UnavailableError.
func (r *Remote) failed(err error) error {
	after := DefaultRetryAfter
	var ce *client.Error
	if errors.As(err, &ce) && ce.RetryAfter > 0 {
		after = ce.RetryAfter
	}
	now := time.Now()
	r.mu.Lock()
	r.lastErr, r.failedAt, r.backOff = err, now, now.Add(after)
	r.mu.Unlock()
	return &UnavailableError{RetryAfter: after, Err: err}
}

// Ready implements Cosigner. After a failed Sign it is an error for the
// Retry-After of the failure (the signer's, or DefaultRetryAfter), then
// until a probe finds the key available again: GET /api/v1/signer/keys (no
// authentication, no signature) lists the key with an available active
// version. Probes are reused for a second, so readiness checks cannot
// amplify into load on the signer; Sign never waits for a probe.
func (r *Remote) Ready(ctx context.Context) error {
	r.probeMu.Lock()
	defer r.probeMu.Unlock()
	r.mu.Lock()
	if r.lastErr != nil && time.Now().Before(r.backOff) {
		defer r.mu.Unlock()
		return r.lastErr
	}
	due := time.Since(r.probedAt) >= probeEvery || r.probedAt.Before(r.failedAt)
	r.mu.Unlock()
	if due {
		started := time.Now()
		err := r.probe(ctx)
		r.mu.Lock()
		r.probedAt, r.probeErr = started, err
		if err == nil && r.lastErr != nil && r.failedAt.Before(started) {
			r.lastErr = nil // the signer answers again
		}
		r.mu.Unlock()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.probeErr != nil {
		return r.probeErr
	}
	return r.lastErr
}

// probe checks that the signer answers and lists an available version of
// the key.
func (r *Remote) probe(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, min(r.timeout, 2*time.Second))
	defer cancel()
	ks, err := r.c.Keys(ctx)
	if err != nil {
		return fmt.Errorf("signer: %w", err)
	}
	for _, k := range ks.Keys {
		if k.Name != r.key {
			continue
		}
		for _, v := range k.Versions {
			if v.State == "active" && v.Available && v.CosignatureVerifierKey != "" {
				return nil
			}
		}
	}
	return fmt.Errorf("signer: no available active version of key %q", r.key)
}
