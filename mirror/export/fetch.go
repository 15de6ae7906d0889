package export

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/stellaops/tlog/mirror/c2sp"
	"github.com/stellaops/tlog/mirror/trust"
)

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// maxResponse caps one response body (a tile is 8 KiB; a bundle of large
// entries at most 16 MiB).
const maxResponse = 32 << 20

// fetcher does HTTP GETs and POSTs with retries on network errors and 5xx.
type fetcher struct {
	client  *http.Client
	retries int
}

// statusError is a non-retryable HTTP answer.
type statusError struct {
	URL    string
	Status int
	Body   string
}

func (e *statusError) Error() string {
	return fmt.Sprintf("%s: HTTP %d %s", e.URL, e.Status, e.Body)
}

// Is makes a 404 an fs.ErrNotExist.
func (e *statusError) Is(target error) bool {
	return target == fs.ErrNotExist && e.Status == http.StatusNotFound
}

func (f *fetcher) do(ctx context.Context, method, url, ctype string, body []byte) ([]byte, error) {
	var last error
	for attempt := 0; attempt <= f.retries; attempt++ {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(time.Duration(attempt*attempt) * 200 * time.Millisecond):
			}
		}
		req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
		if err != nil {
			return nil, err
		}
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		resp, err := f.client.Do(req)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			last = err
			continue
		}
		data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse+1))
		resp.Body.Close()
		switch {
		case err != nil:
			last = err
			continue
		case resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests:
			last = &statusError{url, resp.StatusCode, string(bytes.TrimSpace(data[:min(len(data), 200)]))}
			continue
		case resp.StatusCode != http.StatusOK:
			return nil, &statusError{url, resp.StatusCode, string(bytes.TrimSpace(data[:min(len(data), 200)]))}
		case len(data) > maxResponse:
			return nil, fmt.Errorf("%s: response larger than %d bytes", url, maxResponse)
		}
		return data, nil
	}
	return nil, last
}

func (f *fetcher) get(ctx context.Context, url string) ([]byte, error) {
	return f.do(ctx, http.MethodGet, url, "", nil)
}

// tilesSource is a tlog-tiles log.
type tilesSource struct {
	e    *Exporter
	f    *fetcher
	base string
}

func (s *tilesSource) checkpoint(ctx context.Context) ([]byte, error) {
	return s.f.get(ctx, s.base+"/checkpoint")
}

// stage downloads the missing tiles in parallel; a tile already staged by
// an interrupted run is kept (it is verified like the others).
func (s *tilesSource) stage(ctx context.Context, old, c *trust.Checkpoint) (int, error) {
	m := int64(0)
	if old != nil {
		m = old.Size
	}
	staged := s.e.dir.Tiles("staging")
	var todo []c2sp.TileRef
	for _, ref := range c2sp.Tiles(m, c.Size) {
		if !staged.Has(ref) {
			todo = append(todo, ref)
		}
	}
	s.e.progress.start("download", len(todo))
	defer s.e.progress.done()
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(s.e.cfg.Workers)
	for _, ref := range todo {
		g.Go(func() error {
			data, err := s.fetchTile(gctx, ref)
			if err != nil {
				return err
			}
			if err := staged.Stage(ref, data); err != nil {
				return err
			}
			s.e.progress.add(1, len(data))
			s.e.metrics.tiles.Inc()
			return nil
		})
	}
	return len(todo), g.Wait()
}

// fetchTile downloads a tile. A partial tile the log no longer serves
// (tlog-tiles lets a log delete it once the full tile exists) is cut from
// the full tile: its first width hashes or entries are the partial tile.
func (s *tilesSource) fetchTile(ctx context.Context, ref c2sp.TileRef) ([]byte, error) {
	data, err := s.f.get(ctx, s.base+"/"+ref.Path())
	if err == nil || ref.Width == c2sp.TileWidth || !errors.Is(err, fs.ErrNotExist) {
		return data, err
	}
	full := c2sp.TileRef{Level: ref.Level, Index: ref.Index, Width: c2sp.TileWidth}
	data, ferr := s.f.get(ctx, s.base+"/"+full.Path())
	if ferr != nil {
		return nil, err
	}
	if ref.Level >= 0 {
		if len(data) < ref.Width*c2sp.HashSize {
			return nil, fmt.Errorf("%s: %d bytes, too short for %s", full.Path(), len(data), ref.Path())
		}
		return data[:ref.Width*c2sp.HashSize], nil
	}
	var out []byte
	for i := 0; i < ref.Width; i++ {
		if len(data) < 2 {
			return nil, fmt.Errorf("%s: too short for %s", full.Path(), ref.Path())
		}
		n := 2 + (int(data[0])<<8 | int(data[1]))
		if len(data) < n {
			return nil, fmt.Errorf("%s: too short for %s", full.Path(), ref.Path())
		}
		out, data = append(out, data[:n]...), data[n:]
	}
	return out, nil
}
