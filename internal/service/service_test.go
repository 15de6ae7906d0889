package service

import (
	"bytes"
	"context"
	"flag"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLogger(t *testing.T) {
	var buf bytes.Buffer
	l, err := Logger("warn", "json", &buf)
	if err != nil {
		t.Fatal(err)
	}
	l.Info("hidden")
	l.Warn("shown", "k", 1)
	if strings.Contains(buf.String(), "hidden") || !strings.Contains(buf.String(), `"msg":"shown","k":1`) {
		t.Fatalf("json/warn logger wrote %q", buf.String())
	}
	if _, err := Logger("loud", "xml", io.Discard); err == nil || !strings.Contains(err.Error(), "loud") || !strings.Contains(err.Error(), "xml") {
		t.Fatalf("bad level and format: %v", err)
	}
}

func TestReadSecret(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "s")
	os.WriteFile(p, []byte("  tok\n"), 0o600)
	if s, err := ReadSecret(p); err != nil || s != "tok" {
		t.Fatalf("%q %v", s, err)
	}
	os.WriteFile(p, []byte("\n"), 0o600)
	if _, err := ReadSecret(p); err == nil {
		t.Fatal("empty secret accepted")
	}
	if _, err := ReadSecret(filepath.Join(dir, "missing")); err == nil {
		t.Fatal("missing secret accepted")
	}
}

// TestRunDrains: a request in flight when the context ends is answered;
// drain runs before the servers stop; Run returns once they have.
func TestRunDrains(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		time.Sleep(300 * time.Millisecond)
		w.Write([]byte("done"))
	})
	ctx, cancel := context.WithCancel(context.Background())
	drained, up := false, make(chan struct{})
	ran := make(chan error, 1)
	go func() {
		ran <- Run(ctx, slog.New(slog.NewTextHandler(io.Discard, nil)), Timeouts{Shutdown: 5 * time.Second},
			Hooks{Started: func() { close(up) }, Drain: func() { drained = true }}, Server{Name: "public", Listener: ln, Handler: h})
	}()
	<-up
	got := make(chan string, 1)
	go func() {
		resp, err := http.Get("http://" + ln.Addr().String())
		if err != nil {
			got <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		got <- string(b)
	}()
	<-started
	cancel()
	if err := <-ran; err != nil {
		t.Fatal(err)
	}
	if !drained {
		t.Fatal("drain did not run")
	}
	if s := <-got; s != "done" {
		t.Fatalf("in-flight request got %q", s)
	}
	if _, err := http.Get("http://" + ln.Addr().String()); err == nil {
		t.Fatal("still serving after Run returned")
	}
}

func TestConfigFlag(t *testing.T) {
	for _, args := range [][]string{{"-config", "a.yaml"}, {"-c", "a.yaml"}} {
		fs := flag.NewFlagSet("x", flag.ContinueOnError)
		p := ConfigFlag(fs, "def.yaml")
		if err := fs.Parse(args); err != nil || *p != "a.yaml" {
			t.Fatalf("%v: %q %v", args, *p, err)
		}
	}
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	if p := ConfigFlag(fs, "def.yaml"); fs.Parse(nil) != nil || *p != "def.yaml" {
		t.Fatalf("default %q", *p)
	}
}

func TestLoggingAndTimeoutsCheck(t *testing.T) {
	var l Logging
	if err := l.Check("logging"); err != nil || l != (Logging{Level: "info", Format: "text"}) {
		t.Fatalf("%+v %v", l, err)
	}
	bad := Logging{Level: "loud", Format: "xml"}
	if err := bad.Check("logging"); err == nil || !strings.Contains(err.Error(), `logging.level "loud"`) || !strings.Contains(err.Error(), `logging.format "xml"`) {
		t.Fatalf("%v", err)
	}
	tm := Timeouts{Read: 3 * time.Second}
	if err := tm.Check(); err != nil || tm.Read != 3*time.Second || tm.ReadHeader != 5*time.Second || tm.Shutdown != 15*time.Second {
		t.Fatalf("%+v %v", tm, err)
	}
	neg := Timeouts{Idle: -time.Second}
	if err := neg.Check(); err == nil || !strings.Contains(err.Error(), "idle_timeout -1s") {
		t.Fatalf("%v", err)
	}
}
