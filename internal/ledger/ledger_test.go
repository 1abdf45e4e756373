package ledger_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kombo-ops/integration-deleter/internal/ledger"
	"github.com/kombo-ops/integration-deleter/internal/natstest"
	"github.com/kombo-ops/integration-deleter/internal/testkit"
	"github.com/kombo-ops/integration-deleter/internal/testwait"
)

const (
	bucket = "TEST_LEDGER"
	lease  = time.Minute
)

// t0 is the test's clock: every claim's expiry is computed from times passed explicitly, so
// nothing depends on the wall clock. It has nanoseconds to check they survive the encoding.
var t0 = time.Date(2030, 1, 2, 3, 4, 5, 123456789, time.UTC)

// at returns t0 plus d.
func at(d time.Duration) time.Time { return t0.Add(d) }

// newJS starts a real embedded NATS server and returns a JetStream context on it.
func newJS(t *testing.T) jetstream.JetStream {
	t.Helper()
	_, js := testkit.JetStream(t, natstest.Start(t).ClientURL())
	testkit.KeepStreamsDir(t, js) // some tests delete the bucket and create it again
	return js
}

func provisioned() ledger.Options {
	return ledger.Options{Bucket: bucket, Provision: true, Replicas: 1, MaxAge: 2160 * time.Hour, MinMaxAge: 24 * time.Hour}
}

// newLedger starts a server and opens a provisioned ledger on it.
func newLedger(t *testing.T) (*ledger.Ledger, jetstream.JetStream) {
	t.Helper()
	js := newJS(t)
	l, created, err := ledger.Open(t.Context(), js, provisioned())
	if err != nil {
		t.Fatal(err)
	}
	if !created {
		t.Fatal("Open on an empty server: created = false, want true")
	}
	return l, js
}

// newClaim opens a ledger on a new server and claims requestID for owner A at t0, about
// to call.
func newClaim(t *testing.T, requestID string) (*ledger.Ledger, *ledger.Claim, jetstream.JetStream) {
	t.Helper()
	l, js := newLedger(t)
	return l, mustClaim(t, l, requestID, "A", t0, true), js
}

// takenOver opens a ledger where A claimed requestID at t0 and counted one call, and B took
// the claim over when A's expired (at lease); it returns A's claim and B's.
func takenOver(t *testing.T, requestID string) (*ledger.Ledger, *ledger.Claim, *ledger.Claim) {
	t.Helper()
	l, a, _ := newClaim(t, requestID)
	mustCount(t, a, 1, 1, t0)
	return l, a, mustClaim(t, l, requestID, "B", at(lease), true)
}

// rid is the ledger's name of a request id unique for good (no scope).
func rid(requestID string) ledger.ID { return ledger.ID{Request: requestID} }

// mustClaim claims requestID (unscoped) for owner at now (calling: counting the call about
// to be made) and fails the test unless a claim was taken.
func mustClaim(t *testing.T, l *ledger.Ledger, requestID, owner string, now time.Time, calling bool) *ledger.Claim {
	t.Helper()
	return mustClaimID(t, l, rid(requestID), owner, now, calling)
}

// mustClaimID is mustClaim for any ID.
func mustClaimID(t *testing.T, l *ledger.Ledger, id ledger.ID, owner string, now time.Time, calling bool) *ledger.Claim {
	t.Helper()
	r, err := l.Claim(t.Context(), id, "int-"+id.Request, owner, now, lease, calling)
	if err != nil {
		t.Fatalf("Claim(%+v, %q): %v", id, owner, err)
	}
	if r.Claim == nil {
		t.Fatalf("Claim(%+v, %q) at %s: got %+v, want a claim", id, owner, now, r)
	}
	if r.Recorded != nil || !r.BusyUntil.IsZero() {
		t.Fatalf("Claim(%+v, %q): got a claim and also %+v", id, owner, r)
	}
	return r.Claim
}

// checkBusy checks that owner's claim of id at now finds a live claim until until, and
// takes nothing.
func checkBusy(t *testing.T, l *ledger.Ledger, id ledger.ID, owner string, now, until time.Time, calling bool) {
	t.Helper()
	r, err := l.Claim(t.Context(), id, "int-"+id.Request, owner, now, lease, calling)
	if err != nil {
		t.Fatalf("Claim(%+v, %q) at %s: %v", id, owner, now, err)
	}
	if diff := cmp.Diff(r, ledger.ClaimResult{BusyUntil: until}); diff != "" {
		t.Errorf("Claim(%+v, %q) at %s, calling %v (-got +want):\n%s", id, owner, now, calling, diff)
	}
}

// checkClaimRecorded checks that owner's claim of id at now finds the outcome want and no
// claim, and returns the outcome; what names the claim in failures.
func checkClaimRecorded(t *testing.T, l *ledger.Ledger, id ledger.ID, owner string, now time.Time, want ledger.Entry, what string) *ledger.Recorded {
	t.Helper()
	r, err := l.Claim(t.Context(), id, "int-"+id.Request, owner, now, lease, true)
	if err != nil || r.Recorded == nil || r.Claim != nil {
		t.Fatalf("%s = %+v, %v; want Recorded", what, r, err)
	}
	if diff := cmp.Diff(r.Recorded.Entry, want); diff != "" {
		t.Errorf("%s (-got +want):\n%s", what, diff)
	}
	return r.Recorded
}

// mustCount writes the claim's counts and fails the test when it cannot.
func mustCount(t *testing.T, c *ledger.Claim, calls, counted int, now time.Time) {
	t.Helper()
	if err := c.Count(t.Context(), calls, counted, now); err != nil {
		t.Fatalf("Count(%d, %d): %v", calls, counted, err)
	}
}

// mustRelease releases the claim with its counts and fails the test when it cannot.
func mustRelease(t *testing.T, c *ledger.Claim, calls, counted int, now time.Time) {
	t.Helper()
	if err := c.Release(t.Context(), calls, counted, now); err != nil {
		t.Fatalf("Release(%d, %d): %v", calls, counted, err)
	}
}

// recreateBucket deletes the ledger's bucket and opens a provisioned ledger again, which
// creates it anew.
func recreateBucket(t *testing.T, js jetstream.JetStream) {
	t.Helper()
	if err := js.DeleteKeyValue(t.Context(), bucket); err != nil {
		t.Fatal(err)
	}
	if _, _, err := ledger.Open(t.Context(), js, provisioned()); err != nil {
		t.Fatal(err)
	}
}

// mustLookup returns the entry of requestID (unscoped) and fails the test when there is none.
func mustLookup(t *testing.T, l *ledger.Ledger, requestID string) ledger.Entry {
	t.Helper()
	return mustLookupID(t, l, rid(requestID))
}

// mustLookupID is mustLookup for any ID.
func mustLookupID(t *testing.T, l *ledger.Ledger, id ledger.ID) ledger.Entry {
	t.Helper()
	e, ok, err := l.Lookup(t.Context(), id)
	if err != nil {
		t.Fatalf("Lookup(%+v): %v", id, err)
	}
	if !ok {
		t.Fatalf("Lookup(%+v): not found", id)
	}
	return e
}

// checkMissing checks that the ledger knows nothing of id.
func checkMissing(t *testing.T, l *ledger.Ledger, id ledger.ID) {
	t.Helper()
	if e, ok, err := l.Lookup(t.Context(), id); err != nil || ok {
		t.Errorf("Lookup(%+v) = (%+v, %v, %v), want not found", id, e, ok, err)
	}
}

func claimedEntry(requestID, owner string, until time.Time, calls, counted int) ledger.Entry {
	return ledger.Entry{RequestID: requestID, IntegrationID: "int-" + requestID, Status: ledger.Claimed,
		Owner: owner, Until: until, Calls: calls, Counted: counted}
}

// scoped is e with scope.
func scoped(e ledger.Entry, scope string) ledger.Entry {
	e.Scope = scope
	return e
}

// outcome is an outcome as a handler passes it to Record, without counts or RecordedAt.
func outcome(requestID string, status ledger.Status, code string) ledger.Entry {
	res, _ := json.Marshal(map[string]string{"request_id": requestID, "status": string(status), "code": code})
	subject := "integration.delete." + string(status)
	return ledger.Entry{RequestID: requestID, IntegrationID: "int-" + requestID, Status: status, Code: code,
		CompletedAt: "2030-01-02T03:04:05.000Z", Subject: subject, Result: res}
}

// counts is out with the request's counts, as a handler passes it to Record.
func counts(out ledger.Entry, calls, counted int) ledger.Entry {
	out.Calls, out.Counted = calls, counted
	return out
}

// recorded is out as the ledger stores it: with counts and RecordedAt.
func recorded(out ledger.Entry, calls, counted int, now time.Time) ledger.Entry {
	out.Calls, out.Counted, out.RecordedAt = calls, counted, now
	return out
}

// checkRecord records out with c at now, fails the test when Record fails, and checks that
// the entry Record returns is want; what names the call in the failures.
func checkRecord(t *testing.T, c *ledger.Claim, out ledger.Entry, now time.Time, want ledger.Entry, what string) *ledger.Recorded {
	t.Helper()
	rec, err := c.Record(t.Context(), out, now)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if diff := cmp.Diff(rec.Entry, want); diff != "" {
		t.Errorf("%s (-got +want):\n%s", what, diff)
	}
	return rec
}

// checkHolds checks what the claim's Holds says at now with margin.
func checkHolds(t *testing.T, c *ledger.Claim, now time.Time, margin time.Duration, want bool) {
	t.Helper()
	if got := c.Holds(now, margin); got != want {
		t.Errorf("Holds(%s, %s) = %v, want %v", now, margin, got, want)
	}
}

// checkPrior checks the counts the claim found before it.
func checkPrior(t *testing.T, c *ledger.Claim, wantCalls, wantCounted int) {
	t.Helper()
	if calls, counted := c.Prior(); calls != wantCalls || counted != wantCounted {
		t.Errorf("Prior() = (%d, %d), want (%d, %d)", calls, counted, wantCalls, wantCounted)
	}
}

// checkEntry checks the entry of requestID (unscoped).
func checkEntry(t *testing.T, l *ledger.Ledger, requestID string, want ledger.Entry) {
	t.Helper()
	checkEntryID(t, l, rid(requestID), want)
}

// checkEntryID is checkEntry for any ID.
func checkEntryID(t *testing.T, l *ledger.Ledger, id ledger.ID, want ledger.Entry) {
	t.Helper()
	if diff := cmp.Diff(mustLookupID(t, l, id), want); diff != "" {
		t.Errorf("Lookup(%+v) (-got +want):\n%s", id, diff)
	}
}

