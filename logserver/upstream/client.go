package upstream

import (
	"bytes"
	"context"
	"crypto"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	rekorpb "github.com/sigstore/protobuf-specs/gen/pb-go/rekor/v1"
	"github.com/sigstore/rekor/pkg/generated/models"
	rverify "github.com/sigstore/rekor/pkg/verify"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"

	"github.com/stellaops/tlog/internal/retry"
	"golang.org/x/mod/sumdb/note"
	"google.golang.org/protobuf/encoding/protojson"
)

// Receipt is what the upstream recorded for an entry.
type Receipt struct {
	Index          int64  // its log index upstream; -1 if it did not say
	UUID           string // v1: the entry ID; v2: empty
	IntegratedTime int64  // v1: seconds since the epoch; v2: 0 (no SET)
	Verified       bool   // the answer was verified (see the package contract)
}

// unavailableError is an upstream that did not take the entry now: retry
// later (network error, 429, 5xx).
type unavailableError struct {
	status     int // 0: no answer
	retryAfter time.Duration
	msg        string
}

func (e *unavailableError) Error() string { return e.msg }

// refusedError is an upstream that will not take the entry (other 4xx), or
// an answer that does not verify: retrying would not help.
type refusedError struct {
	msg        string
	unverified bool // the upstream's answer did not verify
}

func (e *refusedError) Error() string { return e.msg }

// submitter sends one entry upstream. body is the original request, local
// the local canonical body (which the upstream's must equal).
type submitter interface {
	submit(ctx context.Context, body, local []byte) (Receipt, error)
}

// client is the HTTP part both APIs share.
type client struct {
	base *url.URL
	http *http.Client
}

func newClient(rawURL string, timeout time.Duration) (client, error) {
	u, err := url.Parse(strings.TrimSuffix(rawURL, "/"))
	if err != nil {
		return client{}, err
	}
	return client{base: u, http: &http.Client{Timeout: timeout}}, nil
}

// endpoint is path under the upstream's base URL.
func (c client) endpoint(path string) *url.URL {
	u := *c.base
	u.Path += path
	u.RawPath = ""
	return &u
}

// do sends a request and classifies transport failures and statuses that
// mean "later" as unavailableError.
func (c client) do(ctx context.Context, method string, u *url.URL, body []byte) (*http.Response, []byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return nil, nil, &refusedError{msg: err.Error()}
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, nil, &unavailableError{msg: fmt.Sprintf("%s %s: %v", method, u.Redacted(), err)}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
	if err != nil {
		return nil, nil, &unavailableError{msg: fmt.Sprintf("%s %s: reading the answer: %v", method, u.Redacted(), err)}
	}
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500 {
		return nil, nil, &unavailableError{status: resp.StatusCode, retryAfter: retry.After(resp.Header),
			msg: fmt.Sprintf("%s %s: %d %s", method, u.Redacted(), resp.StatusCode, snippet(data))}
	}
	return resp, data, nil
}

func snippet(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}

// v1Client submits to a Rekor v1 upstream.
type v1Client struct {
	client
	verifier signature.Verifier
}

// newV1 returns the client of the Rekor v1 log at rawURL whose public key
// is pemKey.
func newV1(rawURL string, pemKey []byte, timeout time.Duration) (*v1Client, error) {
	c, err := newClient(rawURL, timeout)
	if err != nil {
		return nil, err
	}
	pub, err := cryptoutils.UnmarshalPEMToPublicKey(pemKey)
	if err != nil {
		return nil, fmt.Errorf("upstream public key: %w", err)
	}
	v, err := signature.LoadVerifier(pub, crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("upstream public key: %w", err)
	}
	return &v1Client{client: c, verifier: v}, nil
}

func (c *v1Client) submit(ctx context.Context, body, local []byte) (Receipt, error) {
	resp, data, err := c.do(ctx, http.MethodPost, c.endpoint("/api/v1/log/entries"), body)
	if err != nil {
		return Receipt{}, err
	}
	switch resp.StatusCode {
	case http.StatusCreated:
	case http.StatusConflict:
		// Already there (an earlier attempt whose answer was lost, or
		// someone else's submission): read it back to record and verify it.
		// Rekor's Location is the entry's path (or a URL), resolved
		// against the upstream's host.
		loc := c.endpoint("/api/v1/log/entries/" + hex.EncodeToString(rfc6962.DefaultHasher.HashLeaf(local)))
		if l := resp.Header.Get("Location"); l != "" {
			ref, err := url.Parse(l)
			if err != nil {
				return Receipt{}, &refusedError{msg: fmt.Sprintf("upstream answered 409 with Location %q: %v", l, err)}
			}
			loc = c.base.ResolveReference(ref)
		}
		if resp, data, err = c.do(ctx, http.MethodGet, loc, nil); err != nil {
			return Receipt{}, err
		}
		if resp.StatusCode != http.StatusOK {
			return Receipt{}, &unavailableError{status: resp.StatusCode,
				msg: fmt.Sprintf("upstream answered 409 but GET %s answered %d %s", loc, resp.StatusCode, snippet(data))}
		}
	default:
		return Receipt{}, &refusedError{msg: fmt.Sprintf("upstream refused the entry: %d %s", resp.StatusCode, snippet(data))}
	}
	var le models.LogEntry
	if err := json.Unmarshal(data, &le); err != nil {
		return Receipt{}, &refusedError{msg: fmt.Sprintf("upstream answer is not a log entry: %v", err)}
	}
	if len(le) != 1 {
		return Receipt{}, &refusedError{msg: fmt.Sprintf("upstream answer holds %d entries, want 1", len(le))}
	}
	for uuid, e := range le {
		return c.check(ctx, uuid, &e, local)
	}
	panic("unreachable")
}

