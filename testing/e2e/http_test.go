package e2e

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sigstore/rekor/pkg/generated/models"
	"github.com/sigstore/rekor/pkg/types"
	"github.com/sigstore/rekor/pkg/util"
	"github.com/sigstore/rekor/pkg/verify"
	"github.com/sigstore/sigstore-go/pkg/root"
	sgtlog "github.com/sigstore/sigstore-go/pkg/tlog"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/transparency-dev/merkle/rfc6962"
)

// Raw HTTP helpers: the tests look at status codes, headers and bodies
// exactly as a client sees them, not through the generated client.

var httpClient = &http.Client{Timeout: 2 * time.Minute}

type httpResp struct {
	status int
	header http.Header
	body   []byte
}

func (r httpResp) String() string {
	return fmt.Sprintf("%d %s", r.status, bytes.TrimSpace(r.body))
}

// do sends one request to the logserver. body may be nil, a []byte (sent
// as is) or any other value (sent as JSON).
func (e *env) do(t testing.TB, method, path string, body any) httpResp {
	t.Helper()
	r, err := e.try(method, path, body)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// try is do for goroutines other than the test's: it returns the error.
func (e *env) try(method, path string, body any) (httpResp, error) {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			return httpResp{}, fmt.Errorf("marshal request: %w", err)
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, e.ls.URL+path, rd)
	if err != nil {
		return httpResp{}, err
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	resp, err := httpClient.Do(req)
	if err != nil {
		return httpResp{}, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return httpResp{}, fmt.Errorf("%s %s: read body: %w", method, path, err)
	}
	return httpResp{status: resp.StatusCode, header: resp.Header, body: data}, nil
}

func (e *env) get(t testing.TB, path string) httpResp {
	t.Helper()
	return e.do(t, http.MethodGet, path, nil)
}

func (e *env) post(t testing.TB, path string, body any) httpResp {
	t.Helper()
	return e.do(t, http.MethodPost, path, body)
}

// wantStatus fails the test unless r has status code.
func wantStatus(t testing.TB, what string, r httpResp, code int) {
	t.Helper()
	if r.status != code {
		t.Fatalf("%s: got %s, want status %d", what, r, code)
	}
}

// wantError checks a JSON error answer {"code": code, "message": ...} whose
// message contains every string of contains.
func wantError(t testing.TB, what string, r httpResp, code int, contains ...string) models.Error {
	t.Helper()
	wantStatus(t, what, r, code)
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("%s: Content-Type %q, want application/json", what, ct)
	}
	var m models.Error
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("%s: error body %q is not JSON: %v", what, r.body, err)
	}
	// go-openapi validation errors (422) carry their own code in the body
	// (601 invalid type, 602 required, 605 pattern, ...), as in Rekor.
	if m.Code != int64(code) && (code != 422 || m.Code < 600 || m.Code > 699) {
		t.Errorf("%s: body code %d, want %d (body %s)", what, m.Code, code, r.body)
	}
	if m.Message == "" {
		t.Errorf("%s: empty error message (body %s)", what, r.body)
	}
	for _, c := range contains {
		if !strings.Contains(m.Message, c) {
			t.Errorf("%s: message %q does not contain %q", what, m.Message, c)
		}
	}
	return m
}

// wantEmpty404 checks Rekor's bare 404 for entries (no body).
func wantEmpty404(t testing.TB, what string, r httpResp) {
	t.Helper()
	wantStatus(t, what, r, http.StatusNotFound)
	if len(bytes.TrimSpace(r.body)) != 0 {
		t.Errorf("%s: 404 body %q, want empty", what, r.body)
	}
}

// decodeLogEntry decodes a {entryID: LogEntryAnon} answer with one member.
func decodeLogEntry(t testing.TB, data []byte) (string, models.LogEntryAnon) {
	t.Helper()
	var le models.LogEntry
	if err := json.Unmarshal(data, &le); err != nil {
		t.Fatalf("decode log entry %q: %v", data, err)
	}
	return only(t, le)
}

