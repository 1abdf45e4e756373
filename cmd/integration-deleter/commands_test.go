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
		if args[0] == "resume" || args[1] == "ls" {
			name = strings.Join(args, " ")
		}
		o := runIn(t, env(nil), append(args, "--help")...)
		if o.err != nil || !strings.Contains(o.stdout, "Usage: integration-deleter "+name) || !strings.Contains(o.stdout, "-json") {
			t.Errorf("run(%q --help) = %v; stdout:\n%s", args, o.err, o.stdout)
		}
	}
	o := runIn(t, env(nil), "--help")
	for _, cmd := range []string{"pause", "resume", "protect"} {
		if !strings.Contains(o.stdout, "integration-deleter "+cmd) {
			t.Errorf("the usage does not list %s:\n%s", cmd, o.stdout)
		}
	}
	if o := runIn(t, env(nil), "protect", "--help"); o.err != nil || !strings.Contains(o.stdout, "protect add") {
		t.Errorf("protect --help = %v:\n%s", o.err, o.stdout)
	}
}
