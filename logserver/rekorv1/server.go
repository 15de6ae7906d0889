// Package rekorv1 serves sigstore's Rekor v1 REST API (wire-compatible with
// rekor v1.5.4) over the log in package sequence: entries are parsed and
// canonicalised by Rekor's own pkg/types, so bodies, leaf hashes and UUIDs
// are byte-identical to Rekor's; status codes, headers and error bodies
// follow Rekor's handlers and its go-swagger parameter validation.
//
// Reads never touch Trillian or the signer: entries, SETs and checkpoints
// come from the store, proofs from the in-memory Merkle tiles.
package rekorv1

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	oaerrors "github.com/go-openapi/errors"
	"github.com/go-openapi/runtime"
	"github.com/go-openapi/strfmt"
	"github.com/sigstore/rekor/pkg/generated/models"
	"github.com/sigstore/rekor/pkg/pki"
	"github.com/sigstore/rekor/pkg/sharding"
	"github.com/sigstore/rekor/pkg/types"
	"github.com/sigstore/rekor/pkg/util"
	"github.com/sigstore/sigstore/pkg/signature"

	hashedrekord "github.com/sigstore/rekor/pkg/types/hashedrekord/v0.0.1"

	// Every entry kind and version of Rekor v1.5.4.
	_ "github.com/stellaops/tlog/logserver/kinds"
	"github.com/stellaops/tlog/logserver/sequence"
	"github.com/stellaops/tlog/logserver/store"
)

// maxSearchQueries caps the items of one retrieve request, as Rekor does.
const maxSearchQueries = 10

// Options configure the API.
type Options struct {
	MaxRequestBytes int64
	WriteTimeout    time.Duration
	PublicKeyPEM    []byte
	Algorithms      *signature.AlgorithmRegistryConfig // allowed client key/hash pairs
	Logger          *slog.Logger
	// Outbox, if set, records each write before it is logged (upstream
	// replay, package logserver/upstream): Before gets the leaf hash and
	// the request body as received; if it fails the write answers 503 and
	// logs nothing. done(true) follows a 201 or 409, done(false) a
	// certain refusal (nothing queued); an ambiguous outcome (timeout)
	// calls nothing.
	Outbox interface {
		Before(ctx context.Context, leafHash [32]byte, body []byte) (done func(logged bool), err error)
	}
	// ReadOnly, if set, is why the log takes no entries (it is frozen):
	// every write is refused with 403 Forbidden and this message, before
	// its body is read. Reads are served as ever.
	ReadOnly string
}

// Server is the Rekor v1 API.
type Server struct {
	log    *sequence.Log
	store  *store.Store
	treeID int64
	opts   Options
	slog   *slog.Logger
	logID  string
	m      *metrics
}

// New returns the API over log l and store s.
func New(l *sequence.Log, s *store.Store, o Options, reg metricsRegisterer) *Server {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Algorithms == nil {
		o.Algorithms, _ = NewAlgorithmRegistry(nil)
	}
	return &Server{log: l, store: s, treeID: l.Head().TreeID, opts: o, slog: o.Logger, logID: l.LogID(), m: newMetrics(reg)}
}

// Register adds the API's routes to mux.
func (s *Server) Register(mux *http.ServeMux) {
	s.route(mux, "GET /api/v1/log", "getLogInfo", s.getLogInfo)
	s.route(mux, "GET /api/v1/log/publicKey", "getPublicKey", s.getPublicKey)
	s.route(mux, "GET /api/v1/log/proof", "getLogProof", s.getLogProof)
	s.route(mux, "POST /api/v1/log/entries", "createLogEntry", s.createLogEntry)
	s.route(mux, "GET /api/v1/log/entries", "getLogEntryByIndex", s.getLogEntryByIndex)
	s.route(mux, "GET /api/v1/log/entries/{entryUUID}", "getLogEntryByUUID", s.getLogEntryByUUID)
	s.route(mux, "POST /api/v1/log/entries/retrieve", "searchLogQuery", s.searchLogQuery)
	s.route(mux, "POST /api/v1/index/retrieve", "searchIndex", s.searchIndex)
	// Rekor's liveness probe (its compose health check).
	mux.HandleFunc("GET /ping", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte(".")) })
}