// decodeLogEntries decodes a retrieve answer: a list of one-member maps.
func decodeLogEntries(t testing.TB, data []byte) []string {
	t.Helper()
	if bytes.Equal(bytes.TrimSpace(data), []byte("null")) {
		t.Fatalf("retrieve answered null, want a JSON array")
	}
	var les []models.LogEntry
	if err := json.Unmarshal(data, &les); err != nil {
		t.Fatalf("decode log entries %q: %v", data, err)
	}
	ids := make([]string, len(les))
	for i, le := range les {
		ids[i], _ = only(t, le)
	}
	return ids
}

// entryBody returns the canonical body bytes of an entry.
func entryBody(t testing.TB, a models.LogEntryAnon) []byte {
	t.Helper()
	s, ok := a.Body.(string)
	if !ok {
		t.Fatalf("entry body is %T, want a base64 string", a.Body)
	}
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		t.Fatalf("entry body is not base64: %v", err)
	}
	return b
}

// leafHash is the RFC 6962 leaf hash SHA-256(0x00 || body).
func leafHash(body []byte) []byte {
	h := sha256.New()
	h.Write([]byte{0})
	h.Write(body)
	return h.Sum(nil)
}

// mth is the RFC 6962 Merkle tree hash of leaf hashes, computed from
// scratch (independent of the server's tiles and of Trillian).
func mth(leaves [][]byte) []byte {
	switch n := len(leaves); n {
	case 0:
		return rfc6962.DefaultHasher.EmptyRoot()
	case 1:
		return leaves[0]
	default:
		k := 1
		for k*2 < n {
			k *= 2
		}
		return rfc6962.DefaultHasher.HashChildren(mth(leaves[:k]), mth(leaves[k:]))
	}
}

var hex80 = regexp.MustCompile(`^[0-9a-f]{80}$`)

// logInfo is GET /api/v1/log, decoded, with its signed tree head parsed and
// verified with the log key.
type logInfo struct {
	models.LogInfo
	treeID int64
	sth    util.SignedCheckpoint
}

func (e *env) logInfo(t testing.TB) logInfo {
	t.Helper()
	r := e.get(t, "/api/v1/log")
	wantStatus(t, "GET /api/v1/log", r, http.StatusOK)
	var li logInfo
	if err := json.Unmarshal(r.body, &li.LogInfo); err != nil {
		t.Fatalf("decode LogInfo %q: %v", r.body, err)
	}
	if li.TreeID == nil || li.TreeSize == nil || li.RootHash == nil || li.SignedTreeHead == nil {
		t.Fatalf("LogInfo misses a required field: %s", r.body)
	}
	var err error
	if li.treeID, err = strconv.ParseInt(*li.TreeID, 10, 64); err != nil || li.treeID <= 0 {
		t.Fatalf("treeID %q is not a positive decimal int64", *li.TreeID)
	}
	if err := li.sth.UnmarshalText([]byte(*li.SignedTreeHead)); err != nil {
		t.Fatalf("signedTreeHead does not parse as a Rekor checkpoint: %v\n%s", err, *li.SignedTreeHead)
	}
	if !li.sth.Verify(e.ver) {
		t.Fatalf("signedTreeHead does not verify with the log key:\n%s", *li.SignedTreeHead)
	}
	if int64(li.sth.Size) != *li.TreeSize || hex.EncodeToString(li.sth.Hash) != *li.RootHash {
		t.Fatalf("signedTreeHead (size %d, root %x) disagrees with treeSize %d / rootHash %s",
			li.sth.Size, li.sth.Hash, *li.TreeSize, *li.RootHash)
	}
	return li
}

func (e *env) treeSize(t testing.TB) int64 {
	t.Helper()
	return *e.logInfo(t).TreeSize
}

