// Package rekorv2 is the appliance's Rekor v2 log: POST /api/v2/log/entries
// wire-compatible with sigstore/rekor-tiles v2.3.0 (requests parsed and
// canonicalised by rekor-tiles' own pkg/types, so bodies and leaf hashes
// are byte-identical; answers and errors shaped as its grpc-gateway does),
// on its own Trillian tree through the same write path as the v1 log
// (logserver/sequence, with this package's Personality: no SETs, an
// Ed25519 C2SP checkpoint). It also answers a search the upstream lacks:
// GET /api/v2/log/entries?digest=<alg>:<hex> or ?publicKey=<base64 DER>,
// with the log indexes of the matching entries.
//
// Contract: a 201 carries an entry that is in a stored, signed checkpoint
// (the TransparencyLogEntry's inclusion proof carries it); a write never
// waits for a checkpoint interval: the write path publishes as soon as the
// entry is integrated.
package rekorv2

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cyberphone/json-canonicalization/go/src/webpki.org/jsoncanonicalizer"
	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	v1 "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	rekorpb "github.com/sigstore/protobuf-specs/gen/pb-go/rekor/v1"
	pb "github.com/sigstore/rekor-tiles/v2/pkg/generated/protobuf"
	"github.com/sigstore/rekor-tiles/v2/pkg/types/hashedrekord"
	"github.com/sigstore/sigstore/pkg/signature"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/stellaops/tlog/logserver/sequence"
	"github.com/stellaops/tlog/logserver/store"
)

// DefaultAlgorithms are rekor-tiles v2.3.0's default client signing
// algorithms (--client-signing-algorithms).
var DefaultAlgorithms = []v1.PublicKeyDetails{
	v1.PublicKeyDetails_PKIX_RSA_PKCS1V15_2048_SHA256,
	v1.PublicKeyDetails_PKIX_RSA_PKCS1V15_3072_SHA256,
	v1.PublicKeyDetails_PKIX_RSA_PKCS1V15_4096_SHA256,
	v1.PublicKeyDetails_PKIX_ECDSA_P256_SHA_256,
	v1.PublicKeyDetails_PKIX_ECDSA_P384_SHA_384,
	v1.PublicKeyDetails_PKIX_ECDSA_P521_SHA_512,
	v1.PublicKeyDetails_PKIX_ED25519,
	v1.PublicKeyDetails_PKIX_ED25519_PH,
}

// Options configure the server.
type Options struct {
	// LogID is the log's ID (Personality.LogID).
	LogID []byte
	// MaxRequestBytes caps request bodies. Default 4 MiB.
	MaxRequestBytes int64
	// WriteTimeout bounds how long a write waits to be published.
	WriteTimeout time.Duration
	Logger       *slog.Logger
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
	// every write is refused with PermissionDenied (HTTP 403) and this
	// message, before its body is read. Reads are served as ever.
	ReadOnly string
}

// Server answers the Rekor v2 API of one log.
type Server struct {
	log    *sequence.Log
	store  *store.Store
	algs   *signature.AlgorithmRegistryConfig
	opts   Options
	logger *slog.Logger
}