type handler func(w http.ResponseWriter, r *http.Request) error

func (s *Server) route(mux *http.ServeMux, pattern, op string, h handler) {
	mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		if r.Body != nil {
			r.Body = http.MaxBytesReader(rec, r.Body, s.opts.MaxRequestBytes)
		}
		if err := h(rec, r); err != nil {
			s.writeError(rec, r, err)
		}
		s.m.requests.WithLabelValues(op, strconv.Itoa(rec.status)).Inc()
		s.m.latency.WithLabelValues(op).Observe(time.Since(start).Seconds())
	})
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

// readBody decodes a JSON body parameter the way go-swagger binds it: the
// Content-Type must be JSON (415), an empty body is a missing parameter
// (422), and a decoding failure is a parse error (400) — except, for bodies
// go-swagger binds with the model's own unmarshaller (validating), schema
// violations found while decoding, which are validation errors (422).
// Malformed JSON answers 400 (Rekor answers 500, which blames the server).
func readBody(r *http.Request, name string, validating bool, decode func(io.Reader) error) error {
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		ct = runtime.DefaultMime
	}
	if mt, _, err := mime.ParseMediaType(ct); err != nil {
		return oaerrors.NewParseError("Content-Type", "header", r.Header.Get("Content-Type"), err)
	} else if mt != runtime.JSONMime {
		return oaerrors.InvalidContentType(ct, []string{runtime.JSONMime})
	}
	data, err := io.ReadAll(r.Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return &apiError{status: http.StatusRequestEntityTooLarge,
				message: fmt.Sprintf("request body exceeds the limit of %d bytes", mbe.Limit), err: err}
		}
		return oaerrors.NewParseError(name, "body", "", err)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return oaerrors.Required(name, "body", "")
	}
	if err := decode(bytes.NewReader(data)); err != nil {
		var oa oaerrors.Error
		if validating && errors.As(err, &oa) {
			return err
		}
		return oaerrors.NewParseError(name, "body", "", err)
	}
	return nil
}

// queryInt binds an integer query parameter as go-swagger does.
func queryInt(r *http.Request, name string, required bool, def, minimum int64) (int64, error) {
	raw, ok := r.URL.Query()[name]
	if !ok || len(raw) == 0 || raw[len(raw)-1] == "" {
		if required {
			return 0, oaerrors.Required(name, "query", raw)
		}
		return def, nil
	}
	v, err := strconv.ParseInt(raw[len(raw)-1], 10, 64)
	if err != nil {
		return 0, oaerrors.InvalidType(name, "query", "int64", raw[len(raw)-1])
	}
	if v < minimum {
		return 0, oaerrors.ExceedsMinimumInt(name, "query", minimum, false, v)
	}
	return v, nil
}

// queryTreeID returns the treeID query parameter (0 if absent).
func queryTreeID(r *http.Request) (int64, error) {
	raw := r.URL.Query().Get("treeID")
	if raw == "" {
		return 0, nil
	}
	const pattern = `^[0-9]+$`
	for _, c := range raw {
		if c < '0' || c > '9' {
			return 0, oaerrors.FailedPattern("treeID", "query", pattern, raw)
		}
	}
	id, err := strconv.ParseInt(raw, 10, 64)
	if err != nil {
		msg := "invalid tree ID specified: " + raw
		return 0, badRequest(errors.New(msg), msg)
	}
	return id, nil
}

func (s *Server) getLogInfo(w http.ResponseWriter, _ *http.Request) error {
	h := s.log.Head()
	root := hex.EncodeToString(h.Root[:])
	size := h.Size
	sth := string(h.Checkpoint)
	tid := strconv.FormatInt(h.TreeID, 10)
	writeJSON(w, http.StatusOK, &models.LogInfo{RootHash: &root, TreeSize: &size, SignedTreeHead: &sth, TreeID: &tid})
	return nil
}

func (s *Server) getPublicKey(w http.ResponseWriter, r *http.Request) error {
	id, err := queryTreeID(r)
	if err != nil {
		return err
	}
	if id != 0 && id != s.treeID {
		return badRequest(fmt.Errorf("tree %d is not a shard of this log", id), "")
	}
	w.Header().Set("Content-Type", "application/x-pem-file")
	_, err = w.Write(s.opts.PublicKeyPEM)
	return err
}