func TestOpenProvisionCreatesBucketOnce(t *testing.T) {
	l, js := newLedger(t) // fails unless this first Open created the bucket
	if err := l.Probe(t.Context()); err != nil {
		t.Errorf("Probe on the created bucket: %v", err)
	}
	kv, err := js.KeyValue(t.Context(), bucket)
	if err != nil {
		t.Fatalf("the bucket was not created: %v", err)
	}
	st, err := kv.Status(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if got, want := st.TTL(), 2160*time.Hour; got != want {
		t.Errorf("created bucket's TTL = %s, want %s", got, want)
	}
	if got := st.History(); got != 1 {
		t.Errorf("created bucket's history = %d, want 1", got)
	}

	// A second Open (another replica, or a restart) finds it, with or without provisioning.
	for _, provision := range []bool{true, false} {
		o := provisioned()
		o.Provision = provision
		l2, created, err := ledger.Open(t.Context(), js, o)
		if err != nil {
			t.Fatalf("second Open (Provision=%v): %v", provision, err)
		}
		if created {
			t.Errorf("second Open (Provision=%v): created = true, want false", provision)
		}
		if err := l2.Check(t.Context()); err != nil {
			t.Errorf("Check: %v", err)
		}
	}
}

func TestOpenMissingWithoutProvision(t *testing.T) {
	js := newJS(t)
	o := provisioned()
	o.Provision = false
	l, created, err := ledger.Open(t.Context(), js, o)
	if !errors.Is(err, ledger.ErrMissing) {
		t.Fatalf("Open = (%v, %v, %v), want ErrMissing", l, created, err)
	}
	if l != nil || created {
		t.Errorf("Open with an error: got ledger %v, created %v; want nil, false", l, created)
	}
	if _, err := js.KeyValue(t.Context(), bucket); !errors.Is(err, jetstream.ErrBucketNotFound) {
		t.Errorf("bucket after a refused Open: %v, want ErrBucketNotFound (nothing created)", err)
	}
}

func TestOpenChecksMaxAge(t *testing.T) {
	tests := []struct {
		name      string
		ttl       time.Duration // the existing bucket's TTL; -1: no bucket, Open provisions it
		maxAge    time.Duration // Options.MaxAge, used when provisioning
		minMaxAge time.Duration
		provision bool
		wantErr   error
	}{
		{name: "shorter than the stream", ttl: time.Hour, minMaxAge: 2 * time.Hour, wantErr: ledger.ErrUnusable},
		{name: "shorter than the stream, provisioning on", ttl: time.Hour, minMaxAge: 2 * time.Hour, provision: true, wantErr: ledger.ErrUnusable},
		{name: "as long as the stream", ttl: 2 * time.Hour, minMaxAge: 2 * time.Hour},
		{name: "longer than the stream", ttl: 3 * time.Hour, minMaxAge: 2 * time.Hour},
		{name: "forever", ttl: 0, minMaxAge: 2 * time.Hour},
		{name: "forever, provisioning on", ttl: 0, minMaxAge: 2 * time.Hour, provision: true},
		{name: "no minimum", ttl: time.Minute, minMaxAge: 0},
		{name: "provisioned too short", ttl: -1, maxAge: time.Hour, minMaxAge: 2 * time.Hour, provision: true, wantErr: ledger.ErrUnusable},
		{name: "provisioned forever", ttl: -1, maxAge: 0, minMaxAge: 2 * time.Hour, provision: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			js := newJS(t)
			if tt.ttl >= 0 {
				if _, err := js.CreateKeyValue(t.Context(), jetstream.KeyValueConfig{Bucket: bucket, TTL: tt.ttl}); err != nil {
					t.Fatal(err)
				}
			}
			o := ledger.Options{Bucket: bucket, Provision: tt.provision, Replicas: 1, MaxAge: tt.maxAge, MinMaxAge: tt.minMaxAge}
			l, _, err := ledger.Open(t.Context(), js, o)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Open: err = %v, want %v", err, tt.wantErr)
				}
				if l != nil {
					t.Errorf("Open with an error returned a ledger")
				}
				return
			}
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			if err := l.Check(t.Context()); err != nil {
				t.Errorf("Check: %v", err)
			}
		})
	}
}

func TestCheckFailsAfterBucketDeleted(t *testing.T) {
	l, js := newLedger(t)
	if err := l.Check(t.Context()); err != nil {
		t.Fatalf("Check on a fresh bucket: %v", err)
	}
	if err := js.DeleteKeyValue(t.Context(), bucket); err != nil {
		t.Fatal(err)
	}
	err := l.Check(t.Context())
	if err == nil {
		t.Fatal("Check after the bucket was deleted: nil, want an error")
	}
	if errors.Is(err, ledger.ErrUnusable) {
		t.Errorf("Check after the bucket was deleted: %v, want an error other than ErrUnusable", err)
	}
	if !strings.Contains(err.Error(), bucket) {
		t.Errorf("Check error %q does not name the bucket", err)
	}
}

// TestRequestIDsAnyCharacters checks that any request id, whatever its characters, gets a
// key of its own: claimed by a distinct owner each, a collision would show as busy.
func TestRequestIDsAnyCharacters(t *testing.T) {
	l, _ := newLedger(t)
	ids := []string{
		"plain-uuid-5b8f0a1e",
		"with space",
		"a.b.c",
		".leading.dot",
		"trailing.dot.",
		"..",
		".",
		"*",
		">",
		"a.*.>",
		"a/b/c",
		"a\\b",
		"=padding==",
		"-_+/",
		"-empty",
		"日本語-ключ-🎉",
		"tab\there",
		"nul\x00byte",
		"\"quoted\" {json}",
		strings.Repeat("x", 256),
		strings.Repeat("é", 128), // 256 bytes
		strings.Repeat(".", 256),
		"A", "a", // keys are case-sensitive
		"a ", " a",
	}
	for i, id := range ids {
		owner := fmt.Sprintf("consumer:%d", i)
		c := mustClaim(t, l, id, owner, t0, true)
		checkEntry(t, l, id, claimedEntry(id, owner, at(lease), 1, 0))
		mustCount(t, c, 1, 1, t0)
		checkEntry(t, l, id, claimedEntry(id, owner, at(lease), 1, 1))

		out := counts(outcome(id, ledger.Deleted, ""), 1, 1)
		rec, err := c.Record(t.Context(), out, t0)
		if err != nil {
			t.Fatalf("Record for %q: %v", id, err)
		}
		if diff := cmp.Diff(rec.Entry, recorded(out, 1, 1, t0)); diff != "" {
			t.Errorf("Record for %q (-got +want):\n%s", id, diff)
		}
		checkEntry(t, l, id, recorded(out, 1, 1, t0))
	}
	// Each id still holds its own outcome after all were written.
	for _, id := range ids {
		if got := mustLookup(t, l, id); got.RequestID != id || got.Status != ledger.Deleted {
			t.Errorf("Lookup(%q) = request id %q, status %q", id, got.RequestID, got.Status)
		}
	}
	for _, id := range []string{"", "never-seen", "plain-uuid-5b8f0a1", "a.b", "日本語", "empty"} {
		e, ok, err := l.Lookup(t.Context(), rid(id))
		if err != nil || ok {
			t.Errorf("Lookup(%q) of an unknown id = (%+v, %v, %v), want not found", id, e, ok, err)
		}
	}
}

// TestEmptyRequestIDHasAKey: the empty request id ("r." alone is no KV key) has a key of
// its own, "r-empty", distinct from every other id's ("-empty" included).
func TestEmptyRequestIDHasAKey(t *testing.T) {
	l, js := newLedger(t)
	c := mustClaim(t, l, "", "A", t0, true)
	checkEntry(t, l, "", claimedEntry("", "A", at(lease), 1, 0))
	if _, ok, err := l.Lookup(t.Context(), rid("-empty")); err != nil || ok {
		t.Errorf("Lookup(\"-empty\") = %v, %v; want not found", ok, err)
	}
	kv, err := js.KeyValue(t.Context(), bucket)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Get(t.Context(), "r-empty"); err != nil {
		t.Errorf("key r-empty after claiming the empty request id: %v", err)
	}

	// "-empty" and "empty" are ids of their own: not busy with A's claim.
	other := mustClaim(t, l, "-empty", "B", t0, false)
	mustClaim(t, l, "empty", "C", t0, false)

	out := counts(outcome("", ledger.Failed, "EVENT.INVALID"), 0, 0)
	want := recorded(out, 0, 0, at(time.Second))
	checkRecord(t, c, out, at(time.Second), want, "Record of the empty request id")
	checkEntry(t, l, "", want)
	checkEntry(t, l, "-empty", claimedEntry("-empty", "B", at(lease), 0, 0))
	checkEntry(t, l, "empty", claimedEntry("empty", "C", at(lease), 0, 0))
	if err := other.Renew(t.Context(), at(time.Second)); err != nil {
		t.Errorf("Renew of the \"-empty\" claim after the empty id recorded: %v", err)
	}

	// Adopt and Claim find the empty id's outcome.
	if added, err := l.Adopt(t.Context(), outcome("", ledger.Deleted, ""), at(time.Hour)); err != nil || added {
		t.Errorf("Adopt of the recorded empty id = %v, %v; want false, nil", added, err)
	}
	checkClaimRecorded(t, l, rid(""), "D", at(time.Hour), want, "Claim of the recorded empty id")
}

func TestClaimFirstWins(t *testing.T) {
	const id = "req-1"
	l, c, _ := newClaim(t, id)
	checkPrior(t, c, 0, 0)
	checkEntry(t, l, id, claimedEntry(id, "A", at(lease), 1, 0))

	// Busy for every other claim while live, A's own included (the same message
	// redelivered while its earlier delivery may still be working).
	for _, owner := range []string{"B", "A"} {
		for _, now := range []time.Time{t0, at(time.Second), at(lease - time.Nanosecond)} {
			for _, calling := range []bool{true, false} {
				checkBusy(t, l, rid(id), owner, now, at(lease), calling)
			}
		}
	}
	// The attempts changed nothing, their calls included.
	checkEntry(t, l, id, claimedEntry(id, "A", at(lease), 1, 0))
}

