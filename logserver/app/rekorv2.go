package app

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/mod/sumdb/note"

	"github.com/stellaops/tlog/internal/notekey"

	"github.com/stellaops/tlog/logserver/config"
	"github.com/stellaops/tlog/logserver/rekorv2"
	"github.com/stellaops/tlog/logserver/sequence"
	"github.com/stellaops/tlog/logserver/store"
	"github.com/stellaops/tlog/logserver/tlogtiles"
	"github.com/stellaops/tlog/logserver/upstream"
	"github.com/stellaops/tlog/logserver/witnessing"
	"github.com/stellaops/tlog/logserver/witnessing/sqlstore"
	signerclient "github.com/stellaops/tlog/signer/client"
)

// v2Role names the Rekor v2 log's tree in log_tree_roles.
const v2Role = "rekor-v2"

// rekorV2 is the running Rekor v2 log: its tree, write path and feeder.
type rekorV2 struct {
	pub crypto.PublicKey // the note key
	// versions are, for a key in the signer, all its Ed25519 versions
	// (pending, active, expired) with their windows; nil for a key file.
	versions   []keyVersion
	backend    sequence.Backend
	lease      *store.Lease
	seq        *sequence.Log
	api        *rekorv2.Server
	feeder     atomic.Pointer[witnessing.Feeder]
	stopFeeder context.CancelFunc
	feederDone chan struct{}
}