func (s *Server) getLogProof(w http.ResponseWriter, r *http.Request) error {
	first, err := queryInt(r, "firstSize", false, 1, 1)
	if err != nil {
		return err
	}
	last, err := queryInt(r, "lastSize", true, 0, 1)
	if err != nil {
		return err
	}
	if first > last {
		msg := fmt.Sprintf(msgFirstSize, first, last)
		return badRequest(errors.New(msg), msg)
	}
	id, err := queryTreeID(r)
	if err != nil {
		return err
	}
	if id != 0 && id != s.treeID {
		msg := fmt.Sprintf("no log range found for tree ID %d", id)
		return badRequest(errors.New(msg), msg)
	}
	h := s.log.Head()
	if last > h.Size {
		msg := fmt.Sprintf(msgLastSizeTooLarge, last, h.Size)
		return badRequest(errors.New(msg), msg)
	}
	proof, err := s.log.Tree().ConsistencyProof(r.Context(), first, last)
	if err != nil {
		return err
	}
	root, err := s.log.Tree().Root(r.Context(), last)
	if err != nil {
		return err
	}
	rootHex := hex.EncodeToString(root[:])
	hashes := make([]string, len(proof))
	for i := range proof {
		hashes[i] = hex.EncodeToString(proof[i][:])
	}
	writeJSON(w, http.StatusOK, &models.ConsistencyProof{RootHash: &rootHex, Hashes: hashes})
	return nil
}

func (s *Server) createLogEntry(w http.ResponseWriter, r *http.Request) error {
	raw, entry, leaf, err := s.checkEntry(r)
	if err != nil {
		return err
	}
	keys, err := entry.IndexKeys()
	if err != nil {
		s.slog.WarnContext(r.Context(), "entry index keys", "error", err)
	}
	for i := range keys {
		keys[i] = strings.ToLower(keys[i])
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.opts.WriteTimeout)
	defer cancel()
	done := func(bool) {}
	if s.opts.Outbox != nil {
		if done, err = s.opts.Outbox.Before(ctx, sha256.Sum256(append([]byte{0}, leaf...)), raw); err != nil {
			return &apiError{status: http.StatusServiceUnavailable, message: "the entry cannot be recorded for upstream replay; retry later", retry: true, err: err}
		}
	}
	e, head, err := s.log.Add(ctx, leaf, keys)
	var dup *sequence.ErrDuplicate
	var tooLarge *sequence.TooLargeError
	switch {
	case err == nil || errors.As(err, &dup):
		done(true)
	case errors.Is(err, sequence.ErrOverloaded) || errors.As(err, &tooLarge):
		done(false)
	}
	if dup != nil {
		id := s.entryID(dup.LeafHash[:])
		return &apiError{status: http.StatusConflict, message: fmt.Sprintf(msgEntryExists, id),
			location: entryURL(r, id), err: err}
	}
	if err != nil {
		return err
	}
	le, id, err := s.logEntry(r.Context(), e, head)
	if err != nil {
		return err
	}
	w.Header().Set("Location", entryURL(r, id))
	w.Header().Set("ETag", id)
	writeJSON(w, http.StatusCreated, le)
	return nil
}

// CheckRequest validates a createLogEntry request exactly as
// POST /api/v1/log/entries does (body size, Content-Type, the proposed
// entry, its signature, the allowed algorithms) without logging it. It
// returns the body as submitted, or answers the error on w (the answer
// the write endpoint would give) and returns false. The pending queue
// validates with it at enqueue time.
func (s *Server) CheckRequest(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	r.Body = http.MaxBytesReader(w, r.Body, s.opts.MaxRequestBytes)
	body, _, _, err := s.checkEntry(r)
	if err != nil {
		s.writeError(w, r, err)
		return nil, false
	}
	return body, true
}