// check verifies an upstream v1 entry: our canonical body, its inclusion
// proof and checkpoint, its SET.
func (c *v1Client) check(ctx context.Context, uuid string, e *models.LogEntryAnon, local []byte) (Receipt, error) {
	b, _ := e.Body.(string)
	got, err := base64.StdEncoding.DecodeString(b)
	if err != nil || !bytes.Equal(got, local) {
		return Receipt{}, &refusedError{unverified: true, msg: "upstream answer: its canonical body differs from the local log's (another entry, or another canonicalisation)"}
	}
	if e.LogIndex == nil || e.IntegratedTime == nil || e.Verification == nil {
		return Receipt{}, &refusedError{msg: "upstream answer: no log index, integrated time or verification"}
	}
	if err := rverify.VerifyLogEntry(ctx, e, c.verifier); err != nil {
		return Receipt{}, &refusedError{unverified: true, msg: fmt.Sprintf("upstream answer does not verify with its configured key: %v", err)}
	}
	return Receipt{Index: *e.LogIndex, UUID: uuid, IntegratedTime: *e.IntegratedTime, Verified: true}, nil
}

// v2Client submits to a Rekor v2 upstream.
type v2Client struct {
	client
	verifier note.Verifier
	origin   string
}

// newV2 returns the client of the Rekor v2 log at rawURL whose checkpoint
// note verifier key is vkey.
func newV2(rawURL, vkey string, timeout time.Duration) (*v2Client, error) {
	c, err := newClient(rawURL, timeout)
	if err != nil {
		return nil, err
	}
	v, err := note.NewVerifier(strings.TrimSpace(vkey))
	if err != nil {
		return nil, fmt.Errorf("upstream vkey: %w", err)
	}
	return &v2Client{client: c, verifier: v, origin: v.Name()}, nil
}

func (c *v2Client) submit(ctx context.Context, body, local []byte) (Receipt, error) {
	resp, data, err := c.do(ctx, http.MethodPost, c.endpoint("/api/v2/log/entries"), body)
	if err != nil {
		return Receipt{}, err
	}
	switch resp.StatusCode {
	case http.StatusCreated, http.StatusOK:
	case http.StatusConflict:
		// AlreadyExists. rekor-tiles says so without a proof; this
		// appliance's v2 log adds X-Log-Index. Recorded, not verified.
		idx := int64(-1)
		if v, err := strconv.ParseInt(resp.Header.Get("X-Log-Index"), 10, 64); err == nil {
			idx = v
		}
		return Receipt{Index: idx}, nil
	default:
		return Receipt{}, &refusedError{msg: fmt.Sprintf("upstream refused the entry: %d %s", resp.StatusCode, snippet(data))}
	}
	var tle rekorpb.TransparencyLogEntry
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(data, &tle); err != nil {
		return Receipt{}, &refusedError{msg: fmt.Sprintf("upstream answer is not a TransparencyLogEntry: %v", err)}
	}
	if !bytes.Equal(tle.GetCanonicalizedBody(), local) {
		return Receipt{}, &refusedError{unverified: true, msg: "upstream answer: its canonical body differs from the local log's (another entry, or another canonicalisation)"}
	}
	if err := c.check(&tle, local); err != nil {
		return Receipt{}, &refusedError{unverified: true, msg: "upstream answer does not verify: " + err.Error()}
	}
	return Receipt{Index: tle.GetLogIndex(), Verified: true}, nil
}

// check verifies a v2 answer's inclusion proof against its checkpoint and
// the checkpoint's signature with the upstream's note key.
func (c *v2Client) check(tle *rekorpb.TransparencyLogEntry, local []byte) error {
	p := tle.GetInclusionProof()
	if p == nil || p.GetCheckpoint() == nil {
		return errors.New("no inclusion proof")
	}
	n, err := note.Open([]byte(p.GetCheckpoint().GetEnvelope()), note.VerifierList(c.verifier))
	if err != nil {
		return fmt.Errorf("checkpoint: %v", err)
	}
	lines := strings.SplitN(n.Text, "\n", 4)
	if len(lines) < 3 || lines[0] != c.origin {
		return fmt.Errorf("checkpoint origin %q, want %q", lines[0], c.origin)
	}
	size, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil || size != p.GetTreeSize() {
		return fmt.Errorf("checkpoint size %q, proof tree size %d", lines[1], p.GetTreeSize())
	}
	root, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || !bytes.Equal(root, p.GetRootHash()) {
		return errors.New("checkpoint root differs from the proof's")
	}
	leaf := rfc6962.DefaultHasher.HashLeaf(local)
	if err := proof.VerifyInclusion(rfc6962.DefaultHasher, uint64(p.GetLogIndex()), uint64(size), leaf, p.GetHashes(), root); err != nil {
		return fmt.Errorf("inclusion proof: %v", err)
	}
	return nil
}
