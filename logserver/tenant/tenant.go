// Package tenant attributes a request to the tenant that submitted it: a
// [Resolver] maps bearer tokens (by SHA-256, compared in constant time) and
// verified client certificates to configured tenants.
//
// Contract: every request that reaches a write handler carries exactly one
// tenant in its context ([FromContext]); a request with no credentials
// carries the configured default tenant with Authenticated false. Code that
// charges budgets or queues entries reads the tenant only from here, never
// from headers.
package tenant

import "context"

// Tenant is who a request is attributed to.
type Tenant struct {
	// Name is the tenant's configured name (budgets, metrics, queue rows).
	Name string
	// Authenticated is true when the name came from a credential (bearer
	// token, client certificate), false for the default tenant.
	Authenticated bool
}

type ctxKey struct{}

// WithContext returns ctx carrying t.
func WithContext(ctx context.Context, t Tenant) context.Context {
	return context.WithValue(ctx, ctxKey{}, t)
}

// FromContext returns the tenant ctx carries, and whether it carries one.
func FromContext(ctx context.Context) (Tenant, bool) {
	t, ok := ctx.Value(ctxKey{}).(Tenant)
	return t, ok
}
