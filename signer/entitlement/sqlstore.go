package entitlement

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// SQLStore is the Store in MySQL/MariaDB: plans and entitlements in
// signer_plans and signer_entitlements (read-only), today's signatures
// counted in signer_audit.
type SQLStore struct {
	entitlements *sql.DB
	audit        *sql.DB
}

// NewSQLStore reads entitlements from one database and counts signatures
// in the audit database (they may be the same).
func NewSQLStore(entitlements, audit *sql.DB) *SQLStore {
	return &SQLStore{entitlements: entitlements, audit: audit}
}

// Get implements Store.
func (s *SQLStore) Get(ctx context.Context, tenant string) (*Entitlement, error) {
	var e Entitlement
	var nb, na sql.NullTime
	var types, keys string
	err := s.entitlements.QueryRowContext(ctx, `SELECT e.tenant, e.not_before, e.not_after, e.suspended,
		p.name, p.predicate_types, p.key_names, p.max_signatures_per_day, p.max_payload_bytes
		FROM signer_entitlements e JOIN signer_plans p ON p.name = e.plan WHERE e.tenant = ?`, tenant).
		Scan(&e.Tenant, &nb, &na, &e.Suspended, &e.Plan.Name, &types, &keys, &e.Plan.MaxSignaturesPerDay, &e.Plan.MaxPayloadBytes)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%w: %q", ErrNotFound, tenant)
	}
	if err != nil {
		return nil, fmt.Errorf("entitlement store: %w", err)
	}
	if err := json.Unmarshal([]byte(types), &e.Plan.PredicateTypes); err != nil {
		return nil, fmt.Errorf("entitlement store: plan %s: predicate_types is not a JSON array of strings: %w", e.Plan.Name, err)
	}
	if err := json.Unmarshal([]byte(keys), &e.Plan.Keys); err != nil {
		return nil, fmt.Errorf("entitlement store: plan %s: key_names is not a JSON array of strings: %w", e.Plan.Name, err)
	}
	e.NotBefore, e.NotAfter = nb.Time, na.Time
	return &e, nil
}

// SignedSince implements Store.
func (s *SQLStore) SignedSince(ctx context.Context, tenant string, t time.Time) (int, error) {
	var n int
	err := s.audit.QueryRowContext(ctx, `SELECT COUNT(*) FROM signer_audit
		WHERE tenant = ? AND recorded_at >= ? AND endpoint = 'dsse' AND decision = 'signed'`, tenant, t.UTC()).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("audit trail: %w", err)
	}
	return n, nil
}