// checkEntry reads and validates a proposed entry: its body as read, the
// entry and its canonical leaf.
func (s *Server) checkEntry(r *http.Request) ([]byte, types.EntryImpl, []byte, error) {
	if s.opts.ReadOnly != "" {
		return nil, nil, nil, &apiError{status: http.StatusForbidden, message: s.opts.ReadOnly}
	}
	var pe models.ProposedEntry
	var raw []byte
	if err := readBody(r, "proposedEntry", true, func(rd io.Reader) (err error) {
		raw = mustRead(rd)
		pe, err = models.UnmarshalProposedEntry(bytes.NewReader(raw), runtime.JSONConsumer())
		return err
	}); err != nil {
		return nil, nil, nil, err
	}
	if err := pe.Validate(strfmt.Default); err != nil {
		return nil, nil, nil, err
	}
	if err := pe.ContextValidate(r.Context(), strfmt.Default); err != nil {
		return nil, nil, nil, err
	}
	entry, err := newEntry(pe)
	if err != nil {
		return nil, nil, nil, badRequest(err, fmt.Sprintf(msgValidation, err))
	}
	// Canonicalize validates the entry (the signature over the digest);
	// validation errors come before the algorithm check, as in Rekor.
	leaf, err := types.CanonicalizeEntry(r.Context(), entry)
	if err != nil {
		var ive *types.InputValidationError
		if errors.As(err, &ive) {
			return nil, nil, nil, badRequest(err, fmt.Sprintf(msgValidation, err))
		}
		return nil, nil, nil, &apiError{status: http.StatusInternalServerError, message: "error generating canonicalized entry", err: err}
	}
	if err := checkAlgorithms(entry, s.opts.Algorithms); err != nil {
		return nil, nil, nil, err
	}
	return raw, entry, leaf, nil
}

// newEntry is types.CreateVersionedEntry, except that a hashedrekord 0.0.1
// entry's signature is verified once, by Canonicalize, instead of twice:
// Rekor's Unmarshal and Canonicalize both verify it, a tenth of the write
// path's CPU (measured +6% entries/s at c=16). Decoding and field validation
// are Rekor's own, and so is the canonical body.
func newEntry(pe models.ProposedEntry) (types.EntryImpl, error) {
	hr, ok := pe.(*models.Hashedrekord)
	if !ok || hr.APIVersion == nil || *hr.APIVersion != "0.0.1" {
		return types.CreateVersionedEntry(pe)
	}
	e := &hashedrekord.V001Entry{}
	if err := types.DecodeEntry(hr.Spec, &e.HashedRekordObj); err != nil {
		return nil, err
	}
	if err := e.HashedRekordObj.Validate(strfmt.Default); err != nil {
		return nil, err
	}
	return e, nil
}

// entryURL is Rekor's Location: the request path plus the entry ID.
func entryURL(r *http.Request, id string) string {
	u := *r.URL
	q := u.Query()
	q.Del("apiKey")
	u.RawQuery = q.Encode()
	u.Path = strings.TrimSuffix(u.Path, "/") + "/" + id
	u.RawPath = ""
	return u.String()
}

func (s *Server) entryID(leafHash []byte) string {
	return fmt.Sprintf("%016x%s", s.treeID, hex.EncodeToString(leafHash))
}

// logEntry renders e with its inclusion proof against head h.
func (s *Server) logEntry(ctx context.Context, e store.Entry, h *sequence.Head) (models.LogEntry, string, error) {
	proof, err := s.log.Tree().InclusionProof(ctx, e.Index, h.Size)
	if err != nil {
		return nil, "", fmt.Errorf("inclusion proof of %d at %d: %w", e.Index, h.Size, err)
	}
	hashes := make([]string, len(proof))
	for i := range proof {
		hashes[i] = hex.EncodeToString(proof[i][:])
	}
	root := hex.EncodeToString(h.Root[:])
	cp := string(h.Checkpoint)
	size, index, it, logID := h.Size, e.Index, e.IntegratedTime, s.logID
	id := s.entryID(e.LeafHash[:])
	return models.LogEntry{id: models.LogEntryAnon{
		Body:           e.Body,
		IntegratedTime: &it,
		LogID:          &logID,
		LogIndex:       &index,
		Verification: &models.LogEntryAnonVerification{
			InclusionProof: &models.InclusionProof{
				Checkpoint: &cp, Hashes: hashes, LogIndex: &index, RootHash: &root, TreeSize: &size,
			},
			SignedEntryTimestamp: strfmt.Base64(e.SET),
		},
	}}, id, nil
}

