package export

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"

	"github.com/stellaops/tlog/mirror/snapshot"
)

// fetchPending reads every page of the logserver's pending upstream
// replay list (Config.PendingURL).
func (e *Exporter) fetchPending(ctx context.Context) (*snapshot.Pending, error) {
	u, err := url.Parse(e.cfg.PendingURL)
	if err != nil {
		return nil, err
	}
	p := &snapshot.Pending{Source: e.cfg.PendingURL, FetchedAt: e.Now().UTC(), Entries: []snapshot.PendingEntry{}}
	after := ""
	for {
		q := u.Query()
		q.Set("state", "pending")
		if after != "" {
			q.Set("after", after)
		}
		page := *u
		page.RawQuery = q.Encode()
		data, err := e.fetch.get(ctx, page.String())
		if err != nil {
			return nil, fmt.Errorf("pending list: %w", err)
		}
		var l struct {
			Entries []snapshot.PendingEntry `json:"entries"`
			Next    string                  `json:"next"`
		}
		if err := json.Unmarshal(data, &l); err != nil {
			return nil, fmt.Errorf("pending list %s: %w", page.Redacted(), err)
		}
		p.Entries = append(p.Entries, l.Entries...)
		if l.Next == "" || l.Next == after {
			break
		}
		after = l.Next
	}
	p.Count = len(p.Entries)
	for _, en := range p.Entries {
		if p.Oldest == nil || en.CreatedAt.Before(*p.Oldest) {
			t := en.CreatedAt
			p.Oldest = &t
		}
	}
	return p, nil
}