// TestClaimCalling: calling counts one more call in the claim written, on a new claim and
// on every kind of takeover; Prior returns the counts found before.
func TestClaimCalling(t *testing.T) {
	const id = "req-calling"
	// leave prepares the key as a handler A leaves it and returns when B claims it.
	type leave func(t *testing.T, l *ledger.Ledger) (owner string, now time.Time)
	nothing := func(*testing.T, *ledger.Ledger) (string, time.Time) { return "B", t0 }
	// left claims for A calling, counts calls and counted, then: "expired" lets the claim
	// expire, "released" releases it with the same counts; next (A itself: the same
	// message redelivered, or B) claims it then.
	left := func(calls, counted int, how, next string) leave {
		return func(t *testing.T, l *ledger.Ledger) (string, time.Time) {
			a := mustClaim(t, l, id, "A", t0, true)
			mustCount(t, a, calls, counted, at(time.Second))
			switch how {
			case "expired":
				return next, at(time.Second + lease)
			case "released":
				mustRelease(t, a, calls, counted, at(2*time.Second))
				return next, at(2 * time.Second)
			}
			panic(how)
		}
	}
	// Each situation is claimed calling and not calling (the last only calling): prior is
	// the calls and counted Prior returns, want those the claim writes.
	tests := []struct {
		name  string
		setup leave
		prior [2]int
		want  map[bool][2]int
	}{
		{"new", nothing, [2]int{0, 0}, map[bool][2]int{true: {1, 0}, false: {0, 0}}},
		{"same owner expired", left(2, 1, "expired", "A"), [2]int{2, 1}, map[bool][2]int{true: {3, 1}, false: {2, 1}}},
		{"same owner released", left(2, 1, "released", "A"), [2]int{2, 1}, map[bool][2]int{true: {3, 1}, false: {2, 1}}},
		{"expired", left(3, 3, "expired", "B"), [2]int{3, 3}, map[bool][2]int{true: {4, 3}, false: {3, 3}}},
		{"released", left(1, 0, "released", "B"), [2]int{1, 0}, map[bool][2]int{true: {2, 0}, false: {1, 0}}},
		{"released with nothing made", left(0, 0, "released", "B"), [2]int{0, 0}, map[bool][2]int{true: {1, 0}}},
	}
	for _, tt := range tests {
		for _, calling := range []bool{true, false} {
			want, ok := tt.want[calling]
			if !ok {
				continue
			}
			name := tt.name + ", not calling"
			if calling {
				name = tt.name + ", calling"
			}
			t.Run(name, func(t *testing.T) {
				l, _ := newLedger(t)
				owner, now := tt.setup(t, l)
				c := mustClaim(t, l, id, owner, now, calling)
				checkPrior(t, c, tt.prior[0], tt.prior[1])
				checkEntry(t, l, id, claimedEntry(id, owner, now.Add(lease), want[0], want[1]))

				// Prior stays what the claim found; the entry follows the claim's writes.
				mustCount(t, c, want[0]+1, want[1]+1, now)
				checkPrior(t, c, tt.prior[0], tt.prior[1])
				checkEntry(t, l, id, claimedEntry(id, owner, now.Add(lease), want[0]+1, want[1]+1))
			})
		}
	}
}

// TestClaimSameOwnerBusyWhileLive: the same message redelivered (same owner) while its
// earlier delivery's claim is live finds it busy, like any other owner: the earlier
// delivery may still be working. Nothing is written, and the earlier delivery keeps its
// claim.
func TestClaimSameOwnerBusyWhileLive(t *testing.T) {
	const id = "req-redelivered"
	l, first, _ := newClaim(t, id)
	mustCount(t, first, 1, 1, at(time.Second))
	mustCount(t, first, 2, 1, at(2*time.Second)) // a second call, not counted
	until := at(2*time.Second + lease)

	for _, now := range []time.Time{at(2 * time.Second), at(10 * time.Second), until.Add(-time.Nanosecond)} {
		for _, calling := range []bool{true, false} {
			checkBusy(t, l, rid(id), "A", now, until, calling)
		}
	}
	checkEntry(t, l, id, claimedEntry(id, "A", until, 2, 1))

	// The earlier delivery still holds it: its writes succeed.
	mustCount(t, first, 3, 2, at(11*time.Second))
	checkEntry(t, l, id, claimedEntry(id, "A", at(11*time.Second+lease), 3, 2))
	checkHolds(t, first, at(11*time.Second), 0, true)
}

// TestClaimSameOwnerTakesOverOnceFree: the same message redelivered (same owner) takes its
// earlier delivery's claim over once it expired or was released, keeps the counts, and the
// earlier delivery's claim is lost.
func TestClaimSameOwnerTakesOverOnceFree(t *testing.T) {
	for _, how := range []string{"expired", "released"} {
		t.Run(how, func(t *testing.T) {
			const id = "req-redelivered"
			l, first, _ := newClaim(t, id)
			mustCount(t, first, 1, 1, at(time.Second))
			mustCount(t, first, 2, 1, at(2*time.Second)) // a second call, not counted

			now := at(2*time.Second + lease) // expired: at its Until
			if how == "released" {
				now = at(3 * time.Second)
				mustRelease(t, first, 2, 1, now)
				checkEntry(t, l, id, claimedEntry(id, "A", now, 2, 1))
			}

			second := mustClaim(t, l, id, "A", now, true)
			checkPrior(t, second, 2, 1)
			checkEntry(t, l, id, claimedEntry(id, "A", now.Add(lease), 3, 1))
			checkHolds(t, second, now, 0, true)

			if err := first.Count(t.Context(), 3, 2, now); !errors.Is(err, ledger.ErrLost) {
				t.Errorf("earlier delivery's Count after a takeover: %v, want ErrLost", err)
			}
			// A failed write changes nothing: the earlier claim, as last written, no
			// longer holds at now.
			checkHolds(t, first, now, 0, false)
			checkEntry(t, l, id, claimedEntry(id, "A", now.Add(lease), 3, 1))
		})
	}
}

func TestClaimExpiry(t *testing.T) {
	tests := []struct {
		name     string
		now      time.Duration // since t0, when B claims
		wantBusy bool
	}{
		{name: "just before until", now: lease - time.Nanosecond, wantBusy: true},
		{name: "at until", now: lease},
		{name: "after until", now: lease + time.Nanosecond},
		{name: "long after", now: 24 * time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const id = "req-expiry"
			l, a, _ := newClaim(t, id)
			mustCount(t, a, 1, 1, t0)
			r, err := l.Claim(t.Context(), rid(id), "int-"+id, "B", at(tt.now), lease, true)
			if err != nil {
				t.Fatal(err)
			}
			if tt.wantBusy {
				if diff := cmp.Diff(r, ledger.ClaimResult{BusyUntil: at(lease)}); diff != "" {
					t.Errorf("Claim by B (-got +want):\n%s", diff)
				}
				checkEntry(t, l, id, claimedEntry(id, "A", at(lease), 1, 1))
				return
			}
			if r.Claim == nil || r.Recorded != nil || !r.BusyUntil.IsZero() {
				t.Fatalf("Claim by B after expiry = %+v, want a claim", r)
			}
			checkPrior(t, r.Claim, 1, 1)
			checkEntry(t, l, id, claimedEntry(id, "B", at(tt.now+lease), 2, 1))
		})
	}
}

func TestClaimAfterRecordReturnsOutcome(t *testing.T) {
	for _, status := range []ledger.Status{ledger.Deleted, ledger.Failed} {
		t.Run(string(status), func(t *testing.T) {
			const id = "req-done"
			l, c, _ := newClaim(t, id)
			mustCount(t, c, 1, 1, t0)
			out := outcome(id, status, "")
			if status == ledger.Failed {
				out = outcome(id, status, "KOMBO.FORBIDDEN")
			}
			out = counts(out, 1, 1)
			want := recorded(out, 1, 1, at(time.Second))
			rec := checkRecord(t, c, out, at(time.Second), want, "Record")
			if !rec.Final() {
				t.Errorf("recorded entry is not Final")
			}

			// Whoever asks, whenever, calling or not: the outcome, no claim, no call counted.
			for _, ask := range []struct {
				owner   string
				now     time.Time
				calling bool
			}{
				{"A", at(time.Second), true}, {"B", at(2 * time.Second), true},
				{"B", at(1000 * time.Hour), false}, {"A", at(1000 * time.Hour), true},
			} {
				r, err := l.Claim(t.Context(), rid(id), "int-"+id, ask.owner, ask.now, lease, ask.calling)
				if err != nil {
					t.Fatal(err)
				}
				if r.Claim != nil || !r.BusyUntil.IsZero() || r.Recorded == nil {
					t.Fatalf("Claim by %s at %s after Record = %+v, want only Recorded", ask.owner, ask.now, r)
				}
				if diff := cmp.Diff(r.Recorded.Entry, want); diff != "" {
					t.Errorf("Claim by %s: Recorded (-got +want):\n%s", ask.owner, diff)
				}
			}
			checkEntry(t, l, id, want)
		})
	}
}

// TestClaimWriteAfterRecordLeavesOutcome: the consumer's keep loop renews a claim until the
// message is settled, so a Renew can land between Record and Stored (and a Release or Count
// could too). Such a late write of the recording handler's own claim must not touch the
// outcome: neither change it nor move its revision under the Recorded, whose Stored would
// then take the conflict for "another handler noted it first" and drop the sequence.
func TestClaimWriteAfterRecordLeavesOutcome(t *testing.T) {
	const id = "req-late-write"
	writes := []struct {
		name  string
		write func(ctx context.Context, c *ledger.Claim) error
	}{
		{"Renew", func(ctx context.Context, c *ledger.Claim) error { return c.Renew(ctx, at(time.Minute)) }},
		{"Count", func(ctx context.Context, c *ledger.Claim) error { return c.Count(ctx, 2, 2, at(time.Minute)) }},
		{"Count lower", func(ctx context.Context, c *ledger.Claim) error { return c.Count(ctx, 0, 0, at(time.Minute)) }},
		{"Release", func(ctx context.Context, c *ledger.Claim) error { return c.Release(ctx, 1, 1, at(time.Minute)) }},
		{"Release lower", func(ctx context.Context, c *ledger.Claim) error { return c.Release(ctx, 0, 0, at(time.Minute)) }},
		{"Record again", func(ctx context.Context, c *ledger.Claim) error {
			_, err := c.Record(ctx, counts(outcome(id, ledger.Failed, "KOMBO.SERVER_ERROR"), 5, 5), at(time.Minute))
			return err
		}},
	}
	for _, w := range writes {
		t.Run(w.name, func(t *testing.T) {
			l, _ := newLedger(t)
			c := mustClaim(t, l, id, "A", t0, true)
			mustCount(t, c, 1, 1, t0)
			out := counts(outcome(id, ledger.Deleted, ""), 1, 1)
			rec, err := c.Record(t.Context(), out, at(time.Second))
			if err != nil {
				t.Fatal(err)
			}
			want := recorded(out, 1, 1, at(time.Second))

			// Whether the late write reports an error or nothing, the outcome stays as it is.
			if err := w.write(t.Context(), c); err != nil {
				t.Logf("late %s after Record: %v", w.name, err)
			}
			if diff := cmp.Diff(mustLookup(t, l, id), want); diff != "" {
				t.Errorf("outcome after a late %s (-got +want):\n%s", w.name, diff)
			}

			if err := rec.Stored(t.Context(), 42); err != nil {
				t.Fatal(err)
			}
			want.ResultSeq = 42
			if diff := cmp.Diff(mustLookup(t, l, id), want); diff != "" {
				t.Errorf("Stored(42) after a late %s (-got +want):\n%s", w.name, diff)
			}
		})
	}
}