// entryByIndex returns the entry at a (virtual) index, or errNotFound.
func (s *Server) entryByIndex(ctx context.Context, index int64) (models.LogEntry, error) {
	h := s.log.Head()
	if index >= h.Size {
		return nil, errNotFound
	}
	e, err := s.store.EntryByIndex(ctx, s.treeID, index)
	if errors.Is(err, store.ErrNotFound) {
		return nil, errNotFound
	}
	if err != nil {
		return nil, err
	}
	le, _, err := s.logEntry(ctx, e, h)
	return le, err
}

// entryByHash returns the entry with leaf hash in tree treeID, or errNotFound.
func (s *Server) entryByHash(ctx context.Context, treeID int64, hash []byte) (models.LogEntry, error) {
	if treeID != s.treeID {
		return nil, errNotFound
	}
	h := s.log.Head()
	e, err := s.store.EntryByHash(ctx, treeID, hash)
	if errors.Is(err, store.ErrNotFound) || (err == nil && e.Index >= h.Size) {
		return nil, errNotFound
	}
	if err != nil {
		return nil, err
	}
	le, _, err := s.logEntry(ctx, e, h)
	return le, err
}

func (s *Server) getLogEntryByIndex(w http.ResponseWriter, r *http.Request) error {
	index, err := queryInt(r, "logIndex", true, 0, 0)
	if err != nil {
		return err
	}
	le, err := s.entryByIndex(r.Context(), index)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, le)
	return nil
}

// parseEntryID splits a 64-hex UUID or 80-hex entry ID into tree and hash.
func (s *Server) parseEntryID(id string) (int64, []byte, error) {
	uuid, err := sharding.GetUUIDFromIDString(id)
	if err != nil {
		return 0, nil, &types.InputValidationError{Err: err}
	}
	treeID := s.treeID
	if len(id) == sharding.EntryIDHexStringLen {
		if treeID, err = sharding.TreeID(id); err != nil {
			return 0, nil, &types.InputValidationError{Err: err}
		}
	}
	hash, err := hex.DecodeString(uuid)
	if err != nil {
		return 0, nil, &types.InputValidationError{Err: err}
	}
	return treeID, hash, nil
}

func (s *Server) getLogEntryByUUID(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("entryUUID")
	if !isEntryIDPattern(id) {
		return oaerrors.FailedPattern("entryUUID", "path", `^([0-9a-fA-F]{64}|[0-9a-fA-F]{80})$`, id)
	}
	treeID, hash, err := s.parseEntryID(id)
	if err != nil {
		return err
	}
	le, err := s.entryByHash(r.Context(), treeID, hash)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, le)
	return nil
}

func isEntryIDPattern(id string) bool {
	if len(id) != sharding.UUIDHexStringLen && len(id) != sharding.EntryIDHexStringLen {
		return false
	}
	_, err := hex.DecodeString(id)
	return err == nil
}

