package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/kombo-ops/integration-deleter/consumer"
	"github.com/kombo-ops/integration-deleter/internal/cli"
	"github.com/kombo-ops/integration-deleter/internal/natstest"
	"github.com/kombo-ops/integration-deleter/internal/testkit"
	"github.com/kombo-ops/integration-deleter/kombo/kombotest"
)

const apiKey = "ks_live_cl1T3st_never_print_me"

// env is an environment holding only kv: the one the tests run in does not leak into them.
func env(kv map[string]string) lookupFunc {
	return func(name string) (string, bool) {
		v, ok := kv[name]
		return v, ok
	}
}

func TestVersion(t *testing.T) {
	t.Parallel()
	var stdout, stderr bytes.Buffer
	if err := run(context.Background(), []string{"version"}, env(nil), &stdout, &stderr); err != nil {
		t.Fatalf("run(version) = %v", err)
	}
	if got, want := stdout.String(), "integration-deleter dev\n"; got != want {
		t.Errorf("stdout = %q, want %q", got, want)
	}
}

func TestHelp(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args   []string
		wantIn []string
	}{
		{args: []string{"--help"}, wantIn: []string{"Usage:", "integration-deleter request", "Exit codes"}},
		{args: []string{"-h"}, wantIn: []string{"Usage:"}},
		{args: []string{"help"}, wantIn: []string{"Usage:"}},
		{args: []string{"run", "--help"}, wantIn: []string{"Usage: integration-deleter run", "KOMBO_API_KEY", "NATS_URL", "SHUTDOWN_TIMEOUT"}},
		{args: []string{"request", "--help"}, wantIn: []string{"Usage: integration-deleter request", "-wait", "-timeout"}},
		{args: []string{"request", "--wait", "-h", "personio:x"}, wantIn: []string{"Usage: integration-deleter request"}},
		{args: []string{"version", "--help"}, wantIn: []string{"Usage: integration-deleter version"}},
		{args: []string{"healthcheck", "--help"}, wantIn: []string{"Usage: integration-deleter healthcheck", "HTTP_ADDR"}},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			t.Parallel()
			var stdout, stderr bytes.Buffer // help must work without any configuration
			err := run(context.Background(), tt.args, env(nil), &stdout, &stderr)
			if err != nil {
				t.Fatalf("run(%q) = %v, want nil (exit 0)", tt.args, err)
			}
			for _, want := range tt.wantIn {
				if !strings.Contains(stdout.String(), want) {
					t.Errorf("stdout does not contain %q:\n%s", want, stdout.String())
				}
			}
		})
	}
}

func TestUsageErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		args   []string
		wantIn string // in the error
	}{
		{name: "unknown command", args: []string{"frobnicate"}, wantIn: `"frobnicate"`},
		{name: "request without ids", args: []string{"request"}, wantIn: "integration id"},
		{name: "request --wait without ids", args: []string{"request", "--wait"}, wantIn: "integration id"},
		{name: "request with an unknown flag", args: []string{"request", "--nope", "personio:x"}, wantIn: "nope"},
		{name: "request with a bad timeout", args: []string{"request", "--timeout", "soon", "personio:x"}, wantIn: "timeout"},
		{name: "run with an argument", args: []string{"run", "extra"}, wantIn: "extra"},
		{name: "run with an unknown flag", args: []string{"run", "--port=1"}, wantIn: "port"},
		{name: "unknown flag without command", args: []string{"--nope"}, wantIn: "nope"},
		{name: "version with an argument", args: []string{"version", "x"}, wantIn: "no arguments"},
		{name: "healthcheck with an argument", args: []string{"healthcheck", "x"}, wantIn: "no arguments"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var stdout, stderr bytes.Buffer
			err := run(context.Background(), tt.args, env(nil), &stdout, &stderr)
			if got := cli.ExitCode(err); got != 2 {
				t.Fatalf("run(%q) = %v, exit code %d, want 2", tt.args, err, got)
			}
			if !strings.Contains(err.Error(), tt.wantIn) {
				t.Errorf("error %q does not contain %q", err, tt.wantIn)
			}
		})
	}
}