// TestRecordAfterRecordReturnsFirst: a claim that recorded an outcome returns that outcome
// from a second Record, whatever the second one says, and writes nothing.
func TestRecordAfterRecordReturnsFirst(t *testing.T) {
	const id = "req-record-twice"
	l, c, _ := newClaim(t, id)
	first := counts(outcome(id, ledger.Deleted, ""), 1, 0)
	want := recorded(first, 1, 0, at(time.Second))
	rec1 := checkRecord(t, c, first, at(time.Second), want, "first Record")

	second := counts(outcome(id, ledger.Failed, "DELETER.INTERNAL"), 3, 3)
	rec2 := checkRecord(t, c, second, at(time.Hour), want, "second Record")
	checkEntry(t, l, id, want)
	checkHolds(t, c, at(time.Second), 0, false) // recorded: the claim no longer holds

	// Either Recorded can note the stored result; the outcome keeps the first's content.
	if err := rec2.Stored(t.Context(), 11); err != nil {
		t.Fatal(err)
	}
	want.ResultSeq = 11
	checkEntry(t, l, id, want)
	if err := rec1.Stored(t.Context(), 11); err != nil {
		t.Errorf("Stored on the first Recorded after the second noted it: %v", err)
	}
	checkEntry(t, l, id, want)
}

// TestRecordTakesExactCounts: Record stores the counts it is given, lower than the claim's
// included (a call counted by the claim that never started), when nobody else wrote.
func TestRecordTakesExactCounts(t *testing.T) {
	tests := []struct {
		name                   string
		claimCalls, claimCtd   int // the claim's counts before Record
		outCalls, outCounted   int
		wantCalls, wantCounted int
	}{
		{name: "same", claimCalls: 2, claimCtd: 1, outCalls: 2, outCounted: 1, wantCalls: 2, wantCounted: 1},
		{name: "lower", claimCalls: 3, claimCtd: 3, outCalls: 2, outCounted: 1, wantCalls: 2, wantCounted: 1},
		{name: "none made", claimCalls: 1, claimCtd: 0, outCalls: 0, outCounted: 0},
		{name: "higher", claimCalls: 1, claimCtd: 0, outCalls: 4, outCounted: 2, wantCalls: 4, wantCounted: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const id = "req-exact"
			l, c, _ := newClaim(t, id)
			mustCount(t, c, tt.claimCalls, tt.claimCtd, t0)
			out := counts(outcome(id, ledger.Failed, "KOMBO.BAD_REQUEST"), tt.outCalls, tt.outCounted)
			want := recorded(out, tt.wantCalls, tt.wantCounted, at(time.Second))
			checkRecord(t, c, out, at(time.Second), want, "Record")
			checkEntry(t, l, id, want)
		})
	}
}

// TestCountWritesAbsolute: Count writes the counts it is given, not increments, lower ones
// included, and renews the claim.
func TestCountWritesAbsolute(t *testing.T) {
	const id = "req-count"
	l, a, _ := newClaim(t, id)
	steps := []struct{ calls, counted int }{{1, 1}, {2, 1}, {2, 1}, {5, 4}, {3, 2}, {0, 0}, {7, 0}}
	for i, s := range steps {
		now := at(time.Duration(i+1) * time.Second)
		mustCount(t, a, s.calls, s.counted, now)
		// Count renews the claim as well.
		checkEntry(t, l, id, claimedEntry(id, "A", now.Add(lease), s.calls, s.counted))
	}
	checkPrior(t, a, 0, 0)
}

func TestCountAcrossTakeover(t *testing.T) {
	const id = "req-counts"
	l, a, _ := newClaim(t, id)
	steps := []struct{ calls, counted int }{{1, 1}, {2, 1}, {3, 2}}
	for i, s := range steps {
		now := at(time.Duration(i+1) * time.Second)
		mustCount(t, a, s.calls, s.counted, now)
		checkEntry(t, l, id, claimedEntry(id, "A", now.Add(lease), s.calls, s.counted))
	}

	expired := at(3*time.Second + lease)
	b := mustClaim(t, l, id, "B", expired, true)
	checkPrior(t, b, 3, 2)
	checkEntry(t, l, id, claimedEntry(id, "B", expired.Add(lease), 4, 2))
	mustCount(t, b, 5, 3, expired)
	checkEntry(t, l, id, claimedEntry(id, "B", expired.Add(lease), 5, 3))

	rec, err := b.Record(t.Context(), counts(outcome(id, ledger.Deleted, ""), 5, 3), expired)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Calls != 5 || rec.Counted != 3 {
		t.Errorf("recorded counts = (%d, %d), want (5, 3)", rec.Calls, rec.Counted)
	}
}

func TestRenewExtendsClaim(t *testing.T) {
	const id = "req-renew"
	l, a, _ := newClaim(t, id)
	mustCount(t, a, 1, 1, t0)
	renewed := at(50 * time.Second)
	if err := a.Renew(t.Context(), renewed); err != nil {
		t.Fatal(err)
	}
	checkEntry(t, l, id, claimedEntry(id, "A", renewed.Add(lease), 1, 1))
	checkHolds(t, a, renewed.Add(lease-time.Nanosecond), 0, true)

	// Past the first lease, the claim still holds.
	r, err := l.Claim(t.Context(), rid(id), "int-"+id, "B", at(lease+time.Second), lease, true)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(r, ledger.ClaimResult{BusyUntil: renewed.Add(lease)}); diff != "" {
		t.Errorf("Claim by B after a renewal (-got +want):\n%s", diff)
	}
	// And A can keep renewing.
	if err := a.Renew(t.Context(), at(lease+2*time.Second)); err != nil {
		t.Errorf("second Renew: %v", err)
	}
	checkEntry(t, l, id, claimedEntry(id, "A", at(2*lease+2*time.Second), 1, 1))
}

func TestReleaseFreesClaimAtOnce(t *testing.T) {
	const id = "req-release"
	l, a, _ := newClaim(t, id)
	mustCount(t, a, 1, 1, t0)
	released := at(5 * time.Second)
	mustRelease(t, a, 1, 1, released)
	checkEntry(t, l, id, claimedEntry(id, "A", released, 1, 1))

	b := mustClaim(t, l, id, "B", released, true)
	checkPrior(t, b, 1, 1)
	checkEntry(t, l, id, claimedEntry(id, "B", released.Add(lease), 2, 1))

	if err := a.Count(t.Context(), 2, 2, released); !errors.Is(err, ledger.ErrLost) {
		t.Errorf("A.Count after releasing and B's takeover: %v, want ErrLost", err)
	}
}

// TestReleaseTakesBackUnstartedCall: a call is counted before it starts (by Claim calling,
// or by Count); when it does not start, Release writes the lower counts of the calls really
// made, and the next handler finds those.
func TestReleaseTakesBackUnstartedCall(t *testing.T) {
	tests := []struct {
		name                   string
		countCalls, countCtd   int // Count before Release; 0, 0: none
		relCalls, relCounted   int
		nextPrior, nextCounted int
	}{
		{name: "the claim's own call", relCalls: 0, relCounted: 0},
		{name: "a later call", countCalls: 3, countCtd: 2, relCalls: 2, relCounted: 1, nextPrior: 2, nextCounted: 1},
		{name: "counted, not made", countCalls: 2, countCtd: 2, relCalls: 2, relCounted: 1, nextPrior: 2, nextCounted: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const id = "req-take-back"
			l, a, _ := newClaim(t, id)
			if tt.countCalls > 0 {
				mustCount(t, a, tt.countCalls, tt.countCtd, at(time.Second))
			}
			released := at(2 * time.Second)
			mustRelease(t, a, tt.relCalls, tt.relCounted, released)
			checkEntry(t, l, id, claimedEntry(id, "A", released, tt.relCalls, tt.relCounted))

			// Released: another owner takes it at once and finds the counts taken back.
			b := mustClaim(t, l, id, "B", released, true)
			checkPrior(t, b, tt.nextPrior, tt.nextCounted)
			checkEntry(t, l, id, claimedEntry(id, "B", released.Add(lease), tt.nextPrior+1, tt.nextCounted))
		})
	}
}

func TestLostClaimWritesFail(t *testing.T) {
	const id = "req-lost"
	l, a, b := takenOver(t, id)
	want := claimedEntry(id, "B", at(2*lease), 2, 1)
	checkEntry(t, l, id, want)

	writes := []struct {
		name  string
		write func() error
	}{
		{"Count", func() error { return a.Count(t.Context(), 2, 2, at(lease)) }},
		{"Count lower", func() error { return a.Count(t.Context(), 0, 0, at(lease)) }},
		{"Renew", func() error { return a.Renew(t.Context(), at(lease)) }},
		{"Release", func() error { return a.Release(t.Context(), 1, 1, at(lease)) }},
		{"Release lower", func() error { return a.Release(t.Context(), 0, 0, at(lease)) }},
	}
	for _, w := range writes {
		if err := w.write(); !errors.Is(err, ledger.ErrLost) {
			t.Errorf("A.%s after B's takeover: %v, want ErrLost", w.name, err)
		}
		checkEntry(t, l, id, want)
	}
	// The failed writes changed nothing: A's claim, as last written, held until at(lease).
	checkHolds(t, a, at(lease-time.Nanosecond), 0, true)
	checkHolds(t, a, at(lease), 0, false)

	// B is unaffected.
	mustCount(t, b, 2, 2, at(lease))
	checkEntry(t, l, id, claimedEntry(id, "B", at(2*lease), 2, 2))
}

func TestStaleRecordKeepsOtherOutcome(t *testing.T) {
	const id = "req-both-recorded"
	l, a, b := takenOver(t, id)
	mustCount(t, b, 2, 2, at(lease))
	bOut := counts(outcome(id, ledger.Deleted, ""), 2, 2)
	want := recorded(bOut, 2, 2, at(lease+time.Second))
	checkRecord(t, b, bOut, at(lease+time.Second), want, "B.Record")

	aRec := checkRecord(t, a, counts(outcome(id, ledger.Failed, "KOMBO.TIMEOUT"), 5, 5), at(lease+2*time.Second), want, "A.Record after B recorded")
	checkEntry(t, l, id, want)
	checkHolds(t, a, t0, 0, false) // it found an outcome: the claim is over

	// A's Recorded (really B's outcome) can note the stored result.
	if err := aRec.Stored(t.Context(), 7); err != nil {
		t.Fatal(err)
	}
	want.ResultSeq = 7
	checkEntry(t, l, id, want)
}