func (s *Server) searchLogQuery(w http.ResponseWriter, r *http.Request) error {
	var q models.SearchLogQuery
	if err := readBody(r, "entry", false, func(rd io.Reader) error { return q.UnmarshalJSON(mustRead(rd)) }); err != nil {
		return err
	}
	if err := q.Validate(strfmt.Default); err != nil {
		return err
	}
	if n := len(q.EntryUUIDs) + len(q.Entries()) + len(q.LogIndexes); n > maxSearchQueries {
		msg := fmt.Sprintf(msgMaxSearchQueries, maxSearchQueries)
		return &apiError{status: http.StatusUnprocessableEntity, message: msg, err: errors.New(msg)}
	}
	ctx := r.Context()
	type lookup struct {
		tree int64
		hash []byte
	}
	// As in Rekor: entry IDs are looked up as they come; UUIDs and
	// proposed entries are searched by leaf hash afterwards; log indexes last.
	result := []models.LogEntry{}
	var byHash []lookup
	for _, id := range q.EntryUUIDs {
		if err := sharding.ValidateEntryID(id); err == nil {
			treeID, hash, err := s.parseEntryID(id)
			if err != nil {
				return badRequest(err, "invalid entryID "+id)
			}
			le, err := s.entryByHash(ctx, treeID, hash)
			if errors.Is(err, errNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			result = append(result, le)
			continue
		} else if len(id) == sharding.EntryIDHexStringLen {
			return badRequest(err, "invalid entryID "+id)
		}
		if err := sharding.ValidateUUID(id); err != nil {
			return badRequest(err, "invalid uuid "+id)
		}
		hash, err := hex.DecodeString(id)
		if err != nil {
			return badRequest(err, "UUID must be a 64-character hexadecimal string")
		}
		byHash = append(byHash, lookup{s.treeID, hash})
	}
	for _, pe := range q.Entries() {
		entry, err := types.UnmarshalEntry(pe)
		if err != nil {
			return badRequest(fmt.Errorf("unmarshalling entry: %w", err), err.Error())
		}
		leaf, err := types.CanonicalizeEntry(ctx, entry)
		if err != nil {
			return badRequest(fmt.Errorf("canonicalizing entry: %w", err), err.Error())
		}
		sum := sha256.Sum256(append([]byte{0}, leaf...))
		byHash = append(byHash, lookup{s.treeID, sum[:]})
	}
	for _, l := range byHash {
		le, err := s.entryByHash(ctx, l.tree, l.hash)
		if errors.Is(err, errNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		result = append(result, le)
	}
	for _, idx := range q.LogIndexes {
		if idx == nil {
			continue
		}
		le, err := s.entryByIndex(ctx, *idx)
		if errors.Is(err, errNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		result = append(result, le)
	}
	writeJSON(w, http.StatusOK, result)
	return nil
}

func mustRead(r io.Reader) []byte {
	b, _ := io.ReadAll(r)
	return b
}

func (s *Server) searchIndex(w http.ResponseWriter, r *http.Request) error {
	var q models.SearchIndex
	if err := readBody(r, "query", false, func(rd io.Reader) error { return q.UnmarshalBinary(mustRead(rd)) }); err != nil {
		return err
	}
	if err := q.Validate(strfmt.Default); err != nil {
		return err
	}
	op := q.Operator
	if op == "" {
		op = "or"
	}
	var keys []string
	if q.Hash != "" {
		keys = append(keys, strings.ToLower(util.PrefixSHA(q.Hash)))
	}
	if q.PublicKey != nil {
		format := ""
		if q.PublicKey.Format != nil {
			format = *q.PublicKey.Format
		}
		af, err := pki.NewArtifactFactory(pki.Format(format))
		if err != nil {
			return badRequest(err, msgUnsupportedPKI)
		}
		key, err := af.NewPublicKey(bytes.NewReader(q.PublicKey.Content))
		if err != nil {
			return badRequest(err, msgMalformedPublicKey)
		}
		canonical, err := key.CanonicalValue()
		if err != nil {
			return &apiError{status: http.StatusInternalServerError, message: "error generating canonicalized public key", err: err}
		}
		sum := sha256.Sum256(canonical)
		keys = append(keys, hex.EncodeToString(sum[:]))
	}
	if q.Email != "" {
		keys = append(keys, strings.ToLower(q.Email.String()))
	}
	if q.Subject != "" {
		keys = append(keys, strings.ToLower(q.Subject))
	}
	var result map[string]bool
	for i, k := range keys {
		hits, err := s.store.LookupIndex(r.Context(), k)
		if err != nil {
			return &apiError{status: http.StatusInternalServerError, message: "unexpected result from searching index", err: err}
		}
		set := map[string]bool{}
		for _, h := range hits {
			set[fmt.Sprintf("%016x%s", h.TreeID, hex.EncodeToString(h.LeafHash[:]))] = true
		}
		switch {
		case i == 0:
			result = set
		case strings.EqualFold(op, "and"):
			for id := range result {
				if !set[id] {
					delete(result, id)
				}
			}
		default:
			for id := range set {
				result[id] = true
			}
		}
	}
	out := make([]string, 0, len(result))
	for id := range result {
		out = append(out, id)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}
