package main

import (
	"strconv"
	"strings"
	"testing"

	"github.com/kombo-ops/integration-deleter/internal/testkit"
)

// operatorCommands are a valid command line of each operator's command.
var operatorCommands = [][]string{
	{"pause", "--reason", "x"},
	{"resume"},
	{"protect", "add", "acme:1"},
	{"protect", "rm", "acme:1"},
	{"protect", "ls"},
	{"status", "r1"},
	{"failed", "--since", "1h"},
	{"retry", "r1"},
	{"retry", "--failed"},
}

// TestOperatorCommandsWithoutNATS: with no NATS server to reach, each command fails at run
// time (exit 1) and says it could not connect.
func TestOperatorCommandsWithoutNATS(t *testing.T) {
	t.Parallel()
	noNATS := env(map[string]string{"NATS_URL": "nats://127.0.0.1:" + strconv.Itoa(testkit.FreePort(t)), "KOMBO_API_KEY": apiKey})
	for _, args := range operatorCommands {
		o := runIn(t, noNATS, args...)
		if o.exit() != 1 || !strings.Contains(o.err.Error(), "connect to NATS") {
			t.Errorf("run(%q) = %v, exit %d; want exit 1 saying it cannot connect to NATS", args, o.err, o.exit())
		}
	}
}

// TestOperatorCommandsHelp: --help on each command prints its usage, with --json, and
// needs no configuration.
func TestOperatorCommandsHelp(t *testing.T) {
	t.Parallel()
	for _, args := range operatorCommands {
		name := strings.Join(args[:len(args)-1], " ")
		switch {
		case args[0] == "resume" || args[0] == "failed" || args[1] == "ls":
			name = args[0]
			if args[0] == "protect" {
				name = "protect ls"
			}
		case args[0] == "status" || args[0] == "retry":
			name = args[0]
		}
		o := runIn(t, env(nil), append(args, "--help")...)
		if o.err != nil || !strings.Contains(o.stdout, "Usage: integration-deleter "+name) || !strings.Contains(o.stdout, "-json") {
			t.Errorf("run(%q --help) = %v; stdout:\n%s", args, o.err, o.stdout)
		}
	}
	o := runIn(t, env(nil), "--help")
	for _, cmd := range []string{"pause", "resume", "protect", "check", "status", "failed", "retry"} {
		if !strings.Contains(o.stdout, "integration-deleter "+cmd) {
			t.Errorf("the usage does not list %s:\n%s", cmd, o.stdout)
		}
	}
	if o := runIn(t, env(nil), "protect", "--help"); o.err != nil || !strings.Contains(o.stdout, "protect add") {
		t.Errorf("protect --help = %v:\n%s", o.err, o.stdout)
	}
}

// TestAfterTheFactUsageErrors: each bad command line exits 2 and changes nothing on the
// server (no request published).
func TestAfterTheFactUsageErrors(t *testing.T) {
	t.Parallel()
	s := provisioned(t)
	s.refuses(t, []badLine{
		{"status without ids", []string{"status", "--json"}, "request id"},
		{"status with an unknown flag", []string{"status", "--all", "r1"}, "all"},
		{"failed with an argument", []string{"failed", "r1"}, "no arguments"},
		{"failed with a bad duration", []string{"failed", "--since", "yesterday"}, "-since"},
		{"failed with a negative duration", []string{"failed", "--since", "-1h"}, "must be positive"},
		{"failed with an unknown flag", []string{"failed", "--status", "x"}, "status"},
		{"retry without ids", []string{"retry", "--wait"}, "--failed"},
		{"retry ids and --failed", []string{"retry", "--failed", "r1"}, "not both"},
		{"retry --since without --failed", []string{"retry", "--since", "1h", "r1"}, "need --failed"},
		{"retry --code without --failed", []string{"retry", "r1", "--code", "X"}, "need --failed"},
		{"retry with a bad duration", []string{"retry", "--failed", "--since", "1d"}, "-since"},
		{"retry with a bad timeout", []string{"retry", "r1", "--wait", "--timeout", "0s"}, "timeout"},
		{"retry with an unknown flag", []string{"retry", "--all"}, "all"},
		{"check without ids", []string{"check", "--json"}, "integration id"},
		{"check with an unknown flag", []string{"check", "--wait", "personio:1"}, "wait"},
		{"check without a Kombo key", []string{"check", "personio:1"}, "KOMBO_API_KEY"},
	})
	st, err := s.js.Stream(t.Context(), streamName)
	if err != nil {
		t.Fatal(err)
	}
	if n := st.CachedInfo().State.Msgs; n != 0 {
		t.Errorf("%d messages in the stream after refused commands, want 0", n)
	}
}
