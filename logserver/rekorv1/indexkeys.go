package rekorv1

import (
	"bytes"
	"context"
	"fmt"
	"strings"

	"github.com/go-openapi/runtime"
	"github.com/sigstore/rekor/pkg/generated/models"
	"github.com/sigstore/rekor/pkg/types"
)

// IndexKeys returns the search keys of a stored canonical entry, lower-cased
// as the create handler records them; `logserver reindex` rebuilds the index
// with it.
func IndexKeys(_ context.Context, body []byte) ([]string, error) {
	pe, err := models.UnmarshalProposedEntry(bytes.NewReader(body), runtime.JSONConsumer())
	if err != nil {
		return nil, fmt.Errorf("entry: %w", err)
	}
	e, err := types.UnmarshalEntry(pe)
	if err != nil {
		return nil, fmt.Errorf("entry: %w", err)
	}
	keys, err := e.IndexKeys()
	if err != nil {
		return nil, fmt.Errorf("entry index keys: %w", err)
	}
	for i := range keys {
		keys[i] = strings.ToLower(keys[i])
	}
	return keys, nil
}