// New returns the server of the v2 log l, whose entries are in st.
func New(l *sequence.Log, st *store.Store, o Options) (*Server, error) {
	algs, err := signature.NewAlgorithmRegistryConfig(DefaultAlgorithms)
	if err != nil {
		return nil, err
	}
	if o.MaxRequestBytes <= 0 {
		o.MaxRequestBytes = 4 << 20
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = 30 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return &Server{log: l, store: st, algs: algs, opts: o, logger: o.Logger}, nil
}

// Register adds the API's routes to mux.
func (s *Server) Register(mux *http.ServeMux) {
	mux.HandleFunc("POST /api/v2/log/entries", s.create)
	mux.HandleFunc("GET /api/v2/log/entries", s.search)
}

// maxEntryBytes is the largest canonical body the log takes: a tlog-tiles
// entry bundle cannot hold more.
const maxEntryBytes = store.MaxBundleEntry

// apiError is an answer in rekor-tiles' shape (a gRPC status through
// grpc-gateway), with extra headers.
type apiError struct {
	code   codes.Code
	msg    string
	header http.Header
}

func (e *apiError) Error() string { return e.msg }

func errorf(code codes.Code, format string, a ...any) *apiError {
	return &apiError{code: code, msg: fmt.Sprintf(format, a...)}
}

// entry is a validated request, canonicalised.
type entry struct {
	body []byte
	kind *rekorpb.KindVersion
	keys []string
}

// parse validates and canonicalises a CreateEntryRequest exactly as
// rekor-tiles v2.3.0 does (its pkg/types for hashedrekord, protojson then
// RFC 8785 JCS); the dsse 0.0.2 request rekor-tiles dropped is parsed by
// this package.
func (s *Server) parse(data []byte) (*entry, error) {
	// As grpc-gateway's JSONPb decoder: one JSON value (encoding/json's
	// errors), then protojson, rejecting unknown fields.
	var raw json.RawMessage
	if err := json.NewDecoder(bytes.NewReader(data)).Decode(&raw); err != nil {
		return nil, errorf(codes.InvalidArgument, "%v", err)
	}
	var req pb.CreateEntryRequest
	if err := (protojson.UnmarshalOptions{DiscardUnknown: false}).Unmarshal(raw, &req); err != nil {
		return nil, errorf(codes.InvalidArgument, "%v", err)
	}
	var e *pb.Entry
	var keys []string
	switch spec := req.GetSpec().(type) {
	case *pb.CreateEntryRequest_HashedRekordRequestV002:
		hr := spec.HashedRekordRequestV002
		var err error
		if e, err = toLogEntry(hr, s.algs); err != nil {
			s.logger.Warn("invalid hashedrekord request", slog.Any("error", err))
			return nil, errorf(codes.InvalidArgument, "invalid hashedrekord request")
		}
		data := e.GetSpec().GetHashedRekordV002().GetData()
		keys = append(keys, digestKey(data.GetAlgorithm(), data.GetDigest()), verifierKey(hr.GetSignature().GetVerifier()))
	case *pb.CreateEntryRequest_DsseRequestV002:
		var err error
		if e, err = dsseEntry(spec.DsseRequestV002, s.algs); err != nil {
			s.logger.Warn("invalid dsse request", slog.Any("error", err))
			return nil, errorf(codes.InvalidArgument, "invalid dsse request")
		}
		d := e.GetSpec().GetDsseV002()
		keys = append(keys, digestKey(d.GetPayloadHash().GetAlgorithm(), d.GetPayloadHash().GetDigest()))
		for _, sig := range d.GetSignatures() {
			keys = append(keys, verifierKey(sig.GetVerifier()))
		}
	default:
		// rekor-tiles v2.3.0 says "must be hashedrekord"; this log takes
		// dsse too, and says so as rekor-tiles did before v2.3.0.
		return nil, errorf(codes.InvalidArgument, "invalid type, must be either hashedrekord or dsse")
	}
	serialized, err := protojson.Marshal(e)
	if err != nil {
		return nil, errorf(codes.InvalidArgument, "invalid %s request", e.Kind)
	}
	body, err := jsoncanonicalizer.Transform(serialized)
	if err != nil {
		return nil, errorf(codes.InvalidArgument, "invalid entry")
	}
	if len(body) > maxEntryBytes {
		return nil, errorf(codes.InvalidArgument, "entry of %d bytes exceeds the log's limit of %d", len(body), maxEntryBytes)
	}
	return &entry{body: body, kind: &rekorpb.KindVersion{Kind: e.Kind, Version: e.ApiVersion}, keys: keys}, nil
}

// toLogEntry is rekor-tiles' hashedrekord.ToLogEntry, which panics on some
// inputs (a pure Ed25519 verifier: rekor-tiles v2.3.0 answers 500 code 13
// to it): here such a request is invalid, 400.
func toLogEntry(hr *pb.HashedRekordRequestV002, algs *signature.AlgorithmRegistryConfig) (e *pb.Entry, err error) {
	defer func() {
		if r := recover(); r != nil {
			e, err = nil, fmt.Errorf("rekor-tiles' hashedrekord validation panicked: %v", r)
		}
	}()
	return hashedrekord.ToLogEntry(hr, algs)
}

// keyPrefix keeps the v2 log's search keys apart from the v1 log's in the
// shared index (log_index): a v1 search never finds a v2 entry.
const keyPrefix = "v2:"

// digestKey is the search key of an artifact digest: "<alg>:<hex>", the
// algorithm lower-cased as in "sha256".
func digestKey(alg v1.HashAlgorithm, digest []byte) string {
	name := map[v1.HashAlgorithm]string{
		v1.HashAlgorithm_SHA2_256: "sha256", v1.HashAlgorithm_SHA2_384: "sha384", v1.HashAlgorithm_SHA2_512: "sha512",
	}[alg]
	if name == "" {
		name = strings.ToLower(alg.String())
	}
	return keyPrefix + name + ":" + hex.EncodeToString(digest)
}

// verifierKey is the search key of a public key or certificate: the hex
// SHA-256 of its DER bytes.
func verifierKey(v *pb.Verifier) string {
	raw := v.GetPublicKey().GetRawBytes()
	if raw == nil {
		raw = v.GetX509Certificate().GetRawBytes()
	}
	sum := sha256.Sum256(raw)
	return keyPrefix + hex.EncodeToString(sum[:])
}

func (s *Server) create(w http.ResponseWriter, r *http.Request) {
	if s.opts.ReadOnly != "" {
		s.fail(w, r, errorf(codes.PermissionDenied, "%s", s.opts.ReadOnly))
		return
	}
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.opts.MaxRequestBytes))
	if err != nil {
		s.fail(w, r, errorf(codes.InvalidArgument, "reading request body: %v", err))
		return
	}
	e, err := s.parse(data)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.opts.WriteTimeout)
	defer cancel()
	done := func(bool) {}
	if s.opts.Outbox != nil {
		if done, err = s.opts.Outbox.Before(ctx, sha256.Sum256(append([]byte{0}, e.body...)), data); err != nil {
			s.logger.WarnContext(r.Context(), "upstream replay outbox", slog.Any("error", err))
			s.fail(w, r, errorf(codes.Unavailable, "the entry cannot be recorded for upstream replay; retry later"))
			return
		}
	}
	stored, head, err := s.log.Add(ctx, e.body, e.keys)
	var dup *sequence.ErrDuplicate
	var tooLarge *sequence.TooLargeError
	switch {
	case err == nil || errors.As(err, &dup):
		done(true)
	case errors.Is(err, sequence.ErrOverloaded) || errors.As(err, &tooLarge):
		done(false)
	}
	switch {
	case errors.As(err, &dup):
		existing, lerr := s.store.EntryByHash(r.Context(), s.log.Head().TreeID, dup.LeafHash[:])
		if lerr != nil {
			// Queued by another writer, not yet published.
			s.fail(w, r, errorf(codes.Unavailable, "an equivalent entry is being integrated; retry"))
			return
		}
		s.fail(w, r, &apiError{code: codes.AlreadyExists,
			msg:    fmt.Sprintf("an equivalent entry already exists in the transparency log with index %d", existing.Index),
			header: http.Header{"X-Log-Index": {strconv.FormatInt(existing.Index, 10)}}})
		return
	case r.Context().Err() != nil:
		s.fail(w, r, status.Error(codes.Canceled, r.Context().Err().Error()))
		return
	case errors.Is(err, context.DeadlineExceeded):
		s.fail(w, r, errorf(codes.DeadlineExceeded, "entry not integrated in time; retry (it may already be logged)"))
		return
	case errors.Is(err, sequence.ErrClosed):
		s.fail(w, r, errorf(codes.Unavailable, "log is shutting down; retry"))
		return
	case err != nil:
		s.logger.ErrorContext(r.Context(), "failed to integrate entry", slog.Any("error", err))
		s.fail(w, r, errorf(codes.Unknown, "failed to integrate entry"))
		return
	}
	tle, err := s.transparencyLogEntry(r.Context(), stored.Index, head, e.kind, e.body)
	if err != nil {
		s.logger.ErrorContext(r.Context(), "inclusion proof", slog.Any("error", err))
		s.fail(w, r, errorf(codes.Unknown, "failed to integrate entry"))
		return
	}
	s.write(w, http.StatusCreated, tle)
}