// TestStaleRecordOverwritesOtherExpiredClaim: a handler whose claim was taken over records
// its answer over the other handler's claim once that one expired or was released
// (knowledge a claim does not have), keeping the larger of each count.
func TestStaleRecordOverwritesOtherExpiredClaim(t *testing.T) {
	tests := []struct {
		name                   string
		aCalls, aCounted       int // A's counts in its outcome; B's claim counts (3, 3)
		wantCalls, wantCounted int
	}{
		{name: "B counted more", aCalls: 1, aCounted: 1, wantCalls: 3, wantCounted: 3},
		{name: "A made more calls", aCalls: 4, aCounted: 1, wantCalls: 4, wantCounted: 3},
		{name: "A counted more", aCalls: 2, aCounted: 5, wantCalls: 3, wantCounted: 5},
		{name: "A more of both", aCalls: 6, aCounted: 4, wantCalls: 6, wantCounted: 4},
	}
	for _, how := range []string{"expired", "released"} {
		for _, tt := range tests {
			t.Run(how+"/"+tt.name, func(t *testing.T) {
				const id = "req-a-knows"
				l, a, b := takenOver(t, id)
				mustCount(t, b, 2, 2, at(lease))
				mustCount(t, b, 3, 3, at(lease))
				checkEntry(t, l, id, claimedEntry(id, "B", at(2*lease), 3, 3))

				now := at(2 * lease) // B's claim expired: at its Until
				if how == "released" {
					now = at(lease + time.Second)
					mustRelease(t, b, 3, 3, now)
				}

				// A got its answer after all: it is knowledge B's claim does not have.
				aOut := counts(outcome(id, ledger.Deleted, ""), tt.aCalls, tt.aCounted)
				aRec, err := a.Record(t.Context(), aOut, now)
				if err != nil {
					t.Fatalf("A.Record over B's %s claim: %v", how, err)
				}
				want := recorded(aOut, tt.wantCalls, tt.wantCounted, now)
				if diff := cmp.Diff(aRec.Entry, want); diff != "" {
					t.Errorf("A.Record over B's %s claim (-got +want):\n%s", how, diff)
				}
				checkEntry(t, l, id, want)
				checkHolds(t, a, t0, 0, false) // recorded

				// B has lost: its writes fail and its Record returns A's outcome.
				if err := b.Count(t.Context(), 4, 4, now.Add(time.Second)); !errors.Is(err, ledger.ErrLost) {
					t.Errorf("B.Count after A recorded: %v, want ErrLost", err)
				}
				checkRecord(t, b, counts(outcome(id, ledger.Failed, "KOMBO.SERVER_ERROR"), 4, 4), now.Add(2*time.Second), want, "B.Record after A recorded")
				checkEntry(t, l, id, want)
			})
		}
	}
}

// TestStaleRecordFailsOnOtherLiveClaim: a handler whose claim was taken over does not
// record over the other handler's live claim (its holder may be about to call): Record
// fails with ErrLost and writes nothing, and the other handler goes on undisturbed. Once
// that claim expired, the stale handler's Record succeeds.
func TestStaleRecordFailsOnOtherLiveClaim(t *testing.T) {
	const id = "req-a-late"
	l, a, b := takenOver(t, id)
	mustCount(t, b, 3, 3, at(lease))
	bClaim := claimedEntry(id, "B", at(2*lease), 3, 3)

	aOut := counts(outcome(id, ledger.Deleted, ""), 1, 1)
	for _, now := range []time.Time{at(lease), at(lease + time.Second), at(2*lease - time.Nanosecond)} {
		rec, err := a.Record(t.Context(), aOut, now)
		if !errors.Is(err, ledger.ErrLost) {
			t.Errorf("A.Record at %s over B's live claim = (%+v, %v), want ErrLost", now, rec, err)
		}
		if rec != nil {
			t.Errorf("A.Record at %s failed, yet returned %+v", now, rec)
		}
		checkEntry(t, l, id, bClaim)
	}

	// B still holds its claim: nothing was written under it.
	checkHolds(t, b, at(lease+time.Second), 0, true)
	mustCount(t, b, 4, 3, at(lease+time.Second))
	until := at(2*lease + time.Second)
	checkEntry(t, l, id, claimedEntry(id, "B", until, 4, 3))
	checkBusy(t, l, rid(id), "C", at(lease+2*time.Second), until, true)

	// Once B's claim expired, A's answer is recorded over it, with the larger counts.
	want := recorded(aOut, 4, 3, until)
	checkRecord(t, a, aOut, until, want, "A.Record after B's claim expired")
	checkEntry(t, l, id, want)
	checkRecord(t, b, counts(outcome(id, ledger.Failed, "KOMBO.TIMEOUT"), 5, 5), until.Add(time.Second), want, "B.Record after A recorded")
}

// atOnce calls call for handlers 0 to n-1, each in its goroutine, all released together,
// and returns their results and errors by handler.
func atOnce[T any](n int, call func(i int) (T, error)) ([]T, []error) {
	start := make(chan struct{})
	var wg sync.WaitGroup
	results, errs := make([]T, n), make([]error, n)
	for i := range n {
		wg.Go(func() {
			<-start
			results[i], errs[i] = call(i)
		})
	}
	close(start)
	wg.Wait()
	return results, errs
}

func TestConcurrentClaimsOneWins(t *testing.T) {
	l, _ := newLedger(t)
	const handlers = 8
	for round := range 10 {
		id := fmt.Sprintf("req-race-%d", round)
		results, errs := atOnce(handlers, func(i int) (ledger.ClaimResult, error) {
			return l.Claim(context.Background(), rid(id), "int-"+id, fmt.Sprintf("owner-%d", i), t0, lease, true)
		})

		winner := -1
		for i, r := range results {
			if errs[i] != nil {
				t.Fatalf("round %d, owner %d: %v", round, i, errs[i])
			}
			switch {
			case r.Claim != nil && r.Recorded == nil && r.BusyUntil.IsZero():
				if winner >= 0 {
					t.Errorf("round %d: owners %d and %d both hold a claim", round, winner, i)
				}
				winner = i
			case r.Claim == nil && r.Recorded == nil && r.BusyUntil.Equal(at(lease)):
			default:
				t.Errorf("round %d, owner %d: %+v, want a claim or BusyUntil %s", round, i, r, at(lease))
			}
		}
		if winner < 0 {
			t.Fatalf("round %d: no owner got the claim", round)
		}
		// Only the winner's call is counted.
		w := results[winner].Claim
		checkPrior(t, w, 0, 0)
		checkEntry(t, l, id, claimedEntry(id, fmt.Sprintf("owner-%d", winner), at(lease), 1, 0))
		if err := w.Count(t.Context(), 1, 1, t0); err != nil {
			t.Errorf("round %d: winner's Count: %v", round, err)
		}
	}
}

func TestStored(t *testing.T) {
	const id = "req-stored"
	l, c, _ := newClaim(t, id)
	out := counts(outcome(id, ledger.Deleted, ""), 1, 1)
	rec1, err := c.Record(t.Context(), out, t0)
	if err != nil {
		t.Fatal(err)
	}
	// A second handler reads the same outcome before the first notes the stored result.
	r, err := l.Claim(t.Context(), rid(id), "int-"+id, "B", t0, lease, true)
	if err != nil || r.Recorded == nil {
		t.Fatalf("Claim after Record = %+v, %v; want Recorded", r, err)
	}
	rec2 := r.Recorded
	want := recorded(out, 1, 1, t0)
	if rec2.ResultSeq != 0 {
		t.Errorf("ResultSeq before Stored = %d, want 0", rec2.ResultSeq)
	}

	if err := rec1.Stored(t.Context(), 42); err != nil {
		t.Fatal(err)
	}
	if rec1.ResultSeq != 42 {
		t.Errorf("rec1.ResultSeq after Stored = %d, want 42", rec1.ResultSeq)
	}
	want.ResultSeq = 42
	checkEntry(t, l, id, want)

	if err := rec2.Stored(t.Context(), 42); err != nil {
		t.Errorf("second Stored from another Recorded: %v, want nil", err)
	}
	checkEntry(t, l, id, want)

	// Stored twice on the same Recorded is fine too.
	if err := rec1.Stored(t.Context(), 42); err != nil {
		t.Errorf("Stored again on the same Recorded: %v", err)
	}
	checkEntry(t, l, id, want)

	// Later deliveries see the sequence.
	checkClaimRecorded(t, l, rid(id), "C", at(time.Hour), want, "Claim after Stored")
}

