package app

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/http"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stellaops/tlog/logserver/config"
	"github.com/stellaops/tlog/logserver/store"
	"github.com/stellaops/tlog/logserver/trust"
)

// startTrust generates trusted_root.json and signing_config.json from the
// running logs, writes them (and the logs' PEM keys) into trust.dir and
// serves them under GET /trust/; with trust.tuf, also as the targets of the
// appliance's TUF repository.
func (a *App) startTrust(ctx context.Context, cfg *config.Config, st *store.Store, reg prometheus.Registerer, mux *http.ServeMux) error {
	tc := cfg.Trust
	start, err := st.TreeCreated(ctx, a.seq.Head().TreeID)
	if err != nil {
		return fmt.Errorf("trust: %w", err)
	}
	logs := []trust.Log{{BaseURL: tc.URL, APIVersion: 1, PublicKey: a.signer.Public(), Start: start}}
	signing := map[string]any{"rekor-v1.pub.pem": a.signer.Public()}
	if a.v2 != nil {
		v2start, err := st.TreeCreated(ctx, a.v2.seq.Head().TreeID)
		if err != nil {
			return fmt.Errorf("trust: %w", err)
		}
		// The v2 log is listed first: clients pick the highest API version.
		logs = append(v2Logs(cfg.RekorV2.URL, a.v2, v2start), logs...)
		signing["rekor-v2.pub.pem"] = a.v2.pub
	}
	logs, signingLogs, err := a.freezeTrust(ctx, cfg, st, logs)
	if err != nil {
		return fmt.Errorf("trust: %w", err)
	}
	tr, err := trust.TrustedRoot(logs)
	if err != nil {
		return err
	}
	sc, err := trust.SigningConfig(signingLogs, tc.Operator)
	if err != nil {
		return err
	}
	files := map[string][]byte{"trusted_root.json": tr, "signing_config.json": sc}
	for name, pub := range signing {
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			return err
		}
		files[name] = pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	}
	for name, data := range files {
		if tc.Dir != "" {
			if err := writeFileAtomic(filepath.Join(tc.Dir, name), data); err != nil {
				return fmt.Errorf("trust.dir: %w", err)
			}
		}
		ctype := "application/json"
		if filepath.Ext(name) == ".pem" {
			ctype = "application/x-pem-file"
		}
		mux.HandleFunc("GET /trust/"+name, func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", ctype)
			w.Header().Set("Cache-Control", "no-cache")
			_, _ = w.Write(data)
		})
	}
	a.log.Info("trust files", "logs", len(logs), "dir", tc.Dir)
	if tc.TUF != nil {
		return a.startTUF(ctx, tc, tr, sc, reg, mux)
	}
	return nil
}

// v2Logs lists the v2 log under each of its keys: the key it signs with, or,
// for a key in the signer, every Ed25519 version of it with the signer's
// window (so a version that starts signing later is trusted before it
// does, and a retired one keeps its old bundles verifiable). No version is
// valid before the tree was created; a version that expired before then
// never signed this log and is left out.
func v2Logs(url string, v *rekorV2, created time.Time) []trust.Log {
	if v.versions == nil {
		return []trust.Log{{BaseURL: url, APIVersion: 2, PublicKey: v.pub, Start: created}}
	}
	var logs []trust.Log
	for _, kv := range v.versions {
		if !kv.notAfter.IsZero() && !kv.notAfter.After(created) {
			continue
		}
		start := kv.notBefore
		if start.Before(created) {
			start = created
		}
		logs = append(logs, trust.Log{BaseURL: url, APIVersion: 2, PublicKey: kv.pub, Start: start, End: kv.notAfter})
	}
	return logs
}