func TestUnknownCommandPrintsUsage(t *testing.T) {
	t.Parallel()
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), []string{"frobnicate"}, env(nil), &stdout, &stderr)
	if cli.ExitCode(err) != 2 {
		t.Fatalf("run = %v, want exit code 2", err)
	}
	if !strings.Contains(stderr.String(), "Usage:") {
		t.Errorf("stderr does not show the usage:\n%s", stderr.String())
	}
	if stdout.Len() != 0 {
		t.Errorf("stdout = %q, want nothing", stdout.String())
	}
}

func TestBadConfig(t *testing.T) {
	t.Parallel()
	const natsPassword = "n4ts_pw_never_print_me"
	tests := []struct {
		name      string
		args      []string
		env       map[string]string
		wantNamed []string
		secrets   []string
	}{
		{
			name:      "value that does not parse and no key",
			args:      []string{"run"},
			env:       map[string]string{"KOMBO_MAX_CONCURRENCY": "abc", "NATS_USER": "deleter", "NATS_PASSWORD": natsPassword},
			wantNamed: []string{"KOMBO_MAX_CONCURRENCY", "KOMBO_API_KEY"},
			secrets:   []string{natsPassword},
		},
		{
			name:      "values out of range and no key",
			args:      []string{"run"},
			env:       map[string]string{"KOMBO_MAX_CONCURRENCY": "0", "KOMBO_TIMEOUT": "-1s", "NATS_USER": "deleter", "NATS_PASSWORD": natsPassword},
			wantNamed: []string{"KOMBO_MAX_CONCURRENCY", "KOMBO_TIMEOUT", "KOMBO_API_KEY"},
			secrets:   []string{natsPassword},
		},
		{
			name:      "bad key and bad values",
			args:      []string{"run"},
			env:       map[string]string{"KOMBO_API_KEY": apiKey + " x", "KOMBO_MAX_ATTEMPTS": "0", "LOG_LEVEL": "loud"},
			wantNamed: []string{"KOMBO_API_KEY", "KOMBO_MAX_ATTEMPTS", "LOG_LEVEL"},
			secrets:   []string{apiKey},
		},
		{
			name:      "two values that do not parse",
			args:      []string{"run"},
			env:       map[string]string{"KOMBO_API_KEY": apiKey, "KOMBO_TIMEOUT": "soon", "JETSTREAM_PROVISION": "maybe"},
			wantNamed: []string{"KOMBO_TIMEOUT", "JETSTREAM_PROVISION"},
			secrets:   []string{apiKey},
		},
		{
			name:      "request with a bad NATS_URL",
			args:      []string{"request", "personio:x"},
			env:       map[string]string{"NATS_URL": "http://deleter:" + natsPassword + "@127.0.0.1:4222", "KOMBO_API_KEY": apiKey},
			wantNamed: []string{"NATS_URL"},
			secrets:   []string{natsPassword, apiKey},
		},
		{
			name:      "healthcheck with a bad HTTP_ADDR",
			args:      []string{"healthcheck"},
			env:       map[string]string{"HTTP_ADDR": "8080"},
			wantNamed: []string{"HTTP_ADDR"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var stdout, stderr bytes.Buffer
			err := run(context.Background(), tt.args, env(tt.env), &stdout, &stderr)
			if got := cli.ExitCode(err); got != 2 {
				t.Fatalf("run(%q) = %v, exit code %d, want 2", tt.args, err, got)
			}
			for _, name := range tt.wantNamed {
				if !strings.Contains(err.Error(), name) {
					t.Errorf("the error does not name %s:\n%s", name, err)
				}
			}
			for _, s := range tt.secrets {
				if out := err.Error() + stdout.String() + stderr.String(); strings.Contains(out, s) {
					t.Errorf("a secret is printed:\n%s", out)
				}
			}
		})
	}
}

