package control_test

import (
	"context"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kombo-ops/integration-deleter/internal/control"
	"github.com/kombo-ops/integration-deleter/internal/testkit"
)

const protectBucket = "INTEGRATION_DELETE_PROTECTED"

func openProtect(t *testing.T, js jetstream.JetStream) *control.Protect {
	t.Helper()
	p, err := control.OpenProtect(t.Context(), js, protectBucket, 1, true)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// watchProtect runs p.Watch until t ends and waits for the list to be loaded.
func watchProtect(t *testing.T, p *control.Protect) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- p.Watch(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	testkit.WaitFor(t, 5*time.Second, "the protect list to load", func() bool { return p.Ready() == nil })
}

// waitMatch waits up to a second for p.Match(id) to say want.
func waitMatch(t *testing.T, p *control.Protect, id string, want bool) {
	t.Helper()
	testkit.WaitFor(t, time.Second, "Match("+id+") to change", func() bool {
		_, got := p.Match(id)
		return got == want
	})
}

// TestProtectionAppliesWithoutRestart: one replica watches, the CLI adds and removes on
// another connection; each change is applied well within a second.
func TestProtectionAppliesWithoutRestart(t *testing.T) {
	s, js := start(t)
	replica := openProtect(t, js)
	if err := replica.Ready(); err == nil {
		t.Fatal("Ready before Watch loaded the list: nil, want an error")
	}
	watchProtect(t, replica)
	cli := openProtect(t, connect(t, s))

	added := control.Protection{Pattern: "acme:*", Reason: "legal hold", By: "dave", AddedAt: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}
	if err := cli.Add(t.Context(), added); err != nil {
		t.Fatal(err)
	}
	waitMatch(t, replica, "acme:42", true)
	got, _ := replica.Match("acme:42")
	if d := cmp.Diff(added, got); d != "" {
		t.Fatalf("Match (-want +got):\n%s", d)
	}
	if _, ok := replica.Match("globex:42"); ok {
		t.Fatal("globex:42 matched acme:*")
	}

	for _, want := range []bool{true, false} {
		removed, err := cli.Remove(t.Context(), "acme:*")
		if err != nil || removed != want {
			t.Fatalf("Remove = %v, %v; want %v", removed, err, want)
		}
	}
	waitMatch(t, replica, "acme:42", false)
	if err := replica.Ready(); err != nil {
		t.Fatalf("Ready while watching: %v", err)
	}
}

// TestProtectLoadsWhatExists: a replica started after protections were added matches them
// from the first moment it is ready, exact ids with ':', '/' and UTF-8 included.
func TestProtectLoadsWhatExists(t *testing.T) {
	_, js := start(t)
	cli := openProtect(t, js)
	ids := []string{"B7yPLNMGcVHmwZTHDd8eV4Zk", "org/acme:42", "größe:☃", "*:123", "a*b*c"}
	for _, id := range ids {
		if err := cli.Add(t.Context(), control.Protection{Pattern: id}); err != nil {
			t.Fatal(err)
		}
	}
	replica := openProtect(t, js)
	watchProtect(t, replica)
	for id, want := range map[string]string{
		"B7yPLNMGcVHmwZTHDd8eV4Zk": "B7yPLNMGcVHmwZTHDd8eV4Zk", "org/acme:42": "org/acme:42", "größe:☃": "größe:☃",
		"acme:123": "*:123", "aXbYc": "a*b*c", "org/acme:4": "", "größe": "",
	} {
		got, ok := replica.Match(id)
		if got.Pattern != want || ok != (want != "") {
			t.Errorf("Match(%q) = %q, %v; want %q", id, got.Pattern, ok, want)
		}
	}
}

func TestProtectListIsSortedByPattern(t *testing.T) {
	_, js := start(t)
	p := openProtect(t, js)
	at := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	pr := func(pat string) control.Protection {
		return control.Protection{Pattern: pat, Reason: "r " + pat, By: "erin", AddedAt: at}
	}
	for _, pat := range []string{"b:*", "a:1", "c", "a:*"} {
		if err := p.Add(t.Context(), pr(pat)); err != nil {
			t.Fatal(err)
		}
	}
	want := []control.Protection{pr("a:*"), pr("a:1"), pr("b:*"), pr("c")}
	got, err := p.List(t.Context())
	if d := cmp.Diff(want, got); err != nil || d != "" {
		t.Fatalf("List: %v (-want +got):\n%s", err, d)
	}
	if err := p.Add(t.Context(), control.Protection{Pattern: ""}); err == nil {
		t.Fatal("Add of an empty pattern: nil error")
	}
}

// TestAnUnreadableProtectionStillProtects: a value that cannot be decoded still protects the
// pattern its key names.
func TestAnUnreadableProtectionStillProtects(t *testing.T) {
	_, js := start(t)
	p := openProtect(t, js)
	watchProtect(t, p)
	kv, err := js.KeyValue(t.Context(), protectBucket)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(t.Context(), "p."+base64.RawURLEncoding.EncodeToString([]byte("acme:*")), []byte("{oops")); err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(t.Context(), "other", []byte("{}")); err != nil {
		t.Fatal(err)
	}
	waitMatch(t, p, "acme:1", true)
	if got, _ := p.Match("acme:1"); !strings.Contains(got.Reason, "unreadable") {
		t.Fatalf("reason %q, want it to say the entry is unreadable", got.Reason)
	}
}

func TestProtectNotReadyAfterWatchEnds(t *testing.T) {
	_, js := start(t)
	p := openProtect(t, js)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- p.Watch(ctx) }()
	testkit.WaitFor(t, 5*time.Second, "the protect list to load", func() bool { return p.Ready() == nil })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if p.Ready() == nil {
		t.Fatal("Ready after Watch returned: nil, want an error")
	}
}

// TestProtectNotReadyWhileDisconnected: changes made while a replica cannot hear them must
// not let its deletes through.
func TestProtectNotReadyWhileDisconnected(t *testing.T) {
	s, js := start(t)
	p := openProtect(t, js)
	watchProtect(t, p)
	s.Shutdown()
	testkit.WaitFor(t, 5*time.Second, "Ready to fail", func() bool { return p.Ready() != nil })
}

func TestOpenProtectMissingWithoutProvision(t *testing.T) {
	_, js := start(t)
	_, err := control.OpenProtect(t.Context(), js, protectBucket, 1, false)
	if !errors.Is(err, control.ErrMissing) || !strings.Contains(err.Error(), protectBucket) {
		t.Fatalf("OpenProtect: %v; want ErrMissing naming %s", err, protectBucket)
	}
}
