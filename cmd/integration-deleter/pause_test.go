package main

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kombo-ops/integration-deleter/daemon"
	"github.com/kombo-ops/integration-deleter/internal/control"
)

// TestPauseResume pauses and resumes the durable consumer and checks both what is printed
// and what is on the server.
func TestPauseResume(t *testing.T) {
	t.Parallel()
	s := provisioned(t)

	out := s.mustRun(t, "pause", "--reason", "incident 42", "--by", "alice")
	if want := "paused until resume: incident 42 (by alice)\n"; out != want {
		t.Errorf("pause printed %q, want %q", out, want)
	}
	if paused, until := s.consumerPaused(t); !paused || until.Before(time.Now().AddDate(100, 0, 0)) {
		t.Errorf("consumer paused=%v until %s; want paused until resume", paused, until)
	}
	if got := s.mustRun(t, "resume"); got != "resumed\n" {
		t.Errorf("resume printed %q, want %q", got, "resumed\n")
	}
	if paused, _ := s.consumerPaused(t); paused {
		t.Error("the consumer is still paused after resume")
	}

	// --json, --for, and flags after the reason's value; the default --by.
	before := time.Now()
	lines := jsonLines(t, s.mustRun(t, "pause", "--json", "--reason", "deploy", "--for", "1h"))
	if len(lines) != 1 || lines[0]["paused"] != true || lines[0]["reason"] != "deploy" || len(lines[0]) != 3 {
		t.Fatalf("pause --json printed %v, want one line {paused: true, until, reason: deploy}", lines)
	}
	until, err := time.Parse(time.RFC3339, lines[0]["until"].(string))
	if err != nil || until.Before(before.Add(time.Hour-time.Second)) || until.After(time.Now().Add(time.Hour)) {
		t.Errorf("until = %v (%v), want an hour from now", lines[0]["until"], err)
	}
	if paused, serverUntil := s.consumerPaused(t); !paused || !serverUntil.Truncate(time.Second).Equal(until) {
		t.Errorf("consumer paused=%v until %s; want until %s", paused, serverUntil, until)
	}
	host, _ := os.Hostname()
	if got := s.mustRun(t, "pause", "--reason", "again", "--until", until.Format(time.RFC3339)); !strings.HasSuffix(got, "again (by tester@"+host+")\n") {
		t.Errorf("pause printed %q, want the default --by tester@%s", got, host)
	}
	if diff := cmp.Diff(jsonLines(t, s.mustRun(t, "resume", "--json")),
		[]map[string]any{{"paused": false, "until": nil, "reason": ""}}); diff != "" {
		t.Errorf("resume --json (-got +want):\n%s", diff)
	}
	// Resuming what is not paused says so, and is no error.
	if got := s.mustRun(t, "resume"); got != "resumed\n" {
		t.Errorf("a second resume printed %q", got)
	}
}