// startRekorV2 opens (or creates, once) the v2 log's tree, starts its write
// path with the v2 personality, its witness feeder, and registers its API
// and tiles on mux. Its metrics are the v1 log's, prefixed "rekorv2_".
func (a *App) startRekorV2(ctx context.Context, cfg *config.Config, dsn string, st *store.Store, reg prometheus.Registerer, mux *http.ServeMux) error {
	c := cfg.RekorV2
	v := &rekorV2{}
	a.v2 = v
	var key crypto.Signer
	if c.Signer != nil {
		sc, err := signerclient.Open(ctx, *c.Signer, a.log)
		if err != nil {
			return fmt.Errorf("rekor_v2.signer: %w", err)
		}
		if key, err = rekorv2.OpenSignerKey(ctx, sc, c.Signer.Key, c.Origin(), c.Signer.Timeout); err != nil {
			return fmt.Errorf("rekor_v2.signer: %w", err)
		}
		if v.versions, err = signerVersions(ctx, sc, c.Signer.Key); err != nil {
			return fmt.Errorf("rekor_v2.signer: %w", err)
		}
	} else {
		k, err := witnessing.LoadOrCreateKey(c.KeyFile, c.CreateKey)
		if err != nil {
			return fmt.Errorf("rekor_v2.key_file: %w", err)
		}
		key = k
	}
	v.pub = key.Public()
	pers, err := rekorv2.NewPersonality(c.Origin(), key)
	if err != nil {
		return fmt.Errorf("rekor_v2: %w", err)
	}
	notary, err := newRotatedNotary(pers, c.Origin(), v.versions)
	if err != nil {
		return fmt.Errorf("rekor_v2: %w", err)
	}
	if c.VKeyFile != "" {
		if err := writeFileAtomic(c.VKeyFile, []byte(pers.Signer().VerifierKey()+"\n")); err != nil {
			return fmt.Errorf("rekor_v2.vkey_file: %w", err)
		}
	}
	if c.PublicKeyFile != "" {
		der, err := x509.MarshalPKIXPublicKey(key.Public())
		if err != nil {
			return err
		}
		if err := writeFileAtomic(c.PublicKeyFile, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})); err != nil {
			return fmt.Errorf("rekor_v2.public_key_file: %w", err)
		}
	}
	recorded, err := st.RoleTree(ctx, v2Role)
	if err != nil {
		return err
	}
	treeID := recorded
	if c.TreeID != 0 {
		if recorded != 0 && recorded != c.TreeID {
			return fmt.Errorf("rekor_v2.tree_id %d, but the database records tree %d for the v2 log", c.TreeID, recorded)
		}
		treeID = c.TreeID
	}
	if cfg.Trillian.Mode == "remote" {
		v.backend, err = sequence.DialRemote(ctx, cfg.Trillian.Address, treeID, cfg.Sequencer.MaxEntryBytes)
	} else {
		v.backend, err = sequence.OpenEmbedded(ctx, dsn, treeID, cfg.Database.MaxConns)
	}
	if err != nil {
		return fmt.Errorf("rekor_v2 tree: %w", err)
	}
	if recorded == 0 {
		if err := st.SetRoleTree(ctx, v2Role, v.backend.TreeID()); err != nil {
			return err
		}
		a.log.Info("rekor v2 tree recorded", "tree_id", v.backend.TreeID(), "created", treeID == 0)
	}
	var lease sequence.Lease
	if cfg.Trillian.Mode == "embedded" {
		if v.lease, err = st.AcquireLease(ctx, v.backend.TreeID()); err != nil {
			return err
		}
		lease = v.lease
	}
	labelled := prometheus.WrapRegistererWithPrefix("rekorv2_", reg)
	v.seq, err = sequence.Open(ctx, v.backend, sequence.MySQLStore(st), notary, sequence.Options{
		OnHead: func(h *sequence.Head) {
			if f := v.feeder.Load(); f != nil {
				f.Update(witnessing.Head{Size: h.Size, Root: h.Root})
			}
		},
		BatchSize:       cfg.Sequencer.BatchSize,
		AdmitWorkers:    cfg.Sequencer.AdmitWorkers,
		Interval:        cfg.Sequencer.Interval,
		TileCache:       cfg.Sequencer.TileCache,
		MaxEntryBytes:   v2MaxEntry(cfg.Sequencer.MaxEntryBytes),
		MaxPendingBytes: cfg.Sequencer.MaxPendingBytes,
		MaxPending:      cfg.Sequencer.MaxPending,
		StateDir:        cfg.Sequencer.StateDir,
		Lease:           lease,
		Logger:          a.log.With("log", v2Role),
		Metrics:         sequence.NewMetrics(labelled),
	})
	if err != nil {
		return fmt.Errorf("rekor_v2: %w", err)
	}
	var pol *witnessing.Policy
	if c.PolicyFile != "" {
		if pol, err = witnessing.ParsePolicyFile(c.PolicyFile); err != nil {
			return err
		}
	}
	w := cfg.Witnessing
	f, err := witnessing.New(ctx, witnessing.Config{
		Policy: pol, Signer: pers.Signer(), Proofs: witnessing.TreeProofs(v.seq.Tree()),
		Store: sqlstore.New(a.db, v.backend.TreeID()), Logger: a.log.With("log", v2Role), Registerer: labelled,
		RequestTimeout: w.RequestTimeout, MaxParallel: w.MaxParallel, MinRetry: w.RetryMin,
		MaxRetry: w.RetryMax, QuorumGrace: w.QuorumGrace, MaxClockSkew: w.MaxClockSkew,
	})
	if err != nil {
		return fmt.Errorf("rekor_v2 witnessing: %w", err)
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	v.stopFeeder, v.feederDone = cancel, make(chan struct{})
	go func() {
		defer close(v.feederDone)
		if err := f.Run(runCtx); err != nil {
			a.log.Error("rekor v2 witness feeder stopped", "error", err)
		}
	}()
	v.feeder.Store(f) // heads from here on reach it (OnHead); the current one:
	f.Update(witnessing.Head{Size: v.seq.Head().Size, Root: v.seq.Head().Root})

	tiles, err := tlogtiles.New(&tlogtiles.Log{
		TreeID: v.backend.TreeID(), Store: st, Tree: v.seq.Tree(),
		Size: func() int64 { return v.seq.Head().Size },
		Latest: func() []byte {
			if cp := f.Latest(); cp != nil {
				return cp.Note
			}
			return nil
		},
	}, c.TilesPrefix, a.log.With("log", v2Role))
	if err != nil {
		return err
	}
	tiles.Register(mux)
	api, err := rekorv2.New(v.seq, st, rekorv2.Options{
		LogID: pers.LogID(), MaxRequestBytes: cfg.API.MaxRequestBytes, WriteTimeout: cfg.API.WriteTimeout,
		Logger: a.log.With("log", v2Role), Outbox: a.upstreamOutbox(upstream.V2),
		ReadOnly: readOnly(c.Freeze),
	})
	if err != nil {
		return err
	}
	api.Register(mux)
	v.api = api
	a.log.Info("rekor v2 log ready", "tree_id", v.backend.TreeID(), "size", v.seq.Head().Size,
		"origin", c.Origin(), "vkey", pers.Signer().VerifierKey(), "url", c.URL, "tiles", c.TilesPrefix,
		"frozen", c.Freeze.Frozen)
	return nil
}

