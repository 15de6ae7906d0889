// Package testlog is a real, in-memory transparency log for tests and load
// tools: an RFC 6962 Merkle tree (golang.org/x/mod/sumdb/tlog, independent
// of the merkle library the witness verifies with) whose checkpoints are
// signed notes, by an Ed25519 key or by a Rekor-style ECDSA P-256 key.
package testlog

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"strings"
	"sync"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/stellaops/tlog/internal/notekey"
)

// Log is an append-only tree plus a note signer. It is safe for concurrent use.
type Log struct {
	Origin string
	VKey   string // the log's verifier key, as configured in a witness
	Signer note.Signer
	// Extensions are appended to every checkpoint text (Rekor logs carry a
	// "Timestamp: <ns>" line).
	Extensions []string

	mu     sync.Mutex
	hashes []tlog.Hash // stored hashes, tlog.StoredHashIndex order
	size   int64
}

// NewEd25519 returns an empty log whose key name is the origin.
func NewEd25519(origin string) (*Log, error) {
	skey, vkey, err := note.GenerateKey(rand.Reader, origin)
	if err != nil {
		return nil, err
	}
	s, err := note.NewSigner(skey)
	if err != nil {
		return nil, err
	}
	return &Log{Origin: origin, VKey: vkey, Signer: s}, nil
}

// NewRekor returns an empty Rekor-v1-style log: origin "<host> - <treeID>",
// an ECDSA P-256 key named host with key ID SHA-256(DER SPKI)[:4], and a
// "Timestamp:" extension line.
func NewRekor(host string, treeID int64) (*Log, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	vkey, err := notekey.ECDSAVerifierKey(host, &k.PublicKey)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		return nil, err
	}
	h := sha256.Sum256(der)
	return &Log{
		Origin:     fmt.Sprintf("%s - %d", host, treeID),
		VKey:       vkey,
		Signer:     &ecdsaSigner{name: host, id: binary.BigEndian.Uint32(h[:4]), key: k},
		Extensions: []string{"Timestamp: 1700000000000000000"},
	}, nil
}

type ecdsaSigner struct {
	name string
	id   uint32
	key  *ecdsa.PrivateKey
}

func (s *ecdsaSigner) Name() string    { return s.name }
func (s *ecdsaSigner) KeyHash() uint32 { return s.id }
func (s *ecdsaSigner) Sign(msg []byte) ([]byte, error) {
	d := sha256.Sum256(msg)
	return ecdsa.SignASN1(rand.Reader, s.key, d[:])
}

// Append adds n leaves and returns the new size.
func (l *Log) Append(n int) int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := 0; i < n; i++ {
		data := fmt.Appendf(nil, "%s leaf %d", l.Origin, l.size)
		hs, err := tlog.StoredHashes(l.size, data, l.reader())
		if err != nil {
			panic(err) // only on a bug in this package
		}
		l.hashes = append(l.hashes, hs...)
		l.size++
	}
	return l.size
}

// Size returns the number of leaves.
func (l *Log) Size() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.size
}

func (l *Log) reader() tlog.HashReader {
	return tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(idx))
		for i, x := range idx {
			if x >= int64(len(l.hashes)) {
				return nil, fmt.Errorf("hash %d not stored", x)
			}
			out[i] = l.hashes[x]
		}
		return out, nil
	})
}

// Root returns the root hash of the tree of the given size.
func (l *Log) Root(size int64) tlog.Hash {
	l.mu.Lock()
	defer l.mu.Unlock()
	if size == 0 {
		return tlog.Hash(sha256.Sum256(nil))
	}
	h, err := tlog.TreeHash(size, l.reader())
	if err != nil {
		panic(err)
	}
	return h
}

// Text returns the checkpoint text for a size with the given root.
func (l *Log) Text(size int64, root tlog.Hash) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n%d\n%s\n", l.Origin, size, base64.StdEncoding.EncodeToString(root[:]))
	for _, e := range l.Extensions {
		b.WriteString(e + "\n")
	}
	return b.String()
}

// Checkpoint returns the signed checkpoint note for the tree of the given size.
func (l *Log) Checkpoint(size int64) []byte {
	return l.SignText(l.Text(size, l.Root(size)))
}

// SignText signs any note text with the log key.
func (l *Log) SignText(text string, extra ...note.Signer) []byte {
	b, err := note.Sign(&note.Note{Text: text}, append([]note.Signer{l.Signer}, extra...)...)
	if err != nil {
		panic(err)
	}
	return b
}

// Proof returns the RFC 6962 consistency proof from size old to size n.
func (l *Log) Proof(old, n int64) [][]byte {
	if old == 0 || old == n {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	p, err := tlog.ProveTree(n, old, l.reader())
	if err != nil {
		panic(err)
	}
	out := make([][]byte, len(p))
	for i := range p {
		out[i] = p[i][:]
	}
	return out
}

// Body returns an add-checkpoint request body.
func Body(old int64, proof [][]byte, checkpoint []byte) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "old %d\n", old)
	for _, h := range proof {
		b.WriteString(base64.StdEncoding.EncodeToString(h) + "\n")
	}
	b.WriteString("\n")
	b.Write(checkpoint)
	return []byte(b.String())
}

// Request returns the add-checkpoint body advancing a witness from old to n.
func (l *Log) Request(old, n int64) []byte {
	return Body(old, l.Proof(old, n), l.Checkpoint(n))
}
