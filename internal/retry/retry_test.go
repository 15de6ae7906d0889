package retry

import (
	"net/http"
	"testing"
	"time"
)

func TestPolicy(t *testing.T) {
	var p Policy
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	if p.MaxAttempts != 3 || p.InitialDelay != 5*time.Second || p.MaxDelay != 5*time.Minute || p.Multiplier != 2 {
		t.Fatalf("defaults %+v", p)
	}
	for failures, want := range map[int]time.Duration{0: 0, 1: 5 * time.Second, 2: 10 * time.Second, 3: 20 * time.Second, 7: 5 * time.Minute, 100: 5 * time.Minute} {
		if got := p.Delay(failures); got != want {
			t.Errorf("Delay(%d) = %s, want %s", failures, got, want)
		}
	}
	if p.Exhausted(2) || !p.Exhausted(3) {
		t.Error("Exhausted: 3 attempts allowed")
	}
	forever := Policy{MaxAttempts: -1, InitialDelay: time.Second}
	if err := forever.Validate(); err != nil || forever.Exhausted(1000) {
		t.Errorf("max_attempts -1 retries for ever: %v %+v", err, forever)
	}
	for _, bad := range []Policy{{MaxAttempts: -2}, {InitialDelay: -time.Second}, {InitialDelay: time.Minute, MaxDelay: time.Second}, {Multiplier: 0.5}} {
		if err := bad.Validate(); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}

func TestAfter(t *testing.T) {
	for v, want := range map[string]time.Duration{"": 0, "7": 7 * time.Second, " 3 ": 3 * time.Second, "-2": 0, "soon": 0,
		time.Now().Add(-time.Hour).UTC().Format(http.TimeFormat): 0} {
		if got := After(http.Header{"Retry-After": {v}}); got != want {
			t.Errorf("After(%q) = %s, want %s", v, got, want)
		}
	}
	future := time.Now().Add(time.Minute).UTC().Format(http.TimeFormat)
	if got := After(http.Header{"Retry-After": {future}}); got < 50*time.Second || got > time.Minute {
		t.Errorf("After(%q) = %s, want about a minute", future, got)
	}
}
