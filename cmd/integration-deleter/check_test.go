package main

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kombo-ops/integration-deleter/internal/testkit"
	"github.com/kombo-ops/integration-deleter/kombo/kombotest"
)

// TestCheck asks the fake Kombo about integrations it shows, one it does not know, and
// then with a rejected key and with no Kombo at all.
func TestCheck(t *testing.T) {
	t.Parallel()
	fake, base := kombotest.NewServer(t, kombotest.Options{APIKey: apiKey})
	fake.SetIntegration("personio:a", kombotest.Integration{Tool: "personio", Category: "HRIS", Status: "ACTIVE",
		EndUser:   kombotest.EndUser{OrganizationName: "Acme GmbH", OriginID: "acme-42"},
		CreatedAt: time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)})
	kombo := env(map[string]string{"KOMBO_API_KEY": apiKey, "KOMBO_BASE_URL": base})

	o := runIn(t, kombo, "check", "--json", "personio:a", "missing:b")
	lines := jsonLines(t, o.stdout)
	want := []map[string]any{
		{"integration_id": "personio:a", "tool": "personio", "category": "HRIS", "status": "ACTIVE",
			"organization_name": "Acme GmbH", "origin_id": "acme-42", "created_at": "2024-05-06T07:08:09Z"},
		{"integration_id": "missing:b", "tool": nil, "category": nil, "status": "not_found",
			"organization_name": nil, "origin_id": nil, "created_at": nil},
	}
	if o.err != nil || len(lines) != 2 || !equalJSON(lines[0], want[0]) || !equalJSON(lines[1], want[1]) {
		t.Errorf("check --json = %v, printed %v; want %v", o.err, lines, want)
	}
	o = runIn(t, kombo, "check", "personio:a")
	if o.err != nil || !strings.Contains(o.stdout, "Acme GmbH") || !strings.Contains(o.stdout, "acme-42") || !strings.HasPrefix(o.stdout, "INTEGRATION_ID") {
		t.Errorf("check = %v, printed:\n%s", o.err, o.stdout)
	}
	for _, c := range fake.Calls() {
		if c.Method != http.MethodGet {
			t.Errorf("check made a %s call", c.Method)
		}
	}

	fake.SetRejectKey(true)
	o = runIn(t, kombo, "check", "personio:a")
	if o.exit() != 1 || !strings.Contains(o.stderr, "personio:a: cannot check") || strings.Contains(o.stderr+o.err.Error(), apiKey) {
		t.Errorf("check with a rejected key = %v, exit %d, stderr %q; want exit 1 saying so, without the key", o.err, o.exit(), o.stderr)
	}
	noKombo := env(map[string]string{"KOMBO_API_KEY": apiKey, "KOMBO_BASE_URL": "http://127.0.0.1:" + strconv.Itoa(testkit.FreePort(t)), "KOMBO_TIMEOUT": "2s"})
	if o := runIn(t, noKombo, "check", "personio:a"); o.exit() != 1 {
		t.Errorf("check without Kombo = %v, exit %d; want 1", o.err, o.exit())
	}
}