func TestRecordUnclaimed(t *testing.T) {
	const id = "req-unclaimed"
	unclaimed := outcome(id, ledger.Failed, "DELETER.MAX_DELIVERIES")
	// claimed leaves a claim by owner at t0, counting its first call, with the counts
	// given written by Count after.
	claimed := func(owner string, calls, counted int) func(t *testing.T, l *ledger.Ledger) *ledger.Claim {
		return func(t *testing.T, l *ledger.Ledger) *ledger.Claim {
			c := mustClaim(t, l, id, owner, t0, true)
			mustCount(t, c, calls, counted, t0)
			return c
		}
	}
	// released is claimed, then released with the counts given.
	released := func(calls, counted int) func(t *testing.T, l *ledger.Ledger) *ledger.Claim {
		return func(t *testing.T, l *ledger.Ledger) *ledger.Claim {
			c := mustClaim(t, l, id, "A", t0, true)
			mustRelease(t, c, calls, counted, at(time.Second))
			return c
		}
	}
	tests := []struct {
		name string
		// setup prepares the key and returns a handler's claim, if it leaves one.
		setup         func(t *testing.T, l *ledger.Ledger) *ledger.Claim
		out           ledger.Entry
		now           time.Time
		wantBusyUntil time.Time    // zero: not busy
		want          ledger.Entry // the entry returned and stored
	}{
		{
			name:  "nothing there",
			setup: func(*testing.T, *ledger.Ledger) *ledger.Claim { return nil },
			out:   unclaimed, now: t0,
			want: recorded(unclaimed, 0, 0, t0),
		},
		{
			name:  "live claim, just before its until",
			setup: claimed("A", 1, 1),
			out:   unclaimed, now: at(lease - time.Nanosecond),
			wantBusyUntil: at(lease),
			want:          claimedEntry(id, "A", at(lease), 1, 1),
		},
		{
			// Whose claim it is does not matter (RecordUnclaimed knows no owner): the
			// message's own earlier delivery may still record the outcome.
			name:  "live claim of the message's own delivery",
			setup: claimed("U", 2, 1),
			out:   unclaimed, now: at(time.Second),
			wantBusyUntil: at(lease),
			want:          claimedEntry(id, "U", at(lease), 2, 1),
		},
		{
			name: "renewed claim",
			setup: func(t *testing.T, l *ledger.Ledger) *ledger.Claim {
				c := claimed("A", 1, 1)(t, l)
				if err := c.Renew(t.Context(), at(50*time.Second)); err != nil {
					t.Fatal(err)
				}
				return c
			},
			out: unclaimed, now: at(lease + time.Second),
			wantBusyUntil: at(50*time.Second + lease),
			want:          claimedEntry(id, "A", at(50*time.Second+lease), 1, 1),
		},
		{
			name: "recorded",
			setup: func(t *testing.T, l *ledger.Ledger) *ledger.Claim {
				c := mustClaim(t, l, id, "A", t0, true)
				if _, err := c.Record(t.Context(), counts(outcome(id, ledger.Deleted, ""), 1, 1), t0); err != nil {
					t.Fatal(err)
				}
				return nil
			},
			out: unclaimed, now: at(time.Hour),
			want: recorded(outcome(id, ledger.Deleted, ""), 1, 1, t0),
		},
		{
			name: "adopted",
			setup: func(t *testing.T, l *ledger.Ledger) *ledger.Claim {
				if added, err := l.Adopt(t.Context(), counts(outcome(id, ledger.Deleted, ""), 2, 2), t0); err != nil || !added {
					t.Fatalf("Adopt = %v, %v", added, err)
				}
				return nil
			},
			out: unclaimed, now: at(time.Hour),
			want: recorded(outcome(id, ledger.Deleted, ""), 2, 2, t0),
		},
		{
			name:  "expired claim",
			setup: claimed("A", 3, 2),
			out:   unclaimed, now: at(lease),
			want: recorded(unclaimed, 3, 2, at(lease)),
		},
		{
			name:  "expired claim, its call counted, not made",
			setup: claimed("A", 1, 0),
			out:   unclaimed, now: at(lease),
			want: recorded(unclaimed, 1, 0, at(lease)),
		},
		{
			name:  "released claim",
			setup: released(1, 1),
			out:   unclaimed, now: at(time.Second),
			want: recorded(unclaimed, 1, 1, at(time.Second)),
		},
		{
			name:  "released claim, its call taken back",
			setup: released(0, 0),
			out:   unclaimed, now: at(time.Second),
			want: recorded(unclaimed, 0, 0, at(time.Second)),
		},
		{
			name:  "more calls than the claim counted",
			setup: claimed("A", 1, 1),
			out:   counts(unclaimed, 4, 0), now: at(lease),
			want: recorded(unclaimed, 4, 1, at(lease)),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, _ := newLedger(t)
			c := tt.setup(t, l)
			rec, busyUntil, err := l.RecordUnclaimed(t.Context(), tt.out, tt.now)
			if err != nil {
				t.Fatal(err)
			}
			if !busyUntil.Equal(tt.wantBusyUntil) {
				t.Errorf("busyUntil = %s, want %s", busyUntil, tt.wantBusyUntil)
			}
			wantBusy := !tt.wantBusyUntil.IsZero()
			if wantBusy {
				if rec != nil {
					t.Errorf("busy, yet returned %+v", rec)
				}
			} else if rec == nil {
				t.Fatal("not busy, yet no outcome returned")
			} else if diff := cmp.Diff(rec.Entry, tt.want); diff != "" {
				t.Errorf("returned outcome (-got +want):\n%s", diff)
			}
			checkEntry(t, l, id, tt.want)

			if c == nil {
				return
			}
			if wantBusy {
				// Nothing was written: the claim's holder goes on, and records.
				checkHolds(t, c, tt.now, 0, true)
				mustCount(t, c, 5, 5, tt.now)
				out := counts(outcome(id, ledger.Deleted, ""), 5, 5)
				got, err := c.Record(t.Context(), out, tt.now)
				if err != nil {
					t.Fatalf("Record by the live claim's holder: %v", err)
				}
				if diff := cmp.Diff(got.Entry, recorded(out, 5, 5, tt.now)); diff != "" {
					t.Errorf("Record by the live claim's holder (-got +want):\n%s", diff)
				}
				return
			}
			// The handler whose claim was overwritten has lost it, and its Record returns
			// the outcome in force.
			if err := c.Count(t.Context(), 9, 9, tt.now); !errors.Is(err, ledger.ErrLost) {
				t.Errorf("old claim's Count: %v, want ErrLost", err)
			}
			got, err := c.Record(t.Context(), counts(outcome(id, ledger.Deleted, ""), 9, 9), tt.now)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(got.Entry, tt.want); diff != "" {
				t.Errorf("old claim's Record (-got +want):\n%s", diff)
			}
			checkEntry(t, l, id, tt.want)
		})
	}
}

// TestAdopt: Adopt creates an outcome only when the ledger holds nothing for the request
// id; any entry, claim (live, expired or released) or outcome, is left as it is.
func TestAdopt(t *testing.T) {
	const id = "req-adopt"
	found := outcome(id, ledger.Deleted, "")
	found.Calls, found.Counted, found.ResultSeq = 2, 1, 31
	found.RecordedAt = at(-time.Hour) // Adopt stamps its own time
	claimed := func(t *testing.T, l *ledger.Ledger) {
		a := mustClaim(t, l, id, "A", t0, true)
		mustCount(t, a, 1, 1, t0)
	}
	tests := []struct {
		name      string
		setup     func(t *testing.T, l *ledger.Ledger)
		now       time.Time
		wantAdded bool
		want      ledger.Entry
	}{
		{
			name:      "nothing there",
			setup:     func(*testing.T, *ledger.Ledger) {},
			now:       at(time.Second),
			wantAdded: true,
			want:      recorded(found, 2, 1, at(time.Second)),
		},
		{
			name:  "live claim",
			setup: claimed,
			now:   at(time.Second),
			want:  claimedEntry(id, "A", at(lease), 1, 1),
		},
		{
			name:  "expired claim",
			setup: claimed,
			now:   at(24 * time.Hour),
			want:  claimedEntry(id, "A", at(lease), 1, 1),
		},
		{
			name: "released claim",
			setup: func(t *testing.T, l *ledger.Ledger) {
				a := mustClaim(t, l, id, "A", t0, true)
				mustRelease(t, a, 0, 0, t0)
			},
			now:  at(time.Second),
			want: claimedEntry(id, "A", t0, 0, 0),
		},
		{
			name: "recorded",
			setup: func(t *testing.T, l *ledger.Ledger) {
				a := mustClaim(t, l, id, "A", t0, true)
				if _, err := a.Record(t.Context(), counts(outcome(id, ledger.Failed, "KOMBO.FORBIDDEN"), 1, 1), t0); err != nil {
					t.Fatal(err)
				}
			},
			now:  at(time.Second),
			want: recorded(outcome(id, ledger.Failed, "KOMBO.FORBIDDEN"), 1, 1, t0),
		},
		{
			name: "recorded unclaimed",
			setup: func(t *testing.T, l *ledger.Ledger) {
				if _, busyUntil, err := l.RecordUnclaimed(t.Context(), outcome(id, ledger.Failed, "DELETER.MAX_DELIVERIES"), t0); err != nil || !busyUntil.IsZero() {
					t.Fatalf("RecordUnclaimed = %v, %v", busyUntil, err)
				}
			},
			now:  at(time.Second),
			want: recorded(outcome(id, ledger.Failed, "DELETER.MAX_DELIVERIES"), 0, 0, t0),
		},
		{
			name: "adopted",
			setup: func(t *testing.T, l *ledger.Ledger) {
				other := counts(outcome(id, ledger.Failed, "KOMBO.NOT_FOUND"), 3, 3)
				if added, err := l.Adopt(t.Context(), other, t0); err != nil || !added {
					t.Fatalf("first Adopt = %v, %v; want true, nil", added, err)
				}
			},
			now:  at(time.Second),
			want: recorded(outcome(id, ledger.Failed, "KOMBO.NOT_FOUND"), 3, 3, t0),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, _ := newLedger(t)
			tt.setup(t, l)
			added, err := l.Adopt(t.Context(), found, tt.now)
			if err != nil {
				t.Fatal(err)
			}
			if added != tt.wantAdded {
				t.Errorf("Adopt: added = %v, want %v", added, tt.wantAdded)
			}
			checkEntry(t, l, id, tt.want)

			// Adopting again never adds: the first outcome (or the entry there) stays.
			again := counts(outcome(id, ledger.Failed, "KOMBO.SERVER_ERROR"), 7, 7)
			if added, err := l.Adopt(t.Context(), again, tt.now.Add(time.Hour)); err != nil || added {
				t.Errorf("second Adopt = %v, %v; want false, nil", added, err)
			}
			checkEntry(t, l, id, tt.want)
		})
	}
}

// TestAdoptedOutcomeIsFinal: an adopted outcome is an outcome like any: claims return it,
// no call is counted, and it can note where its result is stored.
func TestAdoptedOutcomeIsFinal(t *testing.T) {
	l, _ := newLedger(t)
	const id = "req-adopted"
	out := counts(outcome(id, ledger.Deleted, ""), 1, 1)
	if added, err := l.Adopt(t.Context(), out, t0); err != nil || !added {
		t.Fatalf("Adopt = %v, %v; want true, nil", added, err)
	}
	want := recorded(out, 1, 1, t0)
	rec := checkClaimRecorded(t, l, rid(id), "A", at(time.Second), want, "Claim of an adopted outcome")
	if err := rec.Stored(t.Context(), 5); err != nil {
		t.Fatal(err)
	}
	want.ResultSeq = 5
	checkEntry(t, l, id, want)
}

// TestConcurrentAdoptsOneAdds: of handlers adopting the same outcome at once, one adds it.
func TestConcurrentAdoptsOneAdds(t *testing.T) {
	l, _ := newLedger(t)
	const handlers = 8
	for round := range 5 {
		id := fmt.Sprintf("req-adopt-race-%d", round)
		added, errs := atOnce(handlers, func(i int) (bool, error) {
			return l.Adopt(context.Background(), counts(outcome(id, ledger.Deleted, ""), i, i), t0)
		})
		winner := -1
		for i := range handlers {
			if errs[i] != nil {
				t.Fatalf("round %d, handler %d: %v", round, i, errs[i])
			}
			if added[i] {
				if winner >= 0 {
					t.Errorf("round %d: handlers %d and %d both added", round, winner, i)
				}
				winner = i
			}
		}
		if winner < 0 {
			t.Fatalf("round %d: no handler added", round)
		}
		checkEntry(t, l, id, recorded(outcome(id, ledger.Deleted, ""), winner, winner, t0))
	}
}

func TestRecordUnclaimedNotedStored(t *testing.T) {
	l, _ := newLedger(t)
	out := outcome("req-unclaimed-stored", ledger.Failed, "DELETER.MAX_DELIVERIES")
	rec, busyUntil, err := l.RecordUnclaimed(t.Context(), out, t0)
	if err != nil || !busyUntil.IsZero() {
		t.Fatalf("RecordUnclaimed = %v, %v", busyUntil, err)
	}
	if err := rec.Stored(t.Context(), 9); err != nil {
		t.Fatal(err)
	}
	want := recorded(out, 0, 0, t0)
	want.ResultSeq = 9
	checkEntry(t, l, out.RequestID, want)

	// Asked again, it returns the stored outcome, not the new one.
	rec, busyUntil, err = l.RecordUnclaimed(t.Context(), outcome(out.RequestID, ledger.Deleted, ""), at(time.Hour))
	if err != nil || !busyUntil.IsZero() {
		t.Fatalf("second RecordUnclaimed = %v, %v", busyUntil, err)
	}
	if diff := cmp.Diff(rec.Entry, want); diff != "" {
		t.Errorf("second RecordUnclaimed (-got +want):\n%s", diff)
	}
}