func TestHealthcheck(t *testing.T) {
	t.Parallel()
	healthy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			http.NotFound(w, r)
			return
		}
		w.Write([]byte("ok\n"))
	}))
	t.Cleanup(healthy.Close)
	sick := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "sick", http.StatusServiceUnavailable)
	}))
	t.Cleanup(sick.Close)
	port := func(s *httptest.Server) string {
		_, p, err := net.SplitHostPort(s.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name     string
		httpAddr string
		wantExit int
	}{
		{name: "port only", httpAddr: ":" + port(healthy), wantExit: 0},
		{name: "all interfaces", httpAddr: "0.0.0.0:" + port(healthy), wantExit: 0},
		{name: "loopback", httpAddr: "127.0.0.1:" + port(healthy), wantExit: 0},
		{name: "answers 503", httpAddr: ":" + port(sick), wantExit: 1},
		{name: "nothing listens", httpAddr: ":" + strconv.Itoa(testkit.FreePort(t)), wantExit: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var stdout, stderr bytes.Buffer
			err := run(context.Background(), []string{"healthcheck"}, env(map[string]string{"HTTP_ADDR": tt.httpAddr}), &stdout, &stderr)
			if got := cli.ExitCode(err); got != tt.wantExit {
				t.Fatalf("run(healthcheck) = %v, exit code %d, want %d", err, got, tt.wantExit)
			}
			if tt.wantExit == 0 && !strings.Contains(stdout.String(), "healthy") {
				t.Errorf("stdout = %q, want it to say healthy", stdout.String())
			}
		})
	}
}

func TestRequestWithoutNATS(t *testing.T) {
	t.Parallel()
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), []string{"request", "personio:x"}, env(map[string]string{"NATS_URL": "nats://127.0.0.1:" + strconv.Itoa(testkit.FreePort(t))}), &stdout, &stderr)
	if got := cli.ExitCode(err); got != 1 {
		t.Fatalf("run(request) = %v, exit code %d, want 1 (a failure at run time)", err, got)
	}
}

// TestRequestWait runs the daemon and the request command in-process against an
// embedded NATS server and the fake Kombo.
func TestRequestWait(t *testing.T) {
	t.Parallel()
	ns := natstest.Start(t)
	fake, base := kombotest.NewServer(t, kombotest.Options{APIKey: apiKey})
	daemonEnv := env(map[string]string{
		"KOMBO_API_KEY":    apiKey,
		"KOMBO_BASE_URL":   base,
		"NATS_URL":         ns.ClientURL(),
		"HTTP_ADDR":        "127.0.0.1:0",
		"LOG_LEVEL":        "debug",
		"LOG_FORMAT":       "json",
		"SHUTDOWN_TIMEOUT": "5s",
	})

	// The daemon.
	var daemonOut, daemonErr testkit.SyncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"run"}, daemonEnv, &daemonOut, &daemonErr) }()
	defer func() {
		if t.Failed() {
			t.Logf("daemon log:\n%s", daemonErr.String())
		}
	}()
	addr := waitListening(t, &daemonErr, done)
	if err := testkit.WaitReady(ctx, "http://"+addr+"/readyz", 10*time.Second, nil); err != nil {
		t.Fatal(err)
	}

	t.Run("deleted and not found", func(t *testing.T) {
		var stdout, stderr bytes.Buffer
		err := run(context.Background(), []string{"request", "--wait", "--timeout", "15s", "--reason", "offboarding", "personio:a", "missing:b"}, daemonEnv, &stdout, &stderr)
		if err != nil {
			t.Fatalf("run(request --wait) = %v, want nil; stderr:\n%s", err, stderr.String())
		}
		got := resultLines(t, stdout.String())
		no, yes := false, true
		want := []consumer.Result{
			{IntegrationID: "missing:b", Status: "deleted", NotFound: &yes, Attempts: 1, RequestedBy: "integration-deleter-cli", Reason: "offboarding"},
			{IntegrationID: "personio:a", Status: "deleted", NotFound: &no, Attempts: 1, RequestedBy: "integration-deleter-cli", Reason: "offboarding"},
		}
		if diff := cmp.Diff(got, want, cmpopts.IgnoreFields(consumer.Result{}, "RequestID", "CompletedAt")); diff != "" {
			t.Errorf("printed results mismatch (-got +want):\n%s", diff)
		}
		for _, r := range got {
			if !strings.HasPrefix(r.RequestID, "cli-") || r.CompletedAt == "" {
				t.Errorf("result %+v: want a cli- request id and completed_at", r)
			}
		}
	})

	t.Run("failed", func(t *testing.T) {
		var stdout, stderr bytes.Buffer
		err := run(context.Background(), []string{"request", "--wait", "--timeout", "15s", "invalid:c"}, daemonEnv, &stdout, &stderr)
		if got := cli.ExitCode(err); got != 1 {
			t.Fatalf("run(request --wait invalid:c) = %v, exit code %d, want 1", err, got)
		}
		got := resultLines(t, stdout.String())
		if len(got) != 1 || got[0].Status != "failed" || got[0].Error == nil ||
			got[0].Error.Code != "PLATFORM.INPUT_INVALID" || got[0].Error.HTTPStatus != http.StatusBadRequest {
			t.Errorf("printed %+v, want one failed result with PLATFORM.INPUT_INVALID and http_status 400", got)
		}
	})

	t.Run("without wait", func(t *testing.T) {
		var stdout, stderr bytes.Buffer
		if err := run(context.Background(), []string{"request", "personio:nowait"}, daemonEnv, &stdout, &stderr); err != nil {
			t.Fatalf("run(request) = %v", err)
		}
		if out := stdout.String(); !strings.HasPrefix(out, "published request_id=cli-") || !strings.Contains(out, "integration_id=personio:nowait") {
			t.Errorf("stdout = %q, want the published request", out)
		}
		testkit.WaitFor(t, 10*time.Second, "the daemon to delete personio:nowait", func() bool { return fake.IsDeleted("personio:nowait") })
	})

	cancel()
	select {
	case err := <-done:
		if got := cli.ExitCode(err); got != 0 {
			t.Errorf("run(run) after cancel = %v, exit code %d, want 0", err, got)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the daemon did not stop within 15s of its context ending")
	}
	logs := daemonErr.String()
	if strings.Contains(logs, apiKey) {
		t.Error("the daemon logged the API key")
	}
	if !strings.Contains(logs, "stopped cleanly") {
		t.Errorf("the daemon log does not end with a clean stop:\n%s", logs)
	}
	if daemonOut.String() != "" {
		t.Errorf("the daemon wrote to stdout: %q", daemonOut.String())
	}
}

