package testkit_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kombo-ops/integration-deleter/internal/testkit"
)

const exposition = `# HELP integration_deleter_results_total Results stored.
# TYPE integration_deleter_results_total counter
integration_deleter_results_total{outcome="deleted"} 7
integration_deleter_results_total{outcome="failed",code="KOMBO.NOT_FOUND"} 2
integration_deleter_results_total{outcome="failed",code="a \"quoted\", value"} 1
integration_deleter_concurrency_cap 8
integration_deleter_concurrency_cap_max 16 1700000000000
not a sample
`

func TestMetricsSum(t *testing.T) {
	m, err := testkit.ParseMetrics(strings.NewReader(exposition))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		labels []string
		want   float64
		found  bool
	}{
		{"integration_deleter_results_total", nil, 10, true},
		{"integration_deleter_results_total", []string{`outcome="failed"`}, 3, true},
		{"integration_deleter_results_total", []string{`outcome="failed"`, `code="KOMBO.NOT_FOUND"`}, 2, true},
		{"integration_deleter_results_total", []string{`code="a \"quoted\", value"`}, 1, true},
		{"integration_deleter_results_total", []string{`outcome="other"`}, 0, false},
		{"integration_deleter_concurrency_cap", nil, 8, true},
		{"integration_deleter_concurrency_cap_max", nil, 16, true},
		{"integration_deleter_concurrency", nil, 0, false},
	}
	for _, tt := range tests {
		got, found := m.Sum(tt.name, tt.labels...)
		if got != tt.want || found != tt.found {
			t.Errorf("Sum(%s, %q) = %v, %v; want %v, %v", tt.name, tt.labels, got, found, tt.want, tt.found)
		}
	}
}

func TestScrapeAndWaitReady(t *testing.T) {
	var ready atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/metrics":
			fmt.Fprint(w, exposition)
		case ready.Load():
			fmt.Fprint(w, "ok")
		default:
			http.Error(w, "not yet", http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	ctx := context.Background()

	m, err := testkit.ScrapeMetrics(ctx, srv.URL+"/metrics")
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := m.Sum("integration_deleter_concurrency_cap"); v != 8 {
		t.Errorf("concurrency cap %v, want 8", v)
	}

	err = testkit.WaitReady(ctx, srv.URL+"/readyz", 100*time.Millisecond, nil)
	if err == nil || !strings.Contains(err.Error(), "503") {
		t.Errorf("WaitReady while not ready: %v, want an error naming the 503", err)
	}
	gone := errors.New("exited")
	if err := testkit.WaitReady(ctx, srv.URL+"/readyz", time.Minute, func() error { return gone }); err != gone {
		t.Errorf("WaitReady for a process that is gone: %v", err)
	}
	time.AfterFunc(50*time.Millisecond, func() { ready.Store(true) })
	if err := testkit.WaitReady(ctx, srv.URL+"/readyz", 10*time.Second, nil); err != nil {
		t.Error(err)
	}
	if code, body := testkit.Get(ctx, srv.URL+"/readyz"); code != http.StatusOK || body != "ok" {
		t.Errorf("Get: %d %q", code, body)
	}
}

func TestFreePort(t *testing.T) {
	if p := testkit.FreePort(t); p <= 0 || p > 65535 {
		t.Errorf("FreePort = %d", p)
	}
}

// fatal records what Fatalf would have failed the test with.
type fatal struct{ msg string }

func (f *fatal) Helper()                        {}
func (f *fatal) Fatalf(format string, a ...any) { f.msg = fmt.Sprintf(format, a...) }
func (f *fatal) Cleanup(func())                 {}

func TestEventually(t *testing.T) {
	var n atomic.Int32
	testkit.WaitFor(t, 10*time.Second, "three calls", func() bool { return n.Add(1) == 3 })

	var f fatal
	testkit.Eventually(&f, 30*time.Millisecond, "the impossible", func() (bool, string) { return false, "still 0" })
	if !strings.Contains(f.msg, "the impossible") || !strings.Contains(f.msg, "still 0") {
		t.Errorf("Eventually failed with %q, want what it waited for and the last detail", f.msg)
	}
}
