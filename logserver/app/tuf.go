package app

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"fmt"
	"net/http"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stellaops/tlog/logserver/config"
	"github.com/stellaops/tlog/logserver/tufrepo"
)

// TUF target names, as cosign v3.1.3 and sigstore-go v1.3.0 look them up.
const (
	tufTrustedRoot   = "trusted_root.json"
	tufSigningConfig = "signing_config.v0.2.json"
)

// startTUF opens the TUF repository, publishes the trust files as its
// targets, writes root.json into trust.dir, serves the repository under
// trust.tuf.path and keeps its timestamp fresh until close.
func (a *App) startTUF(ctx context.Context, tc *config.Trust, trustedRoot, signingConfig []byte, reg prometheus.Registerer, mux *http.ServeMux) error {
	t := tc.TUF
	rootKey, err := openKey(ctx, t.RootKey, a.log)
	if err != nil {
		return fmt.Errorf("trust.tuf.root_key: %w", err)
	}
	onlineKey, err := openKey(ctx, t.OnlineKey, a.log)
	if err != nil {
		return fmt.Errorf("trust.tuf.online_key: %w", err)
	}
	// A key signs one protocol: TUF metadata and SETs are both signatures
	// over SHA-256 of canonical JSON.
	for name, k := range map[string]interface{ Equal(crypto.PublicKey) bool }{
		"root_key": rootKey.Public().(*ecdsa.PublicKey), "online_key": onlineKey.Public().(*ecdsa.PublicKey),
	} {
		if k.Equal(a.signer.Public()) {
			return fmt.Errorf("trust.tuf.%s is the log key: give TUF its own keys", name)
		}
	}
	repo, err := tufrepo.Open(ctx, tufrepo.Options{
		Dir: t.Dir, RootKey: rootKey, OnlineKey: onlineKey,
		RootExpiry: t.RootExpiry, TargetsExpiry: t.TargetsExpiry, TimestampExpiry: t.TimestampExpiry,
		RefreshMargin: t.RefreshMargin, Logger: a.log,
	})
	if err != nil {
		return err
	}
	if err := repo.Publish(ctx, map[string][]byte{tufTrustedRoot: trustedRoot, tufSigningConfig: signingConfig}); err != nil {
		return err
	}
	// Refresh now, so that a repository left stopped past its expiries
	// serves fresh metadata from the first request.
	if _, err := repo.Refresh(ctx); err != nil {
		return err
	}
	if tc.Dir != "" {
		root, err := repo.RootJSON()
		if err != nil {
			return err
		}
		if err := writeFileAtomic(filepath.Join(tc.Dir, "root.json"), root); err != nil {
			return fmt.Errorf("trust.dir: %w", err)
		}
	}
	for _, role := range []string{"root", "targets", "snapshot", "timestamp"} {
		if err := reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "logserver_tuf_expires_in_seconds",
			Help:        "Seconds until the served version of the TUF role expires (the refresh loop replaces it refresh_margin before).",
			ConstLabels: prometheus.Labels{"role": role}},
			func() float64 { return time.Until(repo.Expires(role)).Seconds() })); err != nil {
			return err
		}
	}
	mux.Handle("GET "+t.Path, repo.Handler(t.Path))
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	a.stopTUF, a.tufDone = cancel, make(chan struct{})
	go func() {
		defer close(a.tufDone)
		repo.Run(runCtx)
	}()
	a.log.Info("tuf repository", "path", t.Path, "dir", t.Dir)
	return nil
}