// waitListening reads the daemon's JSON log until it says where its HTTP server listens.
func waitListening(t *testing.T, logs *testkit.SyncBuffer, done <-chan error) string {
	t.Helper()
	var addr string
	testkit.WaitFor(t, 15*time.Second, "the daemon's HTTP server", func() bool {
		select {
		case err := <-done:
			t.Fatalf("the daemon stopped at start: %v\n%s", err, logs.String())
		default:
		}
		sc := bufio.NewScanner(strings.NewReader(logs.String()))
		for sc.Scan() {
			var l struct {
				Msg  string `json:"msg"`
				Addr string `json:"addr"`
			}
			if json.Unmarshal(sc.Bytes(), &l) == nil && strings.HasPrefix(l.Msg, "serving /healthz") && l.Addr != "" {
				addr = l.Addr
				return true
			}
		}
		return false
	})
	return addr
}

// resultLines decodes one JSON result per line, sorted by integration id.
func resultLines(t *testing.T, out string) []consumer.Result {
	t.Helper()
	var rs []consumer.Result
	for line := range strings.Lines(out) {
		var r consumer.Result
		dec := json.NewDecoder(strings.NewReader(line))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&r); err != nil {
			t.Fatalf("output line is not a result: %v: %q", err, line)
		}
		rs = append(rs, r)
	}
	slices.SortFunc(rs, func(a, b consumer.Result) int { return strings.Compare(a.IntegrationID, b.IntegrationID) })
	return rs
}

func TestFlagsAfterArguments(t *testing.T) {
	t.Parallel()
	var out, errOut bytes.Buffer
	var wait bool
	var timeout time.Duration
	define := func(fs *flag.FlagSet) {
		fs.BoolVar(&wait, "wait", false, "")
		fs.DurationVar(&timeout, "timeout", 0, "")
	}
	got, err := parseFlags("request", "", []string{"a", "--wait", "b", "--timeout", "5s", "c", "--", "--d"}, &out, &errOut, define)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"a", "b", "c", "--d"}; !slices.Equal(got, want) || !wait || timeout != 5*time.Second {
		t.Errorf("got %q wait=%v timeout=%s, want %q wait=true timeout=5s", got, wait, timeout, want)
	}
}
