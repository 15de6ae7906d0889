package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/stellaops/tlog/witness/store"
)

// Wire protocol on the socket: JSON over HTTP/1.1.
//
//	GET  /logs                                  → []LogStatus
//	POST /logs          {"origin","vkeys"}      → 204
//	POST /logs/disable  {"origin"}              → 204
//	POST /logs/enable   {"origin"}              → 204
//
// Errors are {"error": message, "kind": "exists"|"not_found"|"invalid"|""}.

type logRequest struct {
	Origin string   `json:"origin"`
	VKeys  []string `json:"vkeys,omitempty"`
}

type errorBody struct {
	Error string `json:"error"`
	Kind  string `json:"kind"`
}

// Handler serves r on the admin socket.
func Handler(r Registry) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /logs", func(w http.ResponseWriter, req *http.Request) {
		logs, err := r.Logs(req.Context())
		if err != nil {
			writeErr(w, err)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(logs)
	})
	withBody := func(f func(context.Context, logRequest) error) http.HandlerFunc {
		return func(w http.ResponseWriter, req *http.Request) {
			var lr logRequest
			if err := json.NewDecoder(http.MaxBytesReader(w, req.Body, 1<<20)).Decode(&lr); err != nil {
				writeErr(w, fmt.Errorf("%w: %v", ErrInvalid, err))
				return
			}
			if err := f(req.Context(), lr); err != nil {
				writeErr(w, err)
				return
			}
			w.WriteHeader(http.StatusNoContent)
		}
	}
	mux.Handle("POST /logs", withBody(func(ctx context.Context, lr logRequest) error {
		return r.AddLog(ctx, lr.Origin, lr.VKeys)
	}))
	mux.Handle("POST /logs/disable", withBody(func(ctx context.Context, lr logRequest) error {
		return r.SetDisabled(ctx, lr.Origin, true)
	}))
	mux.Handle("POST /logs/enable", withBody(func(ctx context.Context, lr logRequest) error {
		return r.SetDisabled(ctx, lr.Origin, false)
	}))
	return mux
}

func writeErr(w http.ResponseWriter, err error) {
	code, kind := http.StatusInternalServerError, ""
	switch {
	case errors.Is(err, store.ErrLogExists):
		code, kind = http.StatusConflict, "exists"
	case errors.Is(err, store.ErrLogNotFound):
		code, kind = http.StatusNotFound, "not_found"
	case errors.Is(err, ErrInvalid):
		code, kind = http.StatusBadRequest, "invalid"
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(errorBody{Error: err.Error(), Kind: kind})
}

// Listen creates the admin socket at path, replacing a stale socket file.
// The socket's directory must be one only this process's user can enter
// (owned by it, no group or other permission bits): Listen creates it mode
// 0700 if missing and refuses any other, so no other local user can reach
// the socket whatever its own mode (which is 0600 as well). Call it only
// while holding the store (so no other server owns the socket).
func Listen(path string) (net.Listener, error) {
	if err := privateDir(filepath.Dir(path)); err != nil {
		return nil, fmt.Errorf("admin socket %s: %w", path, err)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("admin socket %s exists and is not a socket", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, err
		}
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}

// privateDir makes sure dir exists, is a directory (not a symlink), is
// owned by this process's user and has no group or other permissions.
func privateDir(dir string) error {
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory", dir)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return fmt.Errorf("directory %s has mode %04o: other users could reach the socket; use a directory of mode 0700", dir, perm)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Geteuid() {
		return fmt.Errorf("directory %s is owned by uid %d, not by the witness's uid %d", dir, st.Uid, os.Geteuid())
	}
	return nil
}

// Client is a Registry reached over the admin socket of a running server.
type Client struct {
	hc *http.Client
}

// Dial returns a client for the admin socket at path. It does not connect
// until the first call.
func Dial(path string) *Client {
	return &Client{hc: &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		}},
	}}
}

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://witness-admin"+path, body)
	if err != nil {
		return err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("admin socket: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		var eb errorBody
		json.NewDecoder(resp.Body).Decode(&eb)
		switch eb.Kind {
		case "exists":
			return &remoteError{eb.Error, store.ErrLogExists}
		case "not_found":
			return &remoteError{eb.Error, store.ErrLogNotFound}
		case "invalid":
			return &remoteError{eb.Error, ErrInvalid}
		}
		return fmt.Errorf("admin socket: %s: %s", resp.Status, eb.Error)
	}
	if out != nil {
		return json.NewDecoder(resp.Body).Decode(out)
	}
	return nil
}

// AddLog implements Registry.
func (c *Client) AddLog(ctx context.Context, origin string, vkeys []string) error {
	return c.do(ctx, http.MethodPost, "/logs", logRequest{Origin: origin, VKeys: vkeys}, nil)
}

// Logs implements Registry.
func (c *Client) Logs(ctx context.Context) ([]LogStatus, error) {
	var out []LogStatus
	err := c.do(ctx, http.MethodGet, "/logs", nil, &out)
	return out, err
}

// SetDisabled implements Registry.
func (c *Client) SetDisabled(ctx context.Context, origin string, disabled bool) error {
	p := "/logs/enable"
	if disabled {
		p = "/logs/disable"
	}
	return c.do(ctx, http.MethodPost, p, logRequest{Origin: origin}, nil)
}

// remoteError carries the server's message and matches its sentinel.
type remoteError struct {
	msg  string
	kind error
}

func (e *remoteError) Error() string { return e.msg }
func (e *remoteError) Unwrap() error { return e.kind }