// TestResumeRearmsTheFuse: a tripped fuse (full stream, consumer paused with a fuse: reason)
// gets every token back, and the consumer resumes.
func TestResumeRearmsTheFuse(t *testing.T) {
	t.Parallel()
	s := provisioned(t)
	ctx := t.Context()
	fuse, err := control.OpenFuse(ctx, s.js, daemon.FuseStream(streamName), 2, time.Hour, 1, true)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if ok, err := fuse.Take(ctx); !ok || err != nil {
			t.Fatalf("Take = %v, %v", ok, err)
		}
	}
	if _, err := control.Pause(ctx, s.js, ledgerBucket, streamName, consumerName, control.FusePrefix+"2 calls", "fuse", time.Time{}); err != nil {
		t.Fatal(err)
	}
	if got, want := s.mustRun(t, "pause", "--reason", "x", "--json"), `{"paused":true,"until":null,"reason":"x"}`+"\n"; got != want {
		t.Errorf("pause over the fuse's pause printed %q, want %q", got, want)
	}
	s.mustRun(t, "resume")
	if paused, _ := s.consumerPaused(t); paused {
		t.Error("the consumer is still paused")
	}
	if ok, err := fuse.Take(ctx); !ok || err != nil {
		t.Errorf("after resume, Take = %v, %v; want a token (the fuse re-armed)", ok, err)
	}

	// A fuse that is not full is left as it is: pausing and resuming gives no fresh window.
	s.mustRun(t, "pause", "--reason", "y")
	s.mustRun(t, "resume")
	if ok, err := fuse.Take(ctx); !ok || err != nil {
		t.Errorf("after a pause and resume with 1 of 2 calls used, Take = %v, %v; want the second token", ok, err)
	}
	if ok, err := fuse.Take(ctx); ok || err != nil {
		t.Errorf("a third Take = %v, %v; want refused (the pause gave no fresh window)", ok, err)
	}

	// The fuse's own pause re-arms it even when tokens expired since (not full any more).
	if err := fuse.Reset(ctx); err != nil {
		t.Fatal(err)
	}
	if ok, err := fuse.Take(ctx); !ok || err != nil {
		t.Fatalf("Take = %v, %v", ok, err)
	}
	if _, err := control.Pause(ctx, s.js, ledgerBucket, streamName, consumerName, control.FusePrefix+"2 calls", "fuse", time.Time{}); err != nil {
		t.Fatal(err)
	}
	s.mustRun(t, "resume")
	for i := range 2 {
		if ok, err := fuse.Take(ctx); !ok || err != nil {
			t.Errorf("after resuming the fuse's pause, Take %d = %v, %v; want a fresh window of 2", i+1, ok, err)
		}
	}
}

// TestPauseUsageErrors: each bad command line exits 2 and changes nothing on the server.
func TestPauseUsageErrors(t *testing.T) {
	t.Parallel()
	s := provisioned(t)
	s.refuses(t, []badLine{
		{"no reason", []string{"pause"}, "--reason is required"},
		{"empty reason", []string{"pause", "--reason", "", "--for", "1h"}, "--reason is required"},
		{"for and until", []string{"pause", "--reason", "x", "--for", "1h", "--until", time.Now().Add(time.Hour).Format(time.RFC3339)}, "not both"},
		{"past until", []string{"pause", "--reason", "x", "--until", "2020-01-02T03:04:05Z"}, "not in the future"},
		{"until not RFC 3339", []string{"pause", "--reason", "x", "--until", "tomorrow"}, "-until"},
		{"bad duration", []string{"pause", "--reason", "x", "--for", "soon"}, "-for"},
		{"negative duration", []string{"pause", "--reason", "x", "--for", "-1m"}, "must be positive"},
		{"zero duration", []string{"pause", "--reason", "x", "--for", "0s"}, "must be positive"},
		{"unknown flag", []string{"pause", "--reason", "x", "--forever"}, "forever"},
		{"an argument", []string{"pause", "--reason", "x", "now"}, "no arguments"},
		{"resume with an argument", []string{"resume", "now"}, "no arguments"},
		{"resume with an unknown flag", []string{"resume", "--force"}, "force"},
	})
	if paused, _ := s.consumerPaused(t); paused {
		t.Error("a refused command paused the consumer")
	}
	if keys := s.keys(t, ledgerBucket); len(keys) > 0 {
		t.Errorf("a refused command wrote to the ledger bucket: %q", keys)
	}
}

// TestPauseWithoutTheDaemon: on a server where the daemon never ran, pause and resume fail
// at run time (exit 1) and say what is missing, writing nothing.
func TestPauseWithoutTheDaemon(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	for _, args := range [][]string{{"pause", "--reason", "x"}, {"resume"}} {
		o := runIn(t, s.with(nil), args...)
		if o.exit() != 1 || !strings.Contains(o.err.Error(), "has the daemon run") {
			t.Errorf("run(%q) = %v, exit %d; want exit 1 saying the daemon's stream or consumer is missing", args, o.err, o.exit())
		}
	}
	for n := range s.js.StreamNames(t.Context()).Name() {
		t.Errorf("stream %s created", n)
	}
}
