package server

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/stellaops/tlog/signer/entitlement"
	"github.com/stellaops/tlog/signer/referrers"
)

// EntitlementsConfig is the entitlements store (tables signer_plans and
// signer_entitlements, sql/signer/003_*.sql) and its outage rules.
type EntitlementsConfig struct {
	// DSN (or DSNEnv, an environment variable holding it) of the store;
	// both empty: the audit database. The user needs SELECT on
	// signer_plans and signer_entitlements.
	DSN    string `yaml:"dsn"`
	DSNEnv string `yaml:"dsn_env"`
	// Refresh interval, cache TTL for outages, store timeout and the
	// emergency bypass (see package entitlement).
	entitlement.Config `yaml:",inline"`
}

func (c *Config) validateStella() []error {
	var errs []error
	needEnt, needRel := false, false
	for _, t := range c.Tenants {
		needEnt = needEnt || t.RequireEntitlement
		needRel = needRel || t.RequireReleaseVerification
		if t.RequireEntitlement && c.Entitlements == nil {
			errs = append(errs, fmt.Errorf("config: tenant %q: require_entitlement needs an entitlements section", t.Name))
		}
		if t.RequireReleaseVerification && c.Releases == nil {
			errs = append(errs, fmt.Errorf("config: tenant %q: require_release_verification needs a releases section", t.Name))
		}
	}
	if e := c.Entitlements; e != nil {
		if e.DSN != "" && e.DSNEnv != "" {
			errs = append(errs, errors.New("config: entitlements: set at most one of dsn and dsn_env"))
		}
		if err := e.Config.Validate(time.Now()); err != nil {
			errs = append(errs, fmt.Errorf("config: %w", err))
		}
	}
	if r := c.Releases; r != nil {
		if err := r.Config.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("config: %w", err))
		}
	}
	return errs
}

// dsn returns the store DSN, or "" for the audit database.
func (e *EntitlementsConfig) dsn() (string, error) {
	if e.DSNEnv == "" {
		return e.DSN, nil
	}
	v := os.Getenv(e.DSNEnv)
	if v == "" {
		return "", fmt.Errorf("config: entitlements: environment variable %s is empty", e.DSNEnv)
	}
	return v, nil
}

// ReleasesConfig is the release-integrity check of scanner images: the
// registry repositories, the trusted scanner release keys, the allow-list
// of trusted scanner digests, verdict caching and the longest manual
// approval (package referrers). Approvals are stored in the audit
// database (signer_release_approvals; the service user needs INSERT and
// SELECT on it).
type ReleasesConfig struct {
	referrers.Config `yaml:",inline"`
}
