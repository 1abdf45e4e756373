package main

import (
	"strings"
	"testing"
	"time"

	"github.com/kombo-ops/integration-deleter/internal/control"
)

// protected reads the protect list from the server, pattern by pattern.
func (s *server) protected(t *testing.T) map[string]control.Protection {
	t.Helper()
	p, err := control.OpenProtect(t.Context(), s.js, protectBkt, 1, false)
	if err != nil {
		t.Fatal(err)
	}
	list, err := p.List(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]control.Protection{}
	for _, pr := range list {
		m[pr.Pattern] = pr
	}
	return m
}

// TestProtect adds, lists and removes protections on a server where the daemon never ran:
// the bucket is created by the first add.
func TestProtect(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	if got, want := s.mustRun(t, "protect", "add", "acme:*", "--reason", "key account", "--by", "alice", "personio:42", "acme:*"),
		"protected acme:*\nprotected personio:42\n"; got != want {
		t.Errorf("protect add printed %q, want %q", got, want)
	}
	got := s.protected(t)
	if pr := got["acme:*"]; len(got) != 2 || pr.Reason != "key account" || pr.By != "alice" || time.Since(pr.AddedAt) > time.Minute {
		t.Fatalf("on the server: %+v; want acme:* and personio:42, by alice, with the reason", got)
	}

	ls := s.mustRun(t, "protect", "ls")
	header, rows, _ := strings.Cut(ls, "\n")
	if !strings.HasPrefix(header, "PATTERN") || !strings.Contains(rows, "acme:*") || !strings.Contains(rows, "key account") ||
		!strings.Contains(rows, "personio:42") {
		t.Errorf("protect ls printed:\n%s", ls)
	}
	lines := jsonLines(t, s.mustRun(t, "protect", "ls", "--json"))
	want := got["acme:*"].AddedAt.UTC().Format(time.RFC3339)
	if len(lines) != 2 || len(lines[0]) != 3 || lines[0]["pattern"] != "acme:*" || lines[0]["reason"] != "key account" ||
		lines[0]["added_at"] != want || lines[1]["pattern"] != "personio:42" || lines[1]["reason"] != "key account" {
		t.Errorf("protect ls --json printed %v", lines)
	}

	// rm: the present one is removed, the absent one reported, exit 1.
	o := runIn(t, s.with(nil), "protect", "rm", "personio:42", "acme:nope")
	if o.exit() != 1 || o.stdout != "unprotected personio:42\n" || !strings.Contains(o.stderr, `"acme:nope" was not protected`) {
		t.Errorf("protect rm = %v, exit %d, stdout %q, stderr %q; want exit 1, personio:42 removed, acme:nope reported", o.err, o.exit(), o.stdout, o.stderr)
	}
	o = runIn(t, s.with(nil), "protect", "rm", "--json", "acme:*", "acme:nope")
	if lines := jsonLines(t, o.stdout); o.exit() != 1 || len(lines) != 2 || lines[0]["removed"] != true || lines[1]["removed"] != false {
		t.Errorf("protect rm --json = %v, printed %v", o.err, lines)
	}
	if got := s.protected(t); len(got) != 0 {
		t.Errorf("left on the server: %v", got)
	}
	if got := s.mustRun(t, "protect", "ls"); got != "no integration id is protected\n" {
		t.Errorf("protect ls of an empty list printed %q", got)
	}
	if got := s.mustRun(t, "protect", "ls", "--json"); got != "" {
		t.Errorf("protect ls --json of an empty list printed %q", got)
	}

	// Every integration, on purpose.
	s.mustRun(t, "protect", "add", "--all", "*", "--reason", "freeze")
	if _, ok := s.protected(t)["*"]; !ok {
		t.Error("protect add --all '*' did not store '*'")
	}
}

// TestProtectUsageErrors: each bad command line exits 2 and writes nothing.
func TestProtectUsageErrors(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	s.mustRun(t, "protect", "add", "keep:1") // the bucket exists; it must still hold only this
	s.refuses(t, []badLine{
		{"no subcommand", []string{"protect"}, "subcommand"},
		{"unknown subcommand", []string{"protect", "list"}, `"list"`},
		{"add without patterns", []string{"protect", "add", "--reason", "x"}, "at least one pattern"},
		{"add an empty pattern", []string{"protect", "add", "ok:1", ""}, "empty pattern"},
		{"add only a wildcard", []string{"protect", "add", "ok:1", "*"}, "--all"},
		{"add only wildcards", []string{"protect", "add", "***", "--reason", "x"}, "--all"},
		{"add with an unknown flag", []string{"protect", "add", "--force", "ok:1"}, "force"},
		{"add invalid UTF-8", []string{"protect", "add", "ok:\xff"}, "UTF-8"},
		{"rm without patterns", []string{"protect", "rm"}, "at least one pattern"},
		{"rm an empty pattern", []string{"protect", "rm", "keep:1", ""}, "empty pattern"},
		{"rm with an unknown flag", []string{"protect", "rm", "-a", "keep:1"}, "-a"},
		{"ls with an argument", []string{"protect", "ls", "keep:*"}, "no arguments"},
	})
	if got := s.protected(t); len(got) != 1 {
		t.Errorf("on the server after refused commands: %v; want keep:1 only", got)
	}
}

// TestProtectWithoutProvision: with JETSTREAM_PROVISION=false a missing bucket is not
// created: exit 1, naming it.
func TestProtectWithoutProvision(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	o := runIn(t, s.with(map[string]string{"JETSTREAM_PROVISION": "false"}), "protect", "add", "acme:1")
	if o.exit() != 1 || !strings.Contains(o.err.Error(), protectBkt) {
		t.Errorf("protect add = %v, exit %d; want exit 1 naming %s", o.err, o.exit(), protectBkt)
	}
	if _, err := s.js.KeyValue(t.Context(), protectBkt); err == nil {
		t.Error("the bucket was created")
	}
}