func TestBucketRecreatedWhileClaimHeld(t *testing.T) {
	const id = "req-bucket-gone"
	l, a, js := newClaim(t, id)
	mustCount(t, a, 1, 1, t0)
	if err := js.DeleteKeyValue(t.Context(), bucket); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := l.Lookup(t.Context(), rid(id)); err == nil && ok {
		t.Fatal("the entry survived the bucket's deletion")
	}
	l2, created, err := ledger.Open(t.Context(), js, provisioned())
	if err != nil {
		t.Fatal(err)
	}
	if !created {
		t.Error("Open after deletion: created = false, want true")
	}

	// The key is gone: the claim is still A's to write, and it is written again.
	if err := a.Count(t.Context(), 2, 1, at(time.Second)); err != nil {
		t.Fatalf("Count after the bucket was recreated: %v", err)
	}
	checkHolds(t, a, at(time.Second+lease-time.Nanosecond), 0, true)
	checkEntry(t, l2, id, claimedEntry(id, "A", at(time.Second+lease), 2, 1))

	// Another handler now sees A's live claim.
	r, err := l2.Claim(t.Context(), rid(id), "int-"+id, "B", at(2*time.Second), lease, true)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(r, ledger.ClaimResult{BusyUntil: at(time.Second + lease)}); diff != "" {
		t.Errorf("Claim by B (-got +want):\n%s", diff)
	}

	out := counts(outcome(id, ledger.Deleted, ""), 2, 1)
	want := recorded(out, 2, 1, at(3*time.Second))
	checkRecord(t, a, out, at(3*time.Second), want, "Record")
	checkEntry(t, l, id, want) // the old handle reads the new bucket
	checkEntry(t, l2, id, want)
}

func TestBucketRecreatedRecordBeforeClaimWrites(t *testing.T) {
	// As above, but the claim's next write is the outcome itself (key missing: Record creates it).
	const id = "req-bucket-gone-record"
	l, a, js := newClaim(t, id)
	mustCount(t, a, 1, 1, t0)
	recreateBucket(t, js)
	// Pad the new bucket so that the key's old revision is not reused by chance.
	for i := range 5 {
		if err := l.SaveFloor(t.Context(), fmt.Sprintf("pad-%d", i), 1); err != nil {
			t.Fatal(err)
		}
	}
	out := counts(outcome(id, ledger.Failed, "KOMBO.NOT_FOUND"), 1, 1)
	want := recorded(out, 1, 1, at(time.Second))
	checkRecord(t, a, out, at(time.Second), want, "Record")
	checkEntry(t, l, id, want)
}

func TestBucketRecreatedRelease(t *testing.T) {
	// As above, with a Release taking back the unstarted call: the key is written again
	// with the lower counts, and ends the claim at once.
	const id = "req-bucket-gone-release"
	l, a, js := newClaim(t, id)
	recreateBucket(t, js)
	if err := a.Release(t.Context(), 0, 0, at(time.Second)); err != nil {
		t.Fatalf("Release after the bucket was recreated: %v", err)
	}
	checkEntry(t, l, id, claimedEntry(id, "A", at(time.Second), 0, 0))
	b := mustClaim(t, l, id, "B", at(time.Second), true)
	checkPrior(t, b, 0, 0)
	checkEntry(t, l, id, claimedEntry(id, "B", at(time.Second+lease), 1, 0))
}

func TestFloor(t *testing.T) {
	l, _ := newLedger(t)
	ctx := t.Context()
	consumers := []string{"integration-deleter", "a.b.c", "*", ">", "with space", "日本"}
	for _, c := range consumers {
		got, err := l.Floor(ctx, c)
		if err != nil || got != 0 {
			t.Errorf("Floor(%q) never saved = %d, %v; want 0, nil", c, got, err)
		}
	}
	for i, c := range consumers {
		if err := l.SaveFloor(ctx, c, uint64(100+i)); err != nil {
			t.Fatalf("SaveFloor(%q): %v", c, err)
		}
	}
	for i, c := range consumers {
		if got, err := l.Floor(ctx, c); err != nil || got != uint64(100+i) {
			t.Errorf("Floor(%q) = %d, %v; want %d", c, got, err, 100+i)
		}
	}

	// Saving again replaces it, any value included.
	for _, seq := range []uint64{5, 0, 1<<64 - 1, 17} {
		if err := l.SaveFloor(ctx, "integration-deleter", seq); err != nil {
			t.Fatal(err)
		}
		if got, err := l.Floor(ctx, "integration-deleter"); err != nil || got != seq {
			t.Errorf("Floor after SaveFloor(%d) = %d, %v", seq, got, err)
		}
	}

	// Floors and request ids do not share keys.
	mustClaim(t, l, "integration-deleter", "A", t0, true)
	if got, err := l.Floor(ctx, "integration-deleter"); err != nil || got != 17 {
		t.Errorf("Floor after a claim on the same name = %d, %v; want 17", got, err)
	}
	if e, ok, err := l.Lookup(ctx, rid("a.b.c")); err != nil || ok {
		t.Errorf("Lookup of a name only used as a consumer = %+v, %v, %v; want not found", e, ok, err)
	}
}

// TestNoteStored: the note sent without a PubAck lands like Stored; a note whose revision
// is no longer the key's (another handler noted first) is dropped by the server, and the
// entry keeps the first note.
func TestNoteStored(t *testing.T) {
	const id = "req-note"
	l, c, _ := newClaim(t, id)
	rec, err := c.Record(t.Context(), outcome(id, ledger.Deleted, ""), t0)
	if err != nil {
		t.Fatal(err)
	}
	stale := *rec
	if err := rec.NoteStored(42); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, 5*time.Second, "the note to land", func() bool {
		e, ok, err := l.Lookup(t.Context(), rid(id))
		return err == nil && ok && e.ResultSeq == 42
	})
	if err := stale.NoteStored(43); err != nil { // the revision it holds is no longer the key's
		t.Fatal(err)
	}
	if err := rec.Stored(t.Context(), 42); err != nil { // a sync write after it: orders the server's work
		t.Fatal(err)
	}
	if e, _, _ := l.Lookup(t.Context(), rid(id)); e.ResultSeq != 42 || e.Status != ledger.Deleted {
		t.Errorf("entry %+v, want deleted with result_seq 42 (the stale note dropped)", e)
	}
}

