// Package tufrepo is the appliance's own TUF repository
// (theupdateframework.io spec 1.0, github.com/theupdateframework/go-tuf/v2
// metadata), from which sigstore clients (cosign initialize --mirror,
// sigstore-go's tuf client) fetch trusted_root.json and
// signing_config.v0.2.json.
//
// Design: one root key (signs root.json only) and one online key (signs
// targets, snapshot and timestamp, which change without an operator), both
// ECDSA P-256 (keytype "ecdsa", scheme "ecdsa-sha2-nistp256": the
// signature is ASN.1 DER over SHA-256 of the canonical JSON of "signed"),
// threshold 1, no delegations, consistent snapshots as sigstore's TUF
// repositories use: N.root.json, N.targets.json, N.snapshot.json,
// timestamp.json and targets/<sha256>.<name>.
//
// The repository is a directory holding every file ever published, laid
// out as served, so versions only go up across restarts and a client in
// the middle of an update finds the versions it was told about. Each file
// is written to a temporary name and renamed; timestamp.json is written
// last, so a reader never sees metadata naming a file not yet there.
package tufrepo

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/stellaops/tlog/logserver/logkey"
)

// Options configure a repository. Every duration must be positive.
type Options struct {
	// Dir holds the repository (created if missing).
	Dir string
	// RootKey signs root.json; OnlineKey signs targets, snapshot and
	// timestamp. ECDSA P-256, distinct.
	RootKey, OnlineKey logkey.Signer
	// RootExpiry, TargetsExpiry (targets and snapshot) and TimestampExpiry
	// are how long a newly signed version is valid.
	RootExpiry, TargetsExpiry, TimestampExpiry time.Duration
	// RefreshMargin: a role is signed again (a new version) once it expires
	// within the margin. Less than every expiry.
	RefreshMargin time.Duration
	Logger        *slog.Logger
}

// Repo is a TUF repository in a directory. Its methods are safe for
// concurrent use.
type Repo struct {
	o         Options
	rootKey   *metadata.Key
	onlineKey *metadata.Key

	mu        sync.Mutex
	root      *metadata.Metadata[metadata.RootType]
	targets   *metadata.Metadata[metadata.TargetsType]
	snapshot  *metadata.Metadata[metadata.SnapshotType]
	timestamp *metadata.Metadata[metadata.TimestampType]
}

