package main

import (
	"context"
	"io"
	"net/http"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kombo-ops/integration-deleter/internal/cli"
	"github.com/kombo-ops/integration-deleter/internal/testkit"
	"github.com/kombo-ops/integration-deleter/kombo/kombotest"
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestParseConfig(t *testing.T) {
	defaults := config{addr: defaultAddr, opts: kombotest.Options{RateBurst: 1, RateLimitHeader: "ratelimit-reset"}}
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want func(c *config)
	}{
		{name: "defaults", want: func(*config) {}},
		{name: "every flag", args: []string{"--addr", "0.0.0.0:9", "--api-key", "k", "--latency", "1s",
			"--latency-jitter=2ms", "--concurrency-limit", "30", "--rate-limit", "2.5", "--rate-burst", "4",
			"--rate-limit-header", "retry-after-ms", "--failure-rate", "0.1", "--reject-key", "--seed", "-3",
			"--early-grace", "50ms", "--max-calls", "1000", "--verbose"},
			want: func(c *config) {
				*c = config{addr: "0.0.0.0:9", verbose: true, opts: kombotest.Options{APIKey: "k", Latency: time.Second,
					LatencyJitter: 2 * time.Millisecond, ConcurrencyLimit: 30, RateLimit: 2.5, RateBurst: 4,
					RateLimitHeader: "retry-after-ms", FailureRate: 0.1, RejectKey: true, Seed: -3,
					EarlyGrace: 50 * time.Millisecond, MaxCalls: 1000}}
			}},
		{name: "every env", env: map[string]string{"FAKE_KOMBO_ADDR": ":1", "FAKE_KOMBO_API_KEY": "k",
			"FAKE_KOMBO_LATENCY": "1s", "FAKE_KOMBO_LATENCY_JITTER": "2ms", "FAKE_KOMBO_CONCURRENCY_LIMIT": "30",
			"FAKE_KOMBO_RATE_LIMIT": "2.5", "FAKE_KOMBO_RATE_BURST": "4", "FAKE_KOMBO_RATE_LIMIT_HEADER": "none",
			"FAKE_KOMBO_FAILURE_RATE": "1", "FAKE_KOMBO_REJECT_KEY": "true", "FAKE_KOMBO_SEED": "7",
			"FAKE_KOMBO_EARLY_GRACE": "1ms", "FAKE_KOMBO_MAX_CALLS": "5", "FAKE_KOMBO_VERBOSE": "1"},
			want: func(c *config) {
				*c = config{addr: ":1", verbose: true, opts: kombotest.Options{APIKey: "k", Latency: time.Second,
					LatencyJitter: 2 * time.Millisecond, ConcurrencyLimit: 30, RateLimit: 2.5, RateBurst: 4,
					RateLimitHeader: "none", FailureRate: 1, RejectKey: true, Seed: 7,
					EarlyGrace: time.Millisecond, MaxCalls: 5}}
			}},
		{name: "flag wins over env", args: []string{"--concurrency-limit=3", "--reject-key=false"},
			env:  map[string]string{"FAKE_KOMBO_CONCURRENCY_LIMIT": "1", "FAKE_KOMBO_REJECT_KEY": "true"},
			want: func(c *config) { c.opts.ConcurrencyLimit = 3 }},
		{name: "a flag hides a bad env value", args: []string{"--latency", "5ms"},
			env:  map[string]string{"FAKE_KOMBO_LATENCY": "soon"},
			want: func(c *config) { c.opts.Latency = 5 * time.Millisecond }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseConfig(tt.args, env(tt.env))
			if err != nil {
				t.Fatal(err)
			}
			want := defaults
			tt.want(&want)
			if diff := cmp.Diff(want, got, cmp.AllowUnexported(config{})); diff != "" {
				t.Errorf("config (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRunUsageErrors(t *testing.T) {
	tests := []struct {
		name  string
		args  []string
		env   map[string]string
		names []string // the error names these
	}{
		{name: "bad duration flag", args: []string{"--latency", "soon"}, names: []string{"--latency"}},
		{name: "bad duration env", env: map[string]string{"FAKE_KOMBO_LATENCY": "soon"}, names: []string{"FAKE_KOMBO_LATENCY"}},
		{name: "negative limit", args: []string{"--concurrency-limit=-1"}, names: []string{"--concurrency-limit"}},
		{name: "failure rate out of range", env: map[string]string{"FAKE_KOMBO_FAILURE_RATE": "1.5"}, names: []string{"FAKE_KOMBO_FAILURE_RATE"}},
		{name: "unknown hint", args: []string{"--rate-limit-header", "x-ratelimit"}, names: []string{"--rate-limit-header"}},
		{name: "bad bool env", env: map[string]string{"FAKE_KOMBO_REJECT_KEY": "yes please"}, names: []string{"FAKE_KOMBO_REJECT_KEY"}},
		{name: "every problem at once", args: []string{"--seed", "x"},
			env:   map[string]string{"FAKE_KOMBO_RATE_LIMIT": "-1", "FAKE_KOMBO_MAX_CALLS": "many"},
			names: []string{"--seed", "FAKE_KOMBO_RATE_LIMIT", "FAKE_KOMBO_MAX_CALLS"}},
		{name: "unknown flag", args: []string{"--latnecy", "1s"}, names: []string{"latnecy"}},
		{name: "stray argument", args: []string{"serve"}, names: []string{`"serve"`}},
		{name: "healthcheck bad flag", args: []string{"healthcheck", "--adr", "x"}, names: []string{"adr"}},
		{name: "healthcheck bad address", args: []string{"healthcheck", "--addr", "nocolon"}, names: []string{"--addr"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr testkit.SyncBuffer
			err := run(context.Background(), tt.args, env(tt.env), &stdout, &stderr)
			if got := cli.ExitCode(err); got != 2 {
				t.Fatalf("exit code %d (err %v), want 2", got, err)
			}
			for _, n := range tt.names {
				if !strings.Contains(err.Error(), n) {
					t.Errorf("error %q does not name %s", err, n)
				}
			}
			if strings.Contains(stdout.String(), "listening") {
				t.Error("started listening despite a usage error")
			}
		})
	}
}

func TestHelp(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"-h"}, {"healthcheck", "--help"}} {
		var stdout, stderr testkit.SyncBuffer
		err := run(context.Background(), args, env(nil), &stdout, &stderr)
		if cli.ExitCode(err) != 0 || !strings.Contains(stdout.String(), "Usage") {
			t.Errorf("%v: err %v, stdout %q", args, err, stdout.String())
		}
	}
	var stdout testkit.SyncBuffer
	_ = run(context.Background(), []string{"--help"}, env(nil), &stdout, io.Discard)
	for _, s := range settings {
		if !strings.Contains(stdout.String(), "--"+s.flag) || !strings.Contains(stdout.String(), s.env) {
			t.Errorf("help does not mention --%s and %s", s.flag, s.env)
		}
	}
}

// start runs the command in the background and returns its base URL, and a function that
// waits for run to return.
func start(t *testing.T, ctx context.Context, args []string, environ map[string]string) (string, *testkit.SyncBuffer, func() error) {
	t.Helper()
	var stdout, stderr testkit.SyncBuffer
	done := make(chan error, 1)
	go func() { done <- run(ctx, args, env(environ), &stdout, &stderr) }()
	listening := regexp.MustCompile(`listening on (http://\S+/v1)\n`)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if m := listening.FindStringSubmatch(stdout.String()); m != nil {
			return m[1], &stderr, func() error { return <-done }
		}
		select {
		case err := <-done:
			t.Fatalf("run returned %v before listening; stderr:\n%s", err, stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("not listening after 10s; stderr:\n%s", stderr.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestRunServesAndShutsDown(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	base, stderr, wait := start(t, ctx, []string{"--addr", "127.0.0.1:0", "--concurrency-limit", "5"},
		map[string]string{"FAKE_KOMBO_API_KEY": "ks_env", "FAKE_KOMBO_CONCURRENCY_LIMIT": "1"})
	if strings.HasSuffix(base, ":0/v1") {
		t.Fatalf("printed %s, want the actual port", base)
	}
	root := strings.TrimSuffix(base, "/v1")

	tests := []struct {
		method, url, key string
		want             int
	}{
		{"DELETE", base + "/integrations/personio:1", "ks_env", 200},
		{"DELETE", base + "/integrations/personio:1", "ks_env", 404},
		{"DELETE", base + "/integrations/personio:2", "wrong", 401},
		{"GET", base + "/check-api-key", "ks_env", 200},
		{"GET", root + "/_fake/healthz", "", 200},
	}
	for _, tt := range tests {
		req, _ := http.NewRequest(tt.method, tt.url, nil)
		if tt.key != "" {
			req.Header.Set("Authorization", "Bearer "+tt.key)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tt.want {
			t.Errorf("%s %s: %d, want %d", tt.method, tt.url, resp.StatusCode, tt.want)
		}
		if tt.method == "DELETE" && resp.Header.Get("Concurrency-Limit") != "5" {
			t.Errorf("Concurrency-Limit %q, want the flag's 5 over the env's 1", resp.Header.Get("Concurrency-Limit"))
		}
	}

	addr := strings.TrimPrefix(root, "http://")
	if err := run(ctx, []string{"healthcheck"}, env(map[string]string{"FAKE_KOMBO_ADDR": addr}), io.Discard, io.Discard); err != nil {
		t.Errorf("healthcheck: %v", err)
	}
	if n := strings.Count(stderr.String(), "\n"); n != 1 || !strings.Contains(stderr.String(), "url="+base) {
		t.Errorf("want one start log line with the URL and no per-call lines, got:\n%s", stderr.String())
	}
	if strings.Contains(stderr.String(), "ks_env") {
		t.Error("the log shows the API key")
	}

	cancel()
	if err := wait(); err != nil {
		t.Fatalf("run after cancel: %v", err)
	}
	err := run(context.Background(), []string{"healthcheck", "--addr", addr, "--timeout", "2s"}, env(nil), io.Discard, io.Discard)
	if cli.ExitCode(err) != 1 {
		t.Errorf("healthcheck of a stopped fake: exit %d (%v), want 1", cli.ExitCode(err), err)
	}
}

func TestRunStopsOnSIGTERM(t *testing.T) {
	base, stderr, wait := start(t, context.Background(), []string{"--addr", "127.0.0.1:0", "--verbose"}, nil)
	// A call that waits long must not hold up the shutdown.
	resp, err := http.Post(strings.TrimSuffix(base, "/v1")+"/_fake/config", "application/json",
		strings.NewReader(`{"latency":"1h"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	callErr := make(chan error, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodDelete, base+"/integrations/x", nil)
		req.Header.Set("Authorization", "Bearer k")
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		callErr <- err
	}()
	testkit.WaitFor(t, 10*time.Second, "a call in flight", func() bool { return strings.Contains(stats(t, base), `"InFlight": 1`) })

	if err := syscall.Kill(syscall.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := wait(); err != nil {
		t.Fatalf("run after SIGTERM: %v", err)
	}
	if err := <-callErr; err == nil {
		t.Error("the waiting call got an answer, want a dropped connection")
	}
	if !strings.Contains(stderr.String(), "msg=call") || !strings.Contains(stderr.String(), "shutting down") {
		t.Errorf("verbose log lacks the call or the shutdown:\n%s", stderr.String())
	}
}

func stats(t *testing.T, base string) string {
	t.Helper()
	resp, err := http.Get(strings.TrimSuffix(base, "/v1") + "/_fake/stats")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}