// transparencyLogEntry is the answer for the entry at index with body,
// its inclusion proof against head.
func (s *Server) transparencyLogEntry(ctx context.Context, index int64, head *sequence.Head, kind *rekorpb.KindVersion, body []byte) (*rekorpb.TransparencyLogEntry, error) {
	proof, err := s.log.Tree().InclusionProof(ctx, index, head.Size)
	if err != nil {
		return nil, err
	}
	hashes := make([][]byte, len(proof))
	for i := range proof {
		hashes[i] = proof[i][:]
	}
	return &rekorpb.TransparencyLogEntry{
		LogIndex:    index,
		LogId:       &v1.LogId{KeyId: s.opts.LogID},
		KindVersion: kind,
		InclusionProof: &rekorpb.InclusionProof{
			LogIndex:   index,
			RootHash:   head.Root[:],
			TreeSize:   head.Size,
			Hashes:     hashes,
			Checkpoint: &rekorpb.Checkpoint{Envelope: string(head.Checkpoint)},
		},
		CanonicalizedBody: body,
	}, nil
}

// CheckRequest validates a CreateEntryRequest exactly as
// POST /api/v2/log/entries does, without logging it. It returns the body
// as submitted, or answers the error on w (the answer the write endpoint
// would give) and returns false. The pending queue validates with it.
func (s *Server) CheckRequest(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	if s.opts.ReadOnly != "" {
		s.fail(w, r, errorf(codes.PermissionDenied, "%s", s.opts.ReadOnly))
		return nil, false
	}
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.opts.MaxRequestBytes))
	if err != nil {
		s.fail(w, r, errorf(codes.InvalidArgument, "reading request body: %v", err))
		return nil, false
	}
	if _, err := s.parse(data); err != nil {
		s.fail(w, r, err)
		return nil, false
	}
	return data, true
}