// Open opens the repository in o.Dir, or creates root version 1 there.
// The configured root key must be the root's key (a root key rotation is
// an operator's ceremony this package does not do); a new online key gets
// a new root version naming it, signed by the root key.
func Open(ctx context.Context, o Options) (*Repo, error) {
	if o.RefreshMargin <= 0 || o.RefreshMargin >= min(o.RootExpiry, o.TargetsExpiry, o.TimestampExpiry) {
		return nil, errors.New("tufrepo: the refresh margin must be positive and less than every expiry")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	r := &Repo{o: o}
	var err error
	if r.rootKey, err = tufKey(o.RootKey); err != nil {
		return nil, fmt.Errorf("tufrepo: root key: %w", err)
	}
	if r.onlineKey, err = tufKey(o.OnlineKey); err != nil {
		return nil, fmt.Errorf("tufrepo: online key: %w", err)
	}
	if r.rootKey.Value.PublicKey == r.onlineKey.Value.PublicKey {
		return nil, errors.New("tufrepo: the root and the online key must differ")
	}
	if err := os.MkdirAll(filepath.Join(o.Dir, "targets"), 0o755); err != nil {
		return nil, fmt.Errorf("tufrepo: %w", err)
	}
	if err := r.load(); err != nil {
		return nil, fmt.Errorf("tufrepo: %s: %w", o.Dir, err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	rootID, _ := r.rootKey.ID()
	onlineID, _ := r.onlineKey.ID()
	if r.root == nil {
		r.root = metadata.Root(r.expiry(o.RootExpiry))
		r.root.Signed.Version = 0 // newRoot makes it 1
	} else if !slices.Equal(r.root.Signed.Roles[metadata.ROOT].KeyIDs, []string{rootID}) {
		return nil, fmt.Errorf("tufrepo: %s: the configured root key %s is not the root's key %v", o.Dir, rootID, r.root.Signed.Roles[metadata.ROOT].KeyIDs)
	}
	if r.root.Signed.Version == 0 || !slices.Equal(r.root.Signed.Roles[metadata.TIMESTAMP].KeyIDs, []string{onlineID}) {
		if err := r.newRoot(ctx); err != nil {
			return nil, err
		}
	}
	// Everything the online key signs is signed again by a new one (also
	// after a crash between the new root and the new timestamp: the
	// timestamp is written last).
	if r.timestamp != nil && (len(r.timestamp.Signatures) != 1 || r.timestamp.Signatures[0].KeyID != onlineID) {
		if err := r.newTargets(ctx, r.targets.Signed.Targets); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// tufKey returns the TUF key of an ECDSA P-256 signer.
func tufKey(s logkey.Signer) (*metadata.Key, error) {
	if s == nil {
		return nil, errors.New("none")
	}
	pub, ok := s.Public().(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		return nil, fmt.Errorf("want ECDSA P-256, got %T", s.Public())
	}
	return metadata.KeyFromPublicKey(pub)
}

// expiry is d from now, rounded up to the second (TUF dates have no
// fractions).
func (r *Repo) expiry(d time.Duration) time.Time {
	t := time.Now().UTC().Add(d)
	if s := t.Truncate(time.Second); s.Before(t) {
		return s.Add(time.Second)
	}
	return t
}

// load reads the newest root and the current targets, snapshot and
// timestamp, if any.
func (r *Repo) load() error {
	for n := 1; ; n++ {
		data, err := os.ReadFile(filepath.Join(r.o.Dir, strconv.Itoa(n)+".root.json"))
		if errors.Is(err, os.ErrNotExist) {
			break
		}
		if err != nil {
			return err
		}
		if r.root, err = metadata.Root().FromBytes(data); err != nil {
			return fmt.Errorf("%d.root.json: %w", n, err)
		}
	}
	data, err := os.ReadFile(filepath.Join(r.o.Dir, "timestamp.json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if r.root == nil {
		return errors.New("timestamp.json without a root")
	}
	if r.timestamp, err = metadata.Timestamp().FromBytes(data); err != nil {
		return fmt.Errorf("timestamp.json: %w", err)
	}
	name := strconv.FormatInt(r.timestamp.Signed.Meta["snapshot.json"].Version, 10) + ".snapshot.json"
	if data, err = os.ReadFile(filepath.Join(r.o.Dir, name)); err != nil {
		return err
	}
	if r.snapshot, err = metadata.Snapshot().FromBytes(data); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	name = strconv.FormatInt(r.snapshot.Signed.Meta["targets.json"].Version, 10) + ".targets.json"
	if data, err = os.ReadFile(filepath.Join(r.o.Dir, name)); err != nil {
		return err
	}
	if r.targets, err = metadata.Targets().FromBytes(data); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// RootJSON returns the newest root.json: what clients are given to start
// from (cosign initialize --root); they follow later root versions.
func (r *Repo) RootJSON() ([]byte, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return os.ReadFile(filepath.Join(r.o.Dir, strconv.FormatInt(r.root.Signed.Version, 10)+".root.json"))
}

// Expires returns when the current version of role ("root", "targets",
// "snapshot", "timestamp") expires; zero before the first Publish.
func (r *Repo) Expires(role string) time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case role == metadata.ROOT:
		return r.root.Signed.Expires
	case r.timestamp == nil:
	case role == metadata.TARGETS:
		return r.targets.Signed.Expires
	case role == metadata.SNAPSHOT:
		return r.snapshot.Signed.Expires
	case role == metadata.TIMESTAMP:
		return r.timestamp.Signed.Expires
	}
	return time.Time{}
}

// Publish makes files (target name → content) the repository's targets,
// replacing all others: if they differ from the current ones, it signs a
// new targets, snapshot and timestamp version. Names are plain file names.
func (r *Repo) Publish(ctx context.Context, files map[string][]byte) error {
	targets := make(map[string]*metadata.TargetFiles, len(files))
	for name, data := range files {
		if name == "" || name != filepath.Base(name) || strings.HasPrefix(name, ".") {
			return fmt.Errorf("tufrepo: bad target name %q", name)
		}
		tf, err := metadata.TargetFile().FromBytes(name, data, "sha256")
		if err != nil {
			return fmt.Errorf("tufrepo: target %s: %w", name, err)
		}
		if err := r.write(filepath.Join("targets", hex.EncodeToString(tf.Hashes["sha256"])+"."+name), data); err != nil {
			return err
		}
		targets[name] = tf
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.targets != nil && maps.EqualFunc(r.targets.Signed.Targets, targets, func(a, b *metadata.TargetFiles) bool { return a.Equal(*b) }) {
		return nil
	}
	return r.newTargets(ctx, targets)
}

// Refresh signs a new version of every role that expires within the
// refresh margin, and returns when the next one will.
func (r *Repo) Refresh(ctx context.Context) (time.Time, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	due := func(t time.Time) bool { return time.Now().Add(r.o.RefreshMargin).After(t) }
	if due(r.root.Signed.Expires) {
		if err := r.newRoot(ctx); err != nil {
			return time.Time{}, err
		}
	}
	switch {
	case r.targets == nil:
	case due(r.targets.Signed.Expires):
		if err := r.newTargets(ctx, r.targets.Signed.Targets); err != nil {
			return time.Time{}, err
		}
	case due(r.snapshot.Signed.Expires):
		if err := r.newSnapshot(ctx); err != nil {
			return time.Time{}, err
		}
	case due(r.timestamp.Signed.Expires):
		if err := r.newTimestamp(ctx); err != nil {
			return time.Time{}, err
		}
	}
	next := r.root.Signed.Expires
	if r.timestamp != nil {
		next = slices.MinFunc([]time.Time{next, r.targets.Signed.Expires, r.snapshot.Signed.Expires, r.timestamp.Signed.Expires}, time.Time.Compare)
	}
	return next.Add(-r.o.RefreshMargin), nil
}

// Run refreshes the repository until ctx ends; a failed refresh is logged
// and retried after a few seconds (the timestamp stays valid for the
// refresh margin).
func (r *Repo) Run(ctx context.Context) {
	for {
		next, err := r.Refresh(ctx)
		wait := time.Until(next)
		if err != nil {
			r.o.Logger.ErrorContext(ctx, "tuf refresh", "err", err)
			wait = min(5*time.Second, r.o.RefreshMargin/4)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(max(wait, 10*time.Millisecond)):
		}
	}
}

// newRoot signs and writes the next root version, with the configured
// keys, signed by the root key.
func (r *Repo) newRoot(ctx context.Context) error {
	root := *r.root
	root.Signed.Version++
	root.Signed.Expires = r.expiry(r.o.RootExpiry)
	root.Signed.Keys = map[string]*metadata.Key{}
	root.Signed.Roles = map[string]*metadata.Role{}
	rootID, _ := r.rootKey.ID()
	onlineID, _ := r.onlineKey.ID()
	root.Signed.Keys[rootID], root.Signed.Keys[onlineID] = r.rootKey, r.onlineKey
	root.Signed.Roles[metadata.ROOT] = &metadata.Role{KeyIDs: []string{rootID}, Threshold: 1}
	for _, role := range []string{metadata.TARGETS, metadata.SNAPSHOT, metadata.TIMESTAMP} {
		root.Signed.Roles[role] = &metadata.Role{KeyIDs: []string{onlineID}, Threshold: 1}
	}
	data, err := sign(ctx, &root, r.o.RootKey)
	if err != nil {
		return err
	}
	if err := r.write(strconv.FormatInt(root.Signed.Version, 10)+".root.json", data); err != nil {
		return err
	}
	r.root = &root
	r.o.Logger.InfoContext(ctx, "tuf root", "version", root.Signed.Version, "expires", root.Signed.Expires)
	return nil
}

func (r *Repo) newTargets(ctx context.Context, targets map[string]*metadata.TargetFiles) error {
	t := metadata.Targets(r.expiry(r.o.TargetsExpiry))
	if r.targets != nil {
		t.Signed.Version = r.targets.Signed.Version + 1
	}
	t.Signed.Targets = targets
	data, err := sign(ctx, t, r.o.OnlineKey)
	if err != nil {
		return err
	}
	if err := r.write(strconv.FormatInt(t.Signed.Version, 10)+".targets.json", data); err != nil {
		return err
	}
	r.targets = t
	r.o.Logger.InfoContext(ctx, "tuf targets", "version", t.Signed.Version, "targets", slices.Sorted(maps.Keys(targets)))
	return r.newSnapshot(ctx)
}

func (r *Repo) newSnapshot(ctx context.Context) error {
	s := metadata.Snapshot(r.expiry(r.o.TargetsExpiry))
	if r.snapshot != nil {
		s.Signed.Version = r.snapshot.Signed.Version + 1
	}
	s.Signed.Meta["targets.json"].Version = r.targets.Signed.Version
	data, err := sign(ctx, s, r.o.OnlineKey)
	if err != nil {
		return err
	}
	if err := r.write(strconv.FormatInt(s.Signed.Version, 10)+".snapshot.json", data); err != nil {
		return err
	}
	r.snapshot = s
	return r.newTimestampOf(ctx, data)
}

func (r *Repo) newTimestamp(ctx context.Context) error {
	data, err := os.ReadFile(filepath.Join(r.o.Dir, strconv.FormatInt(r.snapshot.Signed.Version, 10)+".snapshot.json"))
	if err != nil {
		return err
	}
	return r.newTimestampOf(ctx, data)
}

// newTimestampOf signs a timestamp naming the current snapshot, whose
// bytes are snapshot.
func (r *Repo) newTimestampOf(ctx context.Context, snapshot []byte) error {
	ts := metadata.Timestamp(r.expiry(r.o.TimestampExpiry))
	if r.timestamp != nil {
		ts.Signed.Version = r.timestamp.Signed.Version + 1
	}
	sum := sha256.Sum256(snapshot)
	ts.Signed.Meta["snapshot.json"] = &metadata.MetaFiles{
		Version: r.snapshot.Signed.Version, Length: int64(len(snapshot)), Hashes: metadata.Hashes{"sha256": sum[:]},
	}
	data, err := sign(ctx, ts, r.o.OnlineKey)
	if err != nil {
		return err
	}
	if err := r.write("timestamp.json", data); err != nil {
		return err
	}
	r.timestamp = ts
	r.o.Logger.DebugContext(ctx, "tuf timestamp", "version", ts.Signed.Version, "snapshot", r.snapshot.Signed.Version, "expires", ts.Signed.Expires)
	return nil
}

// sign replaces m's signatures with key's and returns m as published.
func sign[T metadata.Roles](ctx context.Context, m *metadata.Metadata[T], key logkey.Signer) ([]byte, error) {
	m.Signatures = nil
	s := &digestSigner{ctx: ctx, s: key}
	if _, err := m.Sign(s); err != nil {
		return nil, fmt.Errorf("tufrepo: sign: %w", errors.Join(s.err, err))
	}
	return m.ToBytes(true)
}

// digestSigner is a sigstore signature.Signer (what go-tuf signs with)
// over a logkey.Signer: SHA-256 of the message, signed as a digest.
type digestSigner struct {
	ctx context.Context
	s   logkey.Signer
	err error
}

func (d *digestSigner) PublicKey(...signature.PublicKeyOption) (crypto.PublicKey, error) {
	return d.s.Public(), nil
}

func (d *digestSigner) SignMessage(msg io.Reader, _ ...signature.SignOption) ([]byte, error) {
	h := sha256.New()
	if _, err := io.Copy(h, msg); err != nil {
		return nil, err
	}
	sigs, err := d.s.SignDigests(d.ctx, [][sha256.Size]byte{[sha256.Size]byte(h.Sum(nil))})
	if err != nil {
		d.err = err
		return nil, err
	}
	return sigs[0], nil
}

// write writes name (relative to Dir) atomically.
func (r *Repo) write(name string, data []byte) error {
	path := filepath.Join(r.o.Dir, name)
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, data) {
		return nil
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return fmt.Errorf("tufrepo: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("tufrepo: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("tufrepo: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("tufrepo: %w", err)
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return fmt.Errorf("tufrepo: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("tufrepo: %w", err)
	}
	return nil
}

// Handler serves the repository under prefix (which starts and ends with
// "/"): GET <prefix>N.root.json, <prefix>timestamp.json, <prefix>N.snapshot.json,
// <prefix>N.targets.json, <prefix>targets/<sha256>.<name>. Everything but
// timestamp.json is immutable once written.
func (r *Repo) Handler(prefix string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		name := strings.TrimPrefix(req.URL.Path, prefix)
		dir, base := "", name
		if d, b, ok := strings.Cut(name, "/"); ok {
			dir, base = d, b
		}
		if (dir != "" && dir != "targets") || base == "" || strings.HasPrefix(base, ".") || strings.ContainsAny(base, "/\\") {
			http.NotFound(w, req)
			return
		}
		data, err := os.ReadFile(filepath.Join(r.o.Dir, dir, base))
		if err != nil {
			http.NotFound(w, req)
			return
		}
		if name == "timestamp.json" {
			w.Header().Set("Cache-Control", "no-cache")
		} else {
			w.Header().Set("Cache-Control", "max-age=300")
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(data)
	})
}
