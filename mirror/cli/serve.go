package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/stellaops/tlog/mirror/kit"
	"github.com/stellaops/tlog/mirror/serve"
)

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("serve", stderr)
	dir := fs.String("dir", "", "mirror directory, unpacked kit or kit archive")
	listen := fs.String("listen", "127.0.0.1:8380", "listen address")
	date := fs.String("snapshot", "", "snapshot date to serve (default: the newest)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *dir == "" {
		return usageError{errors.New("--dir is required")}
	}
	k, err := kit.Open(*dir)
	if err != nil {
		return err
	}
	defer k.Close()
	h, err := serve.New(k.Root, *date)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, WriteTimeout: time.Minute}
	s := h.Served().Meta
	fmt.Fprintf(stdout, "serving snapshot %s (size %d) at http://%s/\n", s.Date, s.Size, ln.Addr())
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
