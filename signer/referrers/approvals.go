package referrers

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/stellaops/tlog/signer/api"
)

// ErrUnverified is the refusal of a producer image that neither passes
// verification nor has an active manual approval.
var ErrUnverified = errors.New("release: scanner image not verified")

// Approvals are the manual approvals of scanner images
// (signer_release_approvals, append-only: the service needs INSERT and
// SELECT). Each one is also an audit row of the request that made it.
type Approvals struct{ db *sql.DB }

// NewApprovals uses db.
func NewApprovals(db *sql.DB) *Approvals { return &Approvals{db: db} }

// Add records a and returns it with its id.
func (a *Approvals) Add(ctx context.Context, r api.ReleaseApproval) (api.ReleaseApproval, error) {
	res, err := a.db.ExecContext(ctx, `INSERT INTO signer_release_approvals
		(image_digest, tenant, approved_by, ticket, reason, request_id, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
		r.Digest, r.Tenant, r.ApprovedBy, r.Ticket, r.Reason, r.RequestID, r.CreatedAt.UTC(), r.ExpiresAt.UTC())
	if err != nil {
		return r, fmt.Errorf("release approvals: %w", err)
	}
	r.ID, err = res.LastInsertId()
	return r, err
}

// Active returns the latest approval of digest for tenant (or for every
// tenant) still valid at now, or nil.
func (a *Approvals) Active(ctx context.Context, digest, tenant string, now time.Time) (*api.ReleaseApproval, error) {
	var r api.ReleaseApproval
	err := a.db.QueryRowContext(ctx, `SELECT id, image_digest, tenant, approved_by, ticket, reason, request_id, created_at, expires_at
		FROM signer_release_approvals WHERE image_digest = ? AND (tenant = ? OR tenant = '') AND expires_at > ? AND created_at <= ?
		ORDER BY id DESC LIMIT 1`, digest, tenant, now.UTC(), now.UTC()).
		Scan(&r.ID, &r.Digest, &r.Tenant, &r.ApprovedBy, &r.Ticket, &r.Reason, &r.RequestID, &r.CreatedAt, &r.ExpiresAt)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("release approvals: %w", err)
	}
	return &r, nil
}
