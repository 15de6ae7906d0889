// Package client is the Go client of the signer service, for the other
// components: the logserver (batched digest signing for SETs, checkpoint
// signing), the witness (cosignatures) and producers (DSSE). It depends on
// the standard library, package api and internal/service only (no cgo).
// Services configure a key of the signer with [Config] and make its client
// with [Open], which waits for a starting signer.
//
// Every method sends one HTTP request with the client's bearer token and
// returns the decoded answer, or an [*Error] carrying the service's status,
// error code and Retry-After. Nothing is retried here: signing is not
// idempotent from the audit trail's point of view, so the caller decides.
package client

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/stellaops/tlog/signer/api"
)

// Client talks to one signer service.
type Client struct {
	base  string
	token string
	hc    *http.Client
}

// New returns a client of the service at baseURL (e.g.
// "https://signer.internal:8090") that authenticates with a bearer token
// (empty: rely on the TLS client certificate configured in hc). hc nil
// means a client with a 60 s timeout.
func New(baseURL, token string, hc *http.Client) *Client {
	if hc == nil {
		hc = &http.Client{Timeout: 60 * time.Second}
	}
	return &Client{base: strings.TrimRight(baseURL, "/"), token: token, hc: hc}
}

// Error is a non-2xx answer of the service.
type Error struct {
	Status     int
	Code       string // e.g. "rate_limited", "unknown_key", "predicate_type_not_allowed"
	Message    string
	RequestID  string
	RetryAfter time.Duration // from Retry-After (the service sends it with every 429 and 503)
}

func (e *Error) Error() string {
	return fmt.Sprintf("signer: %d %s: %s (request %s)", e.Status, e.Code, e.Message, e.RequestID)
}

// Temporary reports whether the service pushed back rather than refused:
// 429 (the caller's quota: rate or concurrency) or 503 (the signer cannot
// sign for now: token lost or reconnecting, key unavailable, audit
// database down, shutting down). Both carry RetryAfter; the same request
// may succeed later. Callers that answer their own clients should pass
// both on as 503 with Retry-After, not as 500.
func (e *Error) Temporary() bool {
	return e.Status == http.StatusTooManyRequests || e.Status == http.StatusServiceUnavailable
}

// do posts in (nil: GET) to path and decodes the answer into out.
func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("signer: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	if err != nil {
		return fmt.Errorf("signer: reading answer: %w", err)
	}
	if resp.StatusCode/100 != 2 {
		e := &Error{Status: resp.StatusCode}
		var ae api.Error
		if json.Unmarshal(b, &ae) == nil {
			e.Code, e.Message, e.RequestID = ae.Code, ae.Message, ae.RequestID
		} else {
			e.Message = strings.TrimSpace(string(b))
		}
		if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil {
			e.RetryAfter = time.Duration(s) * time.Second
		}
		return e
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("signer: decoding answer: %w", err)
	}
	return nil
}

// SignDSSE asks for a DSSE envelope (and a bundle if req.Bundle).
func (c *Client) SignDSSE(ctx context.Context, req api.DSSERequest) (*api.DSSEResponse, error) {
	var out api.DSSEResponse
	return &out, c.do(ctx, http.MethodPost, api.PathDSSE, req, &out)
}

// SignDigests signs SHA-256 digests with key (version 0: the newest
// active one) in one call.
func (c *Client) SignDigests(ctx context.Context, key string, version int, digests [][sha256.Size]byte) (*api.DigestsResponse, error) {
	req := api.DigestsRequest{Key: key, Version: version, Digests: make([][]byte, len(digests))}
	for i := range digests {
		req.Digests[i] = digests[i][:]
	}
	var out api.DigestsResponse
	if err := c.do(ctx, http.MethodPost, api.PathDigests, req, &out); err != nil {
		return nil, err
	}
	if len(out.Signatures) != len(digests) {
		return nil, fmt.Errorf("signer: %d signatures for %d digests", len(out.Signatures), len(digests))
	}
	return &out, nil
}