// LoggedEntry is the TransparencyLogEntry (protojson, as a 201 carries it)
// of the published entry at index, with its inclusion proof against the
// current head: the answer for an entry the queue finds already logged
// (a 409 carries only its index).
func (s *Server) LoggedEntry(ctx context.Context, index int64) ([]byte, error) {
	head := s.log.Head()
	if index < 0 || index >= head.Size {
		return nil, fmt.Errorf("entry %d is not published (tree size %d)", index, head.Size)
	}
	e, err := s.store.EntryByIndex(ctx, head.TreeID, index)
	if err != nil {
		return nil, err
	}
	var kv struct {
		Kind       string `json:"kind"`
		APIVersion string `json:"apiVersion"`
	}
	if err := json.Unmarshal(e.Body, &kv); err != nil {
		return nil, fmt.Errorf("entry %d: %w", index, err)
	}
	tle, err := s.transparencyLogEntry(ctx, index, head, &rekorpb.KindVersion{Kind: kv.Kind, Version: kv.APIVersion}, e.Body)
	if err != nil {
		return nil, err
	}
	return marshal.Marshal(tle)
}

// search answers GET /api/v2/log/entries?digest=sha256:<hex> or
// ?publicKey=<base64 DER of a public key or certificate> with
// {"logIndexes":["3",…]} in log order (our addition; rekor-tiles has none).
func (s *Server) search(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var key string
	switch {
	case q.Get("digest") != "" && q.Get("publicKey") == "":
		alg, hexDigest, ok := strings.Cut(strings.ToLower(q.Get("digest")), ":")
		if _, err := hex.DecodeString(hexDigest); !ok || err != nil || hexDigest == "" {
			s.fail(w, r, errorf(codes.InvalidArgument, "digest must be <algorithm>:<hex>, e.g. sha256:0123…"))
			return
		}
		key = keyPrefix + alg + ":" + hexDigest
	case q.Get("publicKey") != "" && q.Get("digest") == "":
		der, err := base64.StdEncoding.DecodeString(q.Get("publicKey"))
		if err != nil {
			s.fail(w, r, errorf(codes.InvalidArgument, "publicKey must be the base64 DER of a public key or certificate"))
			return
		}
		sum := sha256.Sum256(der)
		key = keyPrefix + hex.EncodeToString(sum[:])
	default:
		s.fail(w, r, errorf(codes.InvalidArgument, "give one of digest or publicKey"))
		return
	}
	hits, err := s.store.LookupIndex(r.Context(), key)
	if err != nil {
		s.logger.ErrorContext(r.Context(), "search", slog.Any("error", err))
		s.fail(w, r, errorf(codes.Unknown, "search failed"))
		return
	}
	treeID := s.log.Head().TreeID
	size := s.log.Head().Size
	var idx []int64
	for _, h := range hits {
		if h.TreeID != treeID {
			continue
		}
		e, err := s.store.EntryByHash(r.Context(), treeID, h.LeafHash[:])
		if err != nil || e.Index >= size {
			continue // not published yet
		}
		idx = append(idx, e.Index)
	}
	slices.Sort(idx)
	out := make([]string, len(idx))
	for i, x := range idx {
		out[i] = strconv.Quote(strconv.FormatInt(x, 10))
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = fmt.Fprintf(w, `{"logIndexes":[%s]}`, strings.Join(out, ","))
}

var marshal = protojson.MarshalOptions{EmitUnpopulated: true}

func (s *Server) write(w http.ResponseWriter, code int, m *rekorpb.TransparencyLogEntry) {
	data, err := marshal.Marshal(m)
	if err != nil {
		s.logger.Error("marshal entry", slog.Any("error", err))
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(data)
}

// fail maps an error to rekor-tiles' answer: the HTTP status grpc-gateway
// gives the gRPC code, and the status as JSON {"code","message","details"}.
// This is the server's one error mapping.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	var ae *apiError
	st, ok := status.FromError(err)
	if errors.As(err, &ae) {
		st = status.New(ae.code, ae.msg)
		for k, v := range ae.header {
			w.Header()[k] = v
		}
	} else if !ok {
		st = status.New(codes.Unknown, err.Error())
	}
	data, merr := marshal.Marshal(st.Proto())
	if merr != nil {
		http.Error(w, st.Message(), runtime.HTTPStatusFromCode(st.Code()))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(runtime.HTTPStatusFromCode(st.Code()))
	_, _ = w.Write(data)
}
