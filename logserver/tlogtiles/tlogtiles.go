// Package tlogtiles serves a log as C2SP tlog-tiles (c2sp.org/tlog-tiles):
// <prefix>checkpoint, <prefix>tile/<L>/<N>[.p/<W>] and
// <prefix>tile/entries/<N>[.p/<W>], plus <prefix>checkpoints/<size>, every
// checkpoint the log ever published, by tree size (auditors compare heads
// over time). It reads through a Source and never touches Trillian or the
// signer.
//
// Caching: tiles and entry bundles, full or partial, are immutable (a
// partial resource of width W never changes) and are served with a
// year-long immutable Cache-Control; checkpoints with no-cache.
// Errors are mapped to HTTP status here, in one place.
package tlogtiles

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
)

// ErrNotFound is what a Source returns (or wraps) for a resource the
// published log does not have (yet): 404.
var ErrNotFound = errors.New("tlogtiles: not found")

// ErrNoCheckpoint is what Source.Checkpoint returns before the first
// checkpoint is published: 503 with Retry-After.
var ErrNoCheckpoint = errors.New("tlogtiles: no checkpoint published yet")

// ErrUnservable wraps a resource that exists but cannot be encoded (an
// entry bundle holding an entry over 65535 bytes): 500 with the reason.
var ErrUnservable = errors.New("tlogtiles: resource cannot be served")

// Source is what the handler reads. Its contract: everything it returns is
// part of the published log (covered by a checkpoint already stored), so
// tiles and bundles never change once returned; Tile and Bundle answer for
// every width up to what the published tree holds, a partial width being a
// prefix of the full resource.
type Source interface {
	// Checkpoint returns the newest published checkpoint (a signed note),
	// or ErrNoCheckpoint.
	Checkpoint(ctx context.Context) ([]byte, error)
	// CheckpointAt returns the checkpoint published at tree size n (its
	// latest version), or ErrNotFound.
	CheckpointAt(ctx context.Context, n int64) ([]byte, error)
	// Tile returns the first width (1..256) hashes of tile (level, index),
	// 32 bytes each, or ErrNotFound if the published tree has fewer.
	Tile(ctx context.Context, level int, index int64, width int) ([]byte, error)
	// Bundle returns the first width (1..256) entries of entry bundle
	// index in bundle encoding, or ErrNotFound if the published log has
	// fewer.
	Bundle(ctx context.Context, index int64, width int) ([]byte, error)
}

// Server serves one log's tiles.
type Server struct {
	src    Source
	prefix string
	log    *slog.Logger
}

// New returns the server of src under prefix, which must start and end
// with "/" ("/" serves /checkpoint and /tile/ at the root).
func New(src Source, prefix string, logger *slog.Logger) (*Server, error) {
	if err := CheckPrefix(prefix); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.Default()
	}
	return &Server{src: src, prefix: prefix, log: logger}, nil
}

// CheckPrefix validates a URL path prefix for New.
func CheckPrefix(prefix string) error {
	if !strings.HasPrefix(prefix, "/") || !strings.HasSuffix(prefix, "/") || strings.ContainsAny(prefix, "{} \t\n") || strings.Contains(prefix, "//") {
		return fmt.Errorf("tiles prefix %q: must start and end with '/'", prefix)
	}
	return nil
}

// Register adds the server's routes (GET and HEAD) to mux.
func (s *Server) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET "+s.prefix+"checkpoint", s.checkpoint)
	mux.HandleFunc("GET "+s.prefix+"checkpoints/{size}", s.checkpointAt)
	mux.HandleFunc("GET "+s.prefix+"tile/", s.tile)
}

const (
	immutable = "public, max-age=31536000, immutable"
	mutable   = "no-cache"
)

func (s *Server) checkpoint(w http.ResponseWriter, r *http.Request) {
	cp, err := s.src.Checkpoint(r.Context())
	s.answer(w, r, "text/plain; charset=utf-8", mutable, cp, err)
}

func (s *Server) checkpointAt(w http.ResponseWriter, r *http.Request) {
	n, err := canonicalInt(r.PathValue("size"), 1<<62)
	if err != nil {
		s.answer(w, r, "", "", nil, err)
		return
	}
	cp, err := s.src.CheckpointAt(r.Context(), n)
	s.answer(w, r, "text/plain; charset=utf-8", mutable, cp, err)
}

func (s *Server) tile(w http.ResponseWriter, r *http.Request) {
	res, err := parseTilePath(strings.TrimPrefix(r.URL.Path, s.prefix+"tile/"))
	if err != nil {
		s.answer(w, r, "", "", nil, err)
		return
	}
	var data []byte
	if res.entries {
		data, err = s.src.Bundle(r.Context(), res.index, res.width)
	} else {
		data, err = s.src.Tile(r.Context(), res.level, res.index, res.width)
	}
	s.answer(w, r, "application/octet-stream", immutable, data, err)
}

// answer writes data or maps err to its status: the one error mapping of
// this server.
func (s *Server) answer(w http.ResponseWriter, r *http.Request, contentType, cache string, data []byte, err error) {
	switch {
	case err == nil:
		h := w.Header()
		h.Set("Content-Type", contentType)
		h.Set("Cache-Control", cache)
		h.Set("Content-Length", strconv.Itoa(len(data)))
		w.WriteHeader(http.StatusOK)
		if r.Method != http.MethodHead {
			_, _ = w.Write(data)
		}
	case errors.Is(err, errPath):
		http.Error(w, "malformed tlog-tiles path", http.StatusBadRequest)
	case errors.Is(err, ErrNotFound):
		w.Header().Set("Cache-Control", mutable)
		http.Error(w, "not found", http.StatusNotFound)
	case errors.Is(err, ErrNoCheckpoint):
		w.Header().Set("Retry-After", "5")
		http.Error(w, "no checkpoint published yet", http.StatusServiceUnavailable)
	case errors.Is(err, ErrUnservable):
		http.Error(w, err.Error(), http.StatusInternalServerError)
	case r.Context().Err() != nil:
		// The client went away.
	default:
		s.log.ErrorContext(r.Context(), "tlog-tiles read", slog.String("path", r.URL.Path), slog.Any("error", err))
		http.Error(w, "internal error", http.StatusInternalServerError)
	}
}