// SignCheckpoint returns the signature lines of every active version of
// key over the checkpoint text (which ends in a newline).
func (c *Client) SignCheckpoint(ctx context.Context, key, text string) (*api.NoteResponse, error) {
	var out api.NoteResponse
	return &out, c.do(ctx, http.MethodPost, api.PathCheckpoint, api.NoteRequest{Key: key, Note: text}, &out)
}

// Cosign returns cosignature/v1 lines of key over the checkpoint text.
func (c *Client) Cosign(ctx context.Context, key, text string) (*api.NoteResponse, error) {
	var out api.NoteResponse
	return &out, c.do(ctx, http.MethodPost, api.PathCosignature, api.NoteRequest{Key: key, Note: text}, &out)
}

// Keys lists the service's public keys.
func (c *Client) Keys(ctx context.Context) (*api.KeysResponse, error) {
	var out api.KeysResponse
	return &out, c.do(ctx, http.MethodGet, api.PathKeys, nil, &out)
}

// DigestSigner signs batches of digests with one pinned version of a key.
// It implements the logserver's logkey.Signer:
//
//	Public() crypto.PublicKey
//	SignDigests(ctx, [][32]byte) ([][]byte, error)
type DigestSigner struct {
	c        *Client
	key      string
	version  int
	keyID    string
	pub      crypto.PublicKey
	maxBatch int
}

// MaxBatch is the batch size DigestSigner splits larger calls into; it
// must not exceed the service's max_digests (default 4096).
const MaxBatch = 4096

// NewDigestSigner looks key up with [Client.Keys] and pins its newest
// active, available version, so that every signature matches Public()
// even while a rotation starts. Create a new one after a rotation.
func (c *Client) NewDigestSigner(ctx context.Context, key string) (*DigestSigner, error) {
	ks, err := c.Keys(ctx)
	if err != nil {
		return nil, err
	}
	for _, k := range ks.Keys {
		if k.Name != key {
			continue
		}
		var best *api.KeyVersionInfo
		for i := range k.Versions {
			v := &k.Versions[i]
			if v.State != "active" || !v.Available {
				continue
			}
			if best == nil || notBefore(v).After(notBefore(best)) || (notBefore(v).Equal(notBefore(best)) && v.Version > best.Version) {
				best = v
			}
		}
		if best == nil {
			return nil, fmt.Errorf("signer: key %q has no active, available version", key)
		}
		block, _ := pem.Decode([]byte(best.PublicKey))
		if block == nil {
			return nil, fmt.Errorf("signer: key %q version %d: no PEM public key", key, best.Version)
		}
		pub, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("signer: key %q version %d: %w", key, best.Version, err)
		}
		sum := sha256.Sum256(block.Bytes)
		if hex.EncodeToString(sum[:]) != best.KeyID {
			return nil, fmt.Errorf("signer: key %q version %d: key id does not match the public key", key, best.Version)
		}
		return &DigestSigner{c: c, key: key, version: best.Version, keyID: best.KeyID, pub: pub, maxBatch: MaxBatch}, nil
	}
	return nil, fmt.Errorf("signer: no key %q", key)
}

func notBefore(v *api.KeyVersionInfo) time.Time {
	if v.NotBefore == nil {
		return time.Time{}
	}
	return *v.NotBefore
}

// Public is the pinned version's public key.
func (d *DigestSigner) Public() crypto.PublicKey { return d.pub }

// Version is the pinned key version.
func (d *DigestSigner) Version() int { return d.version }

// SignDigests returns one ASN.1 DER ECDSA signature per digest, in order,
// or an error and no signatures. Batches larger than MaxBatch take several
// calls.
func (d *DigestSigner) SignDigests(ctx context.Context, digests [][sha256.Size]byte) ([][]byte, error) {
	out := make([][]byte, 0, len(digests))
	for len(digests) > 0 {
		n := min(len(digests), d.maxBatch)
		resp, err := d.c.SignDigests(ctx, d.key, d.version, digests[:n])
		if err != nil {
			return nil, err
		}
		if resp.KeyID != d.keyID {
			return nil, errors.New("signer: digests signed by another key than the pinned one")
		}
		out = append(out, resp.Signatures...)
		digests = digests[n:]
	}
	return out, nil
}