// TestScopedIDs: the same request id in different scopes (incarnations of the stream), and
// without a scope, names different requests: each has an entry of its own, found only by
// its own ID, claimed, recorded and noted independently of the others.
func TestScopedIDs(t *testing.T) {
	l, js := newLedger(t)
	const req = "REQUESTS-7" // a "<stream>-<seq>" fallback id
	plain := rid(req)
	inc1 := ledger.ID{Request: req, Scope: "inc-1"}
	inc2 := ledger.ID{Request: req, Scope: "inc-2"}

	// Each is claimed by its own owner at the same time: none is busy with another's claim.
	a := mustClaimID(t, l, plain, "A", t0, true)
	b := mustClaimID(t, l, inc1, "B", t0, true)
	c := mustClaimID(t, l, inc2, "C", t0, false)
	claimA := claimedEntry(req, "A", at(lease), 1, 0)
	claimB := scoped(claimedEntry(req, "B", at(lease), 1, 0), "inc-1")
	claimC := scoped(claimedEntry(req, "C", at(lease), 0, 0), "inc-2")
	checkEntryID(t, l, plain, claimA)
	checkEntryID(t, l, inc1, claimB)
	checkEntryID(t, l, inc2, claimC)
	checkPrior(t, b, 0, 0)

	// Each is busy with its own claim only.
	checkBusy(t, l, inc1, "B", at(time.Second), at(lease), true)
	checkBusy(t, l, inc1, "X", at(time.Second), at(lease), false)
	checkBusy(t, l, plain, "X", at(time.Second), at(lease), true)

	// The keys: "r.<b64 request>" plus ".<b64 scope>".
	kv, err := js.KeyValue(t.Context(), bucket)
	if err != nil {
		t.Fatal(err)
	}
	b64 := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	for _, k := range []string{"r." + b64(req), "r." + b64(req) + "." + b64("inc-1"), "r." + b64(req) + "." + b64("inc-2")} {
		if _, err := kv.Get(t.Context(), k); err != nil {
			t.Errorf("key %s: %v", k, err)
		}
	}

	// Other scopes, or the scope with another request id, are unknown.
	for _, id := range []ledger.ID{
		{Request: req, Scope: "inc-3"},
		{Request: req, Scope: "inc"},
		{Request: "REQUESTS-8", Scope: "inc-1"},
		{Request: "", Scope: "inc-1"},
		{Request: "inc-1"},
		{Request: req + ".inc-1"},
	} {
		checkMissing(t, l, id)
	}

	// RecordUnclaimed of a scoped id is busy with that id's live claim only.
	unclaimed := outcome(req, ledger.Failed, "DELETER.MAX_DELIVERIES")
	if rec, busyUntil, err := l.RecordUnclaimed(t.Context(), scoped(unclaimed, "inc-2"), at(time.Second)); err != nil || rec != nil || !busyUntil.Equal(at(lease)) {
		t.Errorf("RecordUnclaimed of inc-2 while C holds it = (%+v, %s, %v), want busy until %s", rec, busyUntil, err, at(lease))
	}
	inc3 := ledger.ID{Request: req, Scope: "inc-3"}
	rec3, busyUntil, err := l.RecordUnclaimed(t.Context(), scoped(unclaimed, "inc-3"), at(time.Second))
	if err != nil || !busyUntil.IsZero() {
		t.Fatalf("RecordUnclaimed of inc-3 = %s, %v; want recorded", busyUntil, err)
	}
	want3 := scoped(recorded(unclaimed, 0, 0, at(time.Second)), "inc-3")
	if diff := cmp.Diff(rec3.Entry, want3); diff != "" {
		t.Errorf("RecordUnclaimed of inc-3 (-got +want):\n%s", diff)
	}
	checkEntryID(t, l, inc3, want3)

	// Record keeps the claim's scope, whatever the outcome passed says.
	outB := counts(outcome(req, ledger.Deleted, ""), 1, 1) // no scope
	recB, err := b.Record(t.Context(), outB, at(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	wantB := scoped(recorded(outB, 1, 1, at(time.Second)), "inc-1")
	if diff := cmp.Diff(recB.Entry, wantB); diff != "" {
		t.Errorf("Record of the inc-1 claim (-got +want):\n%s", diff)
	}
	checkEntryID(t, l, inc1, wantB)

	outC := scoped(counts(outcome(req, ledger.Failed, "KOMBO.NOT_FOUND"), 0, 0), "inc-1") // another's scope
	recC, err := c.Record(t.Context(), outC, at(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	wantC := scoped(recorded(outC, 0, 0, at(2*time.Second)), "inc-2")
	if diff := cmp.Diff(recC.Entry, wantC); diff != "" {
		t.Errorf("Record of the inc-2 claim (-got +want):\n%s", diff)
	}
	checkEntryID(t, l, inc2, wantC)
	checkEntryID(t, l, inc1, wantB) // not written by C's Record

	outA := scoped(counts(outcome(req, ledger.Deleted, ""), 1, 1), "inc-9")
	recA, err := a.Record(t.Context(), outA, at(3*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	wantA := recorded(counts(outcome(req, ledger.Deleted, ""), 1, 1), 1, 1, at(3*time.Second)) // no scope
	if diff := cmp.Diff(recA.Entry, wantA); diff != "" {
		t.Errorf("Record of the unscoped claim (-got +want):\n%s", diff)
	}
	checkEntryID(t, l, plain, wantA)
	checkMissing(t, l, ledger.ID{Request: req, Scope: "inc-9"})

	// Stored notes each one's own sequence.
	for i, r := range []*ledger.Recorded{recA, recB, recC} {
		if err := r.Stored(t.Context(), uint64(100+i)); err != nil {
			t.Fatal(err)
		}
	}
	wantA.ResultSeq, wantB.ResultSeq, wantC.ResultSeq = 100, 101, 102
	checkEntryID(t, l, plain, wantA)
	checkEntryID(t, l, inc1, wantB)
	checkEntryID(t, l, inc2, wantC)
	checkEntryID(t, l, inc3, want3)

	// A later claim of each finds its own outcome; a new scope is a new request.
	for _, tc := range []struct {
		id   ledger.ID
		want ledger.Entry
	}{{plain, wantA}, {inc1, wantB}, {inc2, wantC}, {inc3, want3}} {
		checkClaimRecorded(t, l, tc.id, "D", at(time.Hour), tc.want, fmt.Sprintf("Claim(%+v) after Record", tc.id))
	}
	inc4 := ledger.ID{Request: req, Scope: "inc-4"}
	mustClaimID(t, l, inc4, "D", at(time.Hour), true)
	checkEntryID(t, l, inc4, scoped(claimedEntry(req, "D", at(time.Hour+lease), 1, 0), "inc-4"))
}

// TestScopedIDsAnyCharacters: any request id with any scope gets a key of its own: each
// pair is claimed by a distinct owner at once, so a collision would show as busy.
func TestScopedIDsAnyCharacters(t *testing.T) {
	l, _ := newLedger(t)
	requests := []string{"", "a", "a.b", "-empty", ".", "REQUESTS-1", "日本"}
	scopes := []string{"", "x", "a", "a.b", ".", "*", ">", "-empty", "empty", "日本", "with space", "0"}
	i := 0
	for _, r := range requests {
		for _, sc := range scopes {
			id := ledger.ID{Request: r, Scope: sc}
			owner := fmt.Sprintf("owner-%d", i)
			i++
			mustClaimID(t, l, id, owner, t0, true)
			checkEntryID(t, l, id, scoped(claimedEntry(r, owner, at(lease), 1, 0), sc))
		}
	}
	// Each still holds its own claim after all were written.
	i = 0
	for _, r := range requests {
		for _, sc := range scopes {
			id := ledger.ID{Request: r, Scope: sc}
			checkEntryID(t, l, id, scoped(claimedEntry(r, fmt.Sprintf("owner-%d", i), at(lease), 1, 0), sc))
			i++
		}
	}
}

// TestAdoptScoped: Adopt keeps an outcome under its entry's scope: independent of the same
// request id unscoped or in another scope.
func TestAdoptScoped(t *testing.T) {
	l, _ := newLedger(t)
	const req = "REQUESTS-42"
	inc1 := ledger.ID{Request: req, Scope: "inc-1"}
	found := scoped(counts(outcome(req, ledger.Deleted, ""), 1, 1), "inc-1")
	if added, err := l.Adopt(t.Context(), found, t0); err != nil || !added {
		t.Fatalf("Adopt of a scoped outcome = %v, %v; want true, nil", added, err)
	}
	want := recorded(found, 1, 1, t0)
	checkEntryID(t, l, inc1, want)
	checkMissing(t, l, rid(req))
	checkMissing(t, l, ledger.ID{Request: req, Scope: "inc-2"})

	// Adopting it again adds nothing; the same request id unscoped is another request.
	if added, err := l.Adopt(t.Context(), scoped(outcome(req, ledger.Failed, "KOMBO.NOT_FOUND"), "inc-1"), at(time.Hour)); err != nil || added {
		t.Errorf("second Adopt of the scoped outcome = %v, %v; want false, nil", added, err)
	}
	checkEntryID(t, l, inc1, want)
	plainOut := counts(outcome(req, ledger.Failed, "KOMBO.NOT_FOUND"), 2, 2)
	if added, err := l.Adopt(t.Context(), plainOut, at(time.Second)); err != nil || !added {
		t.Errorf("Adopt of the unscoped id = %v, %v; want true, nil", added, err)
	}
	checkEntryID(t, l, rid(req), recorded(plainOut, 2, 2, at(time.Second)))
	checkEntryID(t, l, inc1, want)

	// A live claim in a scope stops an adoption in that scope only.
	inc2 := ledger.ID{Request: req, Scope: "inc-2"}
	mustClaimID(t, l, inc2, "A", t0, true)
	if added, err := l.Adopt(t.Context(), scoped(outcome(req, ledger.Deleted, ""), "inc-2"), at(time.Second)); err != nil || added {
		t.Errorf("Adopt over the inc-2 claim = %v, %v; want false, nil", added, err)
	}
	checkEntryID(t, l, inc2, scoped(claimedEntry(req, "A", at(lease), 1, 0), "inc-2"))

	// Claims find the adopted outcome in its scope, and nothing in another.
	checkClaimRecorded(t, l, inc1, "B", at(time.Second), want, "Claim of the adopted scoped outcome")
	mustClaimID(t, l, ledger.ID{Request: req, Scope: "inc-3"}, "B", at(time.Second), true)
}

// TestHolds: a claim holds at now for margin while now+margin is before its Until as last
// written; Renew and Count move it, Release ends it, and Record ends it for good.
func TestHolds(t *testing.T) {
	l, _ := newLedger(t)
	const id = "req-holds"
	const margin = 10 * time.Second
	c := mustClaim(t, l, id, "A", t0, true)
	until := at(lease)
	for _, tc := range []struct {
		now    time.Time
		margin time.Duration
		want   bool
	}{
		{t0, margin, true},
		{until.Add(-margin - time.Nanosecond), margin, true},
		{until.Add(-margin), margin, false}, // at Until-margin
		{until.Add(-margin + time.Nanosecond), margin, false},
		{until.Add(-time.Nanosecond), 0, true},
		{until, 0, false},
		{until.Add(time.Hour), 0, false},
		{t0, lease, false},
		{t0, lease - time.Nanosecond, true},
	} {
		checkHolds(t, c, tc.now, tc.margin, tc.want)
	}

	// Renew moves Until to its now plus the lease.
	if err := c.Renew(t.Context(), at(30*time.Second)); err != nil {
		t.Fatal(err)
	}
	until = at(30*time.Second + lease)
	checkHolds(t, c, at(lease), margin, true) // past the first lease
	checkHolds(t, c, until.Add(-margin-time.Nanosecond), margin, true)
	checkHolds(t, c, until.Add(-margin), margin, false)

	// So does Count.
	mustCount(t, c, 1, 1, at(40*time.Second))
	until = at(40*time.Second + lease)
	checkHolds(t, c, until.Add(-margin-time.Nanosecond), margin, true)
	checkHolds(t, c, until.Add(-margin), margin, false)

	// Release ends it at its now.
	released := at(50 * time.Second)
	mustRelease(t, c, 1, 1, released)
	checkHolds(t, c, released, 0, false)
	checkHolds(t, c, at(time.Hour), 0, false)

	// A claim taken over holds for its lease from its now; Record ends it for good.
	d := mustClaim(t, l, id, "B", released, true)
	checkHolds(t, d, released, margin, true)
	checkHolds(t, d, released.Add(lease-margin-time.Nanosecond), margin, true)
	checkHolds(t, d, released.Add(lease-margin), margin, false)
	if _, err := d.Record(t.Context(), counts(outcome(id, ledger.Deleted, ""), 2, 2), released.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	checkHolds(t, d, released, 0, false)
	checkHolds(t, d, t0, margin, false)
	if err := d.Renew(t.Context(), released.Add(time.Second)); err != nil { // writes nothing after Record
		t.Errorf("Renew after Record: %v", err)
	}
	checkHolds(t, d, released.Add(time.Second), 0, false)
}

// TestProbe: Probe writes to a live bucket, under a key no request or floor uses, and fails
// once the bucket is gone.
func TestProbe(t *testing.T) {
	l, js := newLedger(t)
	for range 2 {
		if err := l.Probe(t.Context()); err != nil {
			t.Fatalf("Probe on a live bucket: %v", err)
		}
	}
	kv, err := js.KeyValue(t.Context(), bucket)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Get(t.Context(), "probe"); err != nil {
		t.Errorf("key probe after Probe: %v", err)
	}
	// The request id "probe" and the consumer "probe" have keys of their own.
	checkMissing(t, l, rid("probe"))
	if got, err := l.Floor(t.Context(), "probe"); err != nil || got != 0 {
		t.Errorf("Floor(probe) after Probe = %d, %v; want 0, nil", got, err)
	}
	mustClaim(t, l, "probe", "A", t0, true)
	if err := l.Probe(t.Context()); err != nil {
		t.Errorf("Probe after claiming the request id probe: %v", err)
	}
	checkEntry(t, l, "probe", claimedEntry("probe", "A", at(lease), 1, 0))

	if err := js.DeleteKeyValue(t.Context(), bucket); err != nil {
		t.Fatal(err)
	}
	err = l.Probe(t.Context())
	if err == nil {
		t.Fatal("Probe after the bucket was deleted: nil, want an error")
	}
	if !strings.Contains(err.Error(), bucket) {
		t.Errorf("Probe error %q does not name the bucket", err)
	}

	// Created again, the bucket can be written again through the same handle.
	if _, _, err := ledger.Open(t.Context(), js, provisioned()); err != nil {
		t.Fatal(err)
	}
	if err := l.Probe(t.Context()); err != nil {
		t.Errorf("Probe after the bucket was created again: %v", err)
	}
}

func TestIDOf(t *testing.T) {
	const inc = "1700000000000000000"
	for _, tc := range []struct {
		request string
		want    ledger.ID
	}{
		{"REQ-12", ledger.ID{Request: "REQ-12", Scope: inc}},
		{"REQ-0", ledger.ID{Request: "REQ-0", Scope: inc}},
		{"REQ-", ledger.ID{Request: "REQ-"}},
		{"REQ-12a", ledger.ID{Request: "REQ-12a"}},
		{"REQ-12.retry1", ledger.ID{Request: "REQ-12.retry1"}},
		{"OTHER-12", ledger.ID{Request: "OTHER-12"}},
		{"cli-abc", ledger.ID{Request: "cli-abc"}},
		{"", ledger.ID{}},
	} {
		if got := ledger.IDOf(tc.request, "REQ", inc); got != tc.want {
			t.Errorf("IDOf(%q) = %+v, want %+v", tc.request, got, tc.want)
		}
	}
	if got, want := ledger.Incarnation(time.Unix(1700000000, 0)), inc; got != want {
		t.Errorf("Incarnation = %q, want %q", got, want)
	}
}
