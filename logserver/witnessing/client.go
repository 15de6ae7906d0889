package witnessing

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/stellaops/tlog/internal/c2sp"
	"github.com/stellaops/tlog/internal/retry"
)

// maxResponseBytes caps what is read of a witness response.
const maxResponseBytes = 64 << 10

// client is the c2sp.org/tlog-witness client of one witness: it sends one
// add-checkpoint request and interprets the answer. It keeps no state; the
// Feeder decides what to send and when.
type client struct {
	w       *PolicyWitness
	addURL  string
	hc      *http.Client
	timeout time.Duration // one request
	skew    time.Duration // accepted cosignature timestamp distance from our clock
}

func newClient(w *PolicyWitness, hc *http.Client, timeout, skew time.Duration) *client {
	return &client{w: w, addURL: w.URL + "/add-checkpoint", hc: hc, timeout: timeout, skew: skew}
}

// conflictError is a 409: the witness's latest cosigned size is size.
type conflictError struct{ size int64 }

func (e *conflictError) Error() string { return fmt.Sprintf("409: the witness is at size %d", e.size) }

// witnessError is a failed request, with its outcome label.
type witnessError struct {
	outcome    string
	retryAfter time.Duration // from Retry-After, 0 if none
	err        error
}

func (e *witnessError) Error() string { return e.err.Error() }

func werr(outcome string, format string, a ...any) *witnessError {
	return &witnessError{outcome: outcome, err: fmt.Errorf(format, a...)}
}

// addCheckpoint sends the log-signed note (whose text is text) from old
// with the consistency proof, and returns the witness's verified
// cosignature line, or a *conflictError (409), or a *witnessError.
func (c *client) addCheckpoint(ctx context.Context, old int64, proof [][32]byte, signed, text []byte) ([]byte, error) {
	body, err := c2sp.AddCheckpoint{OldSize: uint64(old), Proof: proof, Checkpoint: signed}.Marshal()
	if err != nil {
		return nil, werr(OutcomeError, "building the request from size %d: %v", old, err)
	}
	status, hdr, resp, err := c.post(ctx, body)
	if err != nil {
		return nil, werr(OutcomeUnavailable, "%v", err)
	}
	switch {
	case status == http.StatusOK:
		line, err := c.verifyCosignature(text, resp, time.Now())
		if err != nil {
			return nil, werr(OutcomeBadResponse, "%v", err)
		}
		return line, nil
	case status == http.StatusConflict:
		mt, _, err := mime.ParseMediaType(hdr.Get("Content-Type"))
		if err != nil || mt != c2sp.SizeContentType {
			return nil, werr(OutcomeBadResponse, "409 with Content-Type %q, want %s", hdr.Get("Content-Type"), c2sp.SizeContentType)
		}
		size, err := c2sp.ParseSizeBody(resp)
		if err != nil || size > 1<<63-1 {
			return nil, werr(OutcomeBadResponse, "409 body %s is not a tree size", snippet(resp))
		}
		return nil, &conflictError{size: int64(size)}
	case status == http.StatusTooManyRequests:
		return nil, &witnessError{outcome: OutcomeRateLimited, retryAfter: retry.After(hdr),
			err: fmt.Errorf("429 rate limited: %s", snippet(resp))}
	case status == http.StatusUnprocessableEntity:
		return nil, werr(OutcomeInconsistent, "422: the witness finds the checkpoint inconsistent with size %d: %s", old, snippet(resp))
	case status >= 400 && status < 500:
		return nil, werr(OutcomeRejected, "%d %s: %s", status, http.StatusText(status), snippet(resp))
	default:
		return nil, &witnessError{outcome: OutcomeUnavailable, retryAfter: retry.After(hdr),
			err: fmt.Errorf("%d %s: %s", status, http.StatusText(status), snippet(resp))}
	}
}

func (c *client) post(ctx context.Context, body []byte) (int, http.Header, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.addURL, bytes.NewReader(body))
	if err != nil {
		return 0, nil, nil, err
	}
	req.Header.Set("Content-Type", "text/plain; charset=utf-8")
	req.Header.Set("User-Agent", "stella-logserver-witnessing/1")
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	if err != nil {
		return 0, nil, nil, fmt.Errorf("reading the %d response: %w", resp.StatusCode, err)
	}
	return resp.StatusCode, resp.Header, data, nil
}

// verifyCosignature finds the witness's cosignature/v1 line in a 200
// add-checkpoint response and verifies it over text. Lines of other keys
// (e.g. the same witness's ML-DSA key) are ignored; a line of the witness's
// key that does not verify, a zero timestamp or one farther than the skew
// from now is an error. It returns the line, newline included.
func (c *client) verifyCosignature(text, body []byte, now time.Time) ([]byte, error) {
	if len(body) == 0 || body[len(body)-1] != '\n' {
		return nil, fmt.Errorf("200 response %s is not newline-terminated signature lines", snippet(body))
	}
	var found []byte
	for _, line := range bytes.SplitAfter(body, []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		name, id, sig, err := c2sp.ParseSignatureLine(bytes.TrimSuffix(line, []byte("\n")))
		if err != nil {
			return nil, fmt.Errorf("200 response: %v", err)
		}
		if name != c.w.KeyName || id != c.w.KeyID {
			continue
		}
		ts, err := c2sp.CosignatureTime(sig)
		if err != nil {
			return nil, fmt.Errorf("cosignature from %s: %v", name, err)
		}
		if d := ts.Sub(now); d > c.skew || d < -c.skew {
			return nil, fmt.Errorf("cosignature timestamp %d is %v from our clock (max %v): clock skew?", ts.Unix(), d.Round(time.Second), c.skew)
		}
		if !c.w.verifier.Verify(text, sig) {
			return nil, fmt.Errorf("cosignature from %s+%08x does not verify over the checkpoint", name, c.w.KeyID)
		}
		if found == nil {
			found = line
		}
	}
	if found == nil {
		return nil, fmt.Errorf("no cosignature from the policy key %s+%08x in the response", c.w.KeyName, c.w.KeyID)
	}
	return found, nil
}

func snippet(b []byte) string {
	const max = 200
	s := strings.TrimSpace(string(b))
	if len(s) > max {
		s = s[:max] + "…"
	}
	return strconv.Quote(s)
}
