package main

import (
	"bytes"
	"context"
	"encoding/json"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kombo-ops/integration-deleter/internal/cli"
	"github.com/kombo-ops/integration-deleter/internal/ledger"
	"github.com/kombo-ops/integration-deleter/internal/natstest"
	"github.com/kombo-ops/integration-deleter/internal/testkit"
)

// The names the daemon uses by default, which the commands find in an empty environment.
const (
	streamName   = "INTEGRATION_DELETE"
	consumerName = "integration-deleter"
	ledgerBucket = "INTEGRATION_DELETE_LEDGER"
	protectBkt   = "INTEGRATION_DELETE_PROTECTED"
)

// server is a real embedded NATS server for the operator's commands, with the environment
// that points them at it.
type server struct {
	url string
	js  jetstream.JetStream
	env map[string]string
}

// startServer starts a NATS server with nothing on it.
func startServer(t *testing.T) *server {
	t.Helper()
	url := natstest.Start(t).ClientURL()
	_, js := testkit.JetStream(t, url)
	return &server{url: url, js: js, env: map[string]string{"NATS_URL": url, "USER": "tester"}}
}

// provisioned starts a NATS server holding what the daemon provisions at its start: the
// stream, the durable consumer and the ledger bucket.
func provisioned(t *testing.T) *server {
	t.Helper()
	s := startServer(t)
	ctx := t.Context()
	if _, err := s.js.CreateStream(ctx, jetstream.StreamConfig{Name: streamName, Subjects: []string{"integration.delete.>"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.js.CreateConsumer(ctx, streamName, jetstream.ConsumerConfig{Durable: consumerName,
		AckPolicy: jetstream.AckExplicitPolicy, FilterSubject: "integration.delete.requested"}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := ledger.Open(ctx, s.js, ledger.Options{Bucket: ledgerBucket, Provision: true, Replicas: 1}); err != nil {
		t.Fatal(err)
	}
	return s
}

// with returns the server's environment plus kv.
func (s *server) with(kv map[string]string) lookupFunc {
	m := maps.Clone(s.env)
	maps.Copy(m, kv)
	return env(m)
}

// outcome is what one run of a command printed and returned.
type outcome struct {
	stdout, stderr string
	err            error
}

func (o outcome) exit() int { return cli.ExitCode(o.err) }

// runIn runs the command args in lookupEnv, in-process.
func runIn(t *testing.T, lookupEnv lookupFunc, args ...string) outcome {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	err := run(ctx, args, lookupEnv, &stdout, &stderr)
	return outcome{stdout.String(), stderr.String(), err}
}

// mustRun runs the command and fails the test unless it exits 0.
func (s *server) mustRun(t *testing.T, args ...string) string {
	t.Helper()
	o := runIn(t, s.with(nil), args...)
	if o.err != nil {
		t.Fatalf("run(%q) = %v\nstdout:\n%s\nstderr:\n%s", args, o.err, o.stdout, o.stderr)
	}
	return o.stdout
}

// badLine is a bad command line, and what its error must say.
type badLine struct {
	name   string
	args   []string
	wantIn string
}

// refuses runs each bad command line on s: each must exit 2 with an error saying wantIn.
func (s *server) refuses(t *testing.T, lines []badLine) {
	t.Helper()
	for _, tt := range lines {
		o := runIn(t, s.with(nil), tt.args...)
		if o.exit() != 2 || !strings.Contains(o.err.Error(), tt.wantIn) {
			t.Errorf("%s: run(%q) = %v, exit %d; want exit 2 and an error saying %q", tt.name, tt.args, o.err, o.exit(), tt.wantIn)
		}
	}
}

// jsonLines decodes each line of out into a map.
func jsonLines(t *testing.T, out string) []map[string]any {
	t.Helper()
	var lines []map[string]any
	for line := range strings.Lines(out) {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("not a JSON line: %v: %q", err, line)
		}
		lines = append(lines, m)
	}
	return lines
}

// consumerPaused reads from the server whether the durable consumer is paused.
func (s *server) consumerPaused(t *testing.T) (bool, time.Time) {
	t.Helper()
	c, err := s.js.Consumer(t.Context(), streamName, consumerName)
	if err != nil {
		t.Fatal(err)
	}
	info := c.CachedInfo()
	if !info.Paused || info.Config.PauseUntil == nil {
		return false, time.Time{}
	}
	return true, *info.Config.PauseUntil
}

// keys returns the keys in bucket.
func (s *server) keys(t *testing.T, bucket string) []string {
	t.Helper()
	kv, err := s.js.KeyValue(t.Context(), bucket)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := kv.Keys(t.Context())
	if err != nil && err != jetstream.ErrNoKeysFound {
		t.Fatal(err)
	}
	return keys
}
