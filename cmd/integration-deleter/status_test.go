package main

import (
	"testing"
	"time"

	"github.com/kombo-ops/integration-deleter/internal/ledger"
)

// TestStatusPendingAndScoped: a claimed request without an outcome is pending, and a
// "<stream>-<seq>" request id is found under the current incarnation of the stream.
func TestStatusPendingAndScoped(t *testing.T) {
	t.Parallel()
	s := provisioned(t)
	ctx := t.Context()
	l, _, err := ledger.Open(ctx, s.js, ledger.Options{Bucket: ledgerBucket})
	if err != nil {
		t.Fatal(err)
	}
	st, err := s.js.Stream(ctx, streamName)
	if err != nil {
		t.Fatal(err)
	}
	scoped := ledger.IDOf(streamName+"-7", streamName, ledger.Incarnation(st.CachedInfo().Created))
	if scoped.Scope == "" {
		t.Fatal("the fallback id is not scoped")
	}
	for _, id := range []ledger.ID{{Request: "req-1"}, scoped} {
		if _, err := l.Claim(ctx, id, "personio:a", "test", time.Now(), time.Minute, true); err != nil {
			t.Fatal(err)
		}
	}
	lines := jsonLines(t, s.mustRun(t, "status", "--json", "req-1", streamName+"-7", streamName+"-8"))
	want := []map[string]any{
		{"request_id": "req-1", "status": "pending", "integration_id": "personio:a", "code": nil, "attempts": 1.0, "completed_at": nil},
		{"request_id": streamName + "-7", "status": "pending", "integration_id": "personio:a", "code": nil, "attempts": 1.0, "completed_at": nil},
		{"request_id": streamName + "-8", "status": "unknown", "integration_id": nil, "code": nil, "attempts": nil, "completed_at": nil},
	}
	for i := range want {
		if i >= len(lines) || !equalJSON(lines[i], want[i]) {
			t.Errorf("status printed %v, want %v", lines, want)
			break
		}
	}
}
