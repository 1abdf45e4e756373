package kombotest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kombo-ops/integration-deleter/kombo"
	"github.com/kombo-ops/integration-deleter/kombo/kombotest"
)

func TestGetIntegration(t *testing.T) {
	f, base := kombotest.NewServer(t, kombotest.Options{APIKey: testKey, ConcurrencyLimit: 3})
	c, err := kombo.New(kombo.Options{BaseURL: base, APIKey: testKey})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	// Not set: the defaults, in Kombo's shape, read by the real client.
	got, err := c.GetIntegration(ctx, "workday:abc")
	if err != nil {
		t.Fatalf("GetIntegration: %v", err)
	}
	want := kombo.Integration{ID: "workday:abc", Tool: "workday", Category: "HRIS", Status: "ACTIVE", SetupStatus: "COMPLETED",
		CreatedAt: time.Date(2025, 1, 15, 9, 30, 0, 0, time.UTC), Limits: kombo.Limits{ConcurrencyLimit: 3, ConcurrencyRemaining: 2}}
	want.EndUser.OrganizationName, want.EndUser.CreatorEmail, want.EndUser.OriginID = "Org workday:abc", "admin@example.com", "origin-workday:abc"
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("default integration (-want +got):\n%s", diff)
	}

	// Set over the control endpoint: the fields given replace the defaults.
	body := `{"id":"personio:x","tool":"bamboohr","end_user":{"origin_id":"acme-7","organization_name":"Acme"},"data_expired_at":"2026-01-02T03:04:05Z"}`
	resp, err := http.Post(base[:len(base)-len("/v1")]+"/_fake/integration", "application/json", bytes.NewBufferString(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("POST /_fake/integration: %d, want 204", resp.StatusCode)
	}
	got, err = c.GetIntegration(ctx, "personio:x")
	if err != nil {
		t.Fatalf("GetIntegration: %v", err)
	}
	if got.Tool != "bamboohr" || got.EndUser.OriginID != "acme-7" || got.EndUser.OrganizationName != "Acme" ||
		got.Category != "HRIS" || got.EndUser.CreatorEmail != "admin@example.com" || got.DataExpiredAt == nil || !got.DataExpiredAt.Equal(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)) {
		t.Errorf("set integration = %+v, want tool bamboohr, origin acme-7, org Acme, category and email kept, data expired", got)
	}

	// Deleted, marked missing, or a missing: id: not found.
	if _, err := c.DeleteIntegration(ctx, "personio:x"); err != nil {
		t.Fatal(err)
	}
	f.MarkMissing("gone")
	for _, id := range []string{"personio:x", "gone", kombotest.PrefixMissing + "y"} {
		if _, err := c.GetIntegration(ctx, id); !errorsIsNotFound(err) {
			t.Errorf("GetIntegration(%q) error = %v, want PLATFORM.INTEGRATION_NOT_FOUND", id, err)
		}
	}
	if s := f.Stats(); s.Gets != 5 || s.Deletes != 1 {
		t.Errorf("stats: %d GETs, %d DELETEs; want 5 and 1", s.Gets, s.Deletes)
	}
	for _, call := range f.Calls() {
		if call.ID == "" {
			t.Errorf("call %+v recorded without its id", call)
		}
	}
}

func TestGetIntegrationNeedsTheKey(t *testing.T) {
	_, base := kombotest.NewServer(t, kombotest.Options{APIKey: testKey})
	c, err := kombo.New(kombo.Options{BaseURL: base, APIKey: "wrong"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetIntegration(context.Background(), "x"); !isCode(err, kombo.CodeAuthenticationInvalid) {
		t.Errorf("GetIntegration with a wrong key: %v, want PLATFORM.AUTHENTICATION_INVALID", err)
	}
}

func TestIntegrationControlRefusesBadBodies(t *testing.T) {
	_, base := kombotest.NewServer(t, kombotest.Options{})
	for _, body := range []string{`{}`, `{"id":"x","colour":"red"}`, `{"id":"x","end_user":{"origin":"y"}}`, `[1]`} {
		resp, err := http.Post(base[:len(base)-len("/v1")]+"/_fake/integration", "application/json", bytes.NewBufferString(body))
		if err != nil {
			t.Fatal(err)
		}
		var e struct{ Error string }
		_ = json.NewDecoder(resp.Body).Decode(&e)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || e.Error == "" {
			t.Errorf("POST /_fake/integration %s: %d %q, want 400 with an error", body, resp.StatusCode, e.Error)
		}
	}
}

func errorsIsNotFound(err error) bool { return isCode(err, kombo.CodeIntegrationNotFound) }

func isCode(err error, code string) bool {
	var kerr *kombo.Error
	return errors.As(err, &kerr) && kerr.Code == code
}