// close stops the v2 log: write path, feeder, backend.
func (v *rekorV2) close() {
	if v.seq != nil {
		v.seq.Close()
	}
	if v.stopFeeder != nil {
		v.stopFeeder()
		<-v.feederDone
	}
	if v.lease != nil {
		v.lease.Release()
	}
	if v.backend != nil {
		v.backend.Close()
	}
}

// v2MaxEntry caps the v2 log's entries at what a tlog-tiles entry bundle
// holds, or lower if the sequencer's cap is lower.
func v2MaxEntry(c int) int {
	if c > 0 && c < store.MaxBundleEntry {
		return c
	}
	return store.MaxBundleEntry
}

// keyVersion is one version of the v2 log's key in the signer.
type keyVersion struct {
	version             int
	pub                 ed25519.PublicKey
	notBefore, notAfter time.Time // zero: unbounded
}

// signerVersions returns every Ed25519 version of key the signer lists,
// whatever its state, with its window.
func signerVersions(ctx context.Context, sc *signerclient.Client, key string) ([]keyVersion, error) {
	ks, err := sc.Keys(ctx)
	if err != nil {
		return nil, err
	}
	var out []keyVersion
	for _, k := range ks.Keys {
		if k.Name != key {
			continue
		}
		for _, v := range k.Versions {
			if v.Algorithm != "ed25519" {
				continue
			}
			block, _ := pem.Decode([]byte(v.PublicKey))
			if block == nil {
				return nil, fmt.Errorf("signer key %q version %d: no PEM public key", key, v.Version)
			}
			p, err := x509.ParsePKIXPublicKey(block.Bytes)
			pub, ok := p.(ed25519.PublicKey)
			if err != nil || !ok {
				return nil, fmt.Errorf("signer key %q version %d: not an Ed25519 public key (%v)", key, v.Version, err)
			}
			kv := keyVersion{version: v.Version, pub: pub}
			if v.NotBefore != nil {
				kv.notBefore = *v.NotBefore
			}
			if v.NotAfter != nil {
				kv.notAfter = *v.NotAfter
			}
			out = append(out, kv)
		}
	}
	return out, nil
}

// rotatedNotary is the v2 personality, which also accepts at start-up a
// stored checkpoint signed by another version of the log's key in the
// signer: the log's last checkpoint before a rotation. The published-head
// records are per key, so the new key's history starts at that head.
type rotatedNotary struct {
	*rekorv2.Personality
	others note.Verifiers
}

func newRotatedNotary(p *rekorv2.Personality, origin string, versions []keyVersion) (sequence.Notary, error) {
	if len(versions) == 0 {
		return p, nil
	}
	var vs []note.Verifier
	for _, v := range versions {
		vk := notekey.VKey(origin, notekey.KeyID(origin, 0x01, v.pub), 0x01, v.pub)
		nv, err := note.NewVerifier(vk)
		if err != nil {
			return nil, fmt.Errorf("signer key version %d: %w", v.version, err)
		}
		vs = append(vs, nv)
	}
	return rotatedNotary{Personality: p, others: note.VerifierList(vs...)}, nil
}

// CheckNote implements sequence.Notary.
func (n rotatedNotary) CheckNote(b []byte) error {
	err := n.Personality.CheckNote(b)
	if err == nil {
		return nil
	}
	if _, e := note.Open(b, n.others); e == nil {
		return nil
	}
	return err
}