// checkEntry runs every offline check a client does on an entry it got
// from the log: Rekor's pkg/verify (inclusion, checkpoint, SET),
// sigstore-go's SET and inclusion checks, and the ID/body invariants.
func (e *env) checkEntry(t testing.TB, id string, a models.LogEntryAnon, treeID int64) {
	t.Helper()
	if err := verify.VerifyLogEntry(context.Background(), &a, e.ver); err != nil {
		t.Fatalf("entry %s: rekor verify.VerifyLogEntry: %v", id, err)
	}
	body := entryBody(t, a)
	uuid := hex.EncodeToString(leafHash(body))
	if want := fmt.Sprintf("%016x%s", treeID, uuid); id != want {
		t.Fatalf("entry ID %s, want %%016x(treeID) || hex(SHA-256(0x00||body)) = %s", id, want)
	}
	if !hex80.MatchString(id) {
		t.Fatalf("entry ID %q is not 80 lower-case hex digits", id)
	}
	if a.LogID == nil || *a.LogID != e.logID {
		t.Fatalf("entry logID %v, want %s", a.LogID, e.logID)
	}
	if ip := a.Verification.InclusionProof; *ip.LogIndex != *a.LogIndex {
		t.Fatalf("inclusionProof.logIndex %d != logIndex %d (single shard)", *ip.LogIndex, *a.LogIndex)
	}
	e.checkSigstoreGo(t, a)
}

// checkSigstoreGo verifies the SET and the inclusion proof with
// sigstore-go's pkg/tlog, the code cosign v3 and sigstore-go clients run.
func (e *env) checkSigstoreGo(t testing.TB, a models.LogEntryAnon) {
	t.Helper()
	logID, err := hex.DecodeString(*a.LogID)
	if err != nil {
		t.Fatal(err)
	}
	entry, err := sgtlog.NewEntry(entryBody(t, a), *a.IntegratedTime, *a.LogIndex, logID,
		a.Verification.SignedEntryTimestamp, a.Verification.InclusionProof)
	if err != nil {
		t.Fatalf("sigstore-go tlog.NewEntry: %v", err)
	}
	tl := &root.TransparencyLog{
		BaseURL:             e.ls.URL,
		ID:                  logID,
		ValidityPeriodStart: time.Unix(0, 0),
		HashFunc:            crypto.SHA256,
		PublicKey:           e.pub,
		SignatureHashFunc:   crypto.SHA256,
	}
	if err := sgtlog.VerifySET(entry, map[string]*root.TransparencyLog{*a.LogID: tl}); err != nil {
		t.Fatalf("sigstore-go tlog.VerifySET: %v", err)
	}
	if err := sgtlog.VerifyInclusion(entry, e.ver); err != nil {
		t.Fatalf("sigstore-go tlog.VerifyInclusion: %v", err)
	}
}

// kindOf decodes the kind and apiVersion of a canonical body and checks
// that Rekor's types parse it.
func kindOf(t testing.TB, body []byte) (string, string) {
	t.Helper()
	var kv struct {
		Kind       string `json:"kind"`
		APIVersion string `json:"apiVersion"`
	}
	if err := json.Unmarshal(body, &kv); err != nil {
		t.Fatalf("canonical body is not JSON: %v", err)
	}
	pe, err := models.UnmarshalProposedEntry(bytes.NewReader(body), nil)
	if err != nil {
		t.Fatalf("canonical body is not a ProposedEntry: %v", err)
	}
	if _, err := types.UnmarshalEntry(pe); err != nil {
		t.Fatalf("canonical body does not unmarshal with rekor's pkg/types: %v", err)
	}
	return kv.Kind, kv.APIVersion
}

// logPublicKey reads the PEM the logserver wrote at start.
func (e *env) logPublicKeyPEM(t testing.TB) []byte {
	t.Helper()
	b, err := os.ReadFile(e.ls.PublicKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// logIDOf is Rekor's logID: hex SHA-256 of the PKIX DER of the log key.
func logIDOf(t testing.TB, pemBytes []byte) string {
	t.Helper()
	pub, err := cryptoutils.UnmarshalPEMToPublicKey(pemBytes)
	if err != nil {
		t.Fatal(err)
	}
	der, err := cryptoutils.MarshalPublicKeyToDER(pub)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}
