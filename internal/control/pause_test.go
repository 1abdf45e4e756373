package control_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kombo-ops/integration-deleter/internal/control"
	"github.com/kombo-ops/integration-deleter/internal/natstest"
	"github.com/kombo-ops/integration-deleter/internal/testkit"
)

const (
	ledgerBucket = "LEDGER"
	reqStream    = "REQUESTS"
	durable      = "deleter"
)

// provisionPause creates the request stream, its durable consumer and the ledger bucket
// that holds pause notes.
func provisionPause(t *testing.T, js jetstream.JetStream) {
	t.Helper()
	ctx := t.Context()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: reqStream, Subjects: []string{"req.>"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateConsumer(ctx, reqStream, jetstream.ConsumerConfig{Durable: durable, AckPolicy: jetstream.AckExplicitPolicy}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: ledgerBucket}); err != nil {
		t.Fatal(err)
	}
}

// watcher records what WatchPause gives its callback.
type watcher struct {
	mu     sync.Mutex
	states []control.PauseState
}

func (w *watcher) last() (control.PauseState, int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.states) == 0 {
		return control.PauseState{}, 0
	}
	return w.states[len(w.states)-1], len(w.states)
}

// watch runs WatchPause on js until t ends.
func watch(t *testing.T, js jetstream.JetStream) *watcher {
	t.Helper()
	w := &watcher{}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- control.WatchPause(ctx, js, ledgerBucket, reqStream, durable, func(s control.PauseState) {
			w.mu.Lock()
			defer w.mu.Unlock()
			w.states = append(w.states, s)
		}, func(err error) { t.Errorf("watch: %v", err) })
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	testkit.WaitFor(t, 5*time.Second, "the watcher's first state", func() bool { _, n := w.last(); return n > 0 })
	return w
}

// waitState waits up to within for the watcher's latest state to be want (At ignored when
// want's is zero).
func waitState(t *testing.T, w *watcher, within time.Duration, want control.PauseState) {
	t.Helper()
	testkit.Eventually(t, within, "the watcher to see the state", func() (bool, string) {
		got, _ := w.last()
		if want.At.IsZero() {
			got.At = time.Time{}
		}
		d := cmp.Diff(want, got)
		return d == "", d
	})
}

func TestPauseIsSeenByAWatcherOnAnotherConnection(t *testing.T) {
	s, js := start(t)
	provisionPause(t, js)
	w := watch(t, connect(t, s))
	if got, _ := w.last(); got.Paused {
		t.Fatalf("first state: %+v, want not paused", got)
	}

	until := time.Now().Add(time.Hour).UTC().Round(time.Millisecond)
	got, err := control.Pause(t.Context(), js, ledgerBucket, reqStream, durable, "incident 42", "alice", until)
	if err != nil {
		t.Fatal(err)
	}
	want := control.PauseState{Paused: true, Until: until, Reason: "incident 42", By: "alice", At: got.At}
	if d := cmp.Diff(want, got); d != "" || got.At.IsZero() {
		t.Fatalf("Pause returned (-want +got):\n%s", d)
	}
	waitState(t, w, time.Second, want)

	got, err = control.Resume(t.Context(), js, ledgerBucket, reqStream, durable)
	if err != nil || got.Paused {
		t.Fatalf("Resume = %+v, %v; want not paused", got, err)
	}
	waitState(t, w, time.Second, control.PauseState{})
}

func TestPauseEndsByItself(t *testing.T) {
	s, js := start(t)
	provisionPause(t, js)
	w := watch(t, connect(t, s))
	until := time.Now().Add(2 * time.Second).UTC()
	if _, err := control.Pause(t.Context(), js, ledgerBucket, reqStream, durable, "short", "bob", until); err != nil {
		t.Fatal(err)
	}
	waitState(t, w, time.Second, control.PauseState{Paused: true, Until: until, Reason: "short", By: "bob"})
	testkit.WaitFor(t, time.Until(until)+time.Second, "the pause to end by itself", func() bool {
		got, _ := w.last()
		return !got.Paused
	})
	if time.Now().Before(until) {
		t.Fatalf("seen unpaused before %s", until)
	}
}

func TestPausedOnTheServerWithoutANote(t *testing.T) {
	s, js := start(t)
	provisionPause(t, js)
	w := watch(t, connect(t, s))
	until := time.Now().Add(time.Hour).UTC()
	if _, err := js.PauseConsumer(t.Context(), reqStream, durable, until); err != nil {
		t.Fatal(err)
	}
	want := control.PauseState{Paused: true, Until: until, Reason: control.NoReason}
	waitState(t, w, time.Second, want)
	got, err := control.ReadPause(t.Context(), js, ledgerBucket, reqStream, durable)
	if d := cmp.Diff(want, got); err != nil || d != "" {
		t.Fatalf("ReadPause: %v (-want +got):\n%s", err, d)
	}
}

func TestANoteOfAnEndedPauseIsNotReused(t *testing.T) {
	_, js := start(t)
	provisionPause(t, js)
	ctx := t.Context()
	until := time.Now().Add(500 * time.Millisecond)
	if _, err := control.Pause(ctx, js, ledgerBucket, reqStream, durable, "fuse: 20 calls within 1h", "replica-1", until); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, 3*time.Second, "the pause to end", func() bool {
		st, err := control.ReadPause(ctx, js, ledgerBucket, reqStream, durable)
		return err == nil && !st.Paused
	})
	if _, err := js.PauseConsumer(ctx, reqStream, durable, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	got, err := control.ReadPause(ctx, js, ledgerBucket, reqStream, durable)
	if err != nil || got.Reason != control.NoReason || got.Fuse() {
		t.Fatalf("ReadPause = %+v, %v; want the reason %q, not the ended pause's", got, err, control.NoReason)
	}
}

func TestFuseReason(t *testing.T) {
	for reason, want := range map[string]bool{"fuse: 20 calls within 1h": true, "incident": false, "fuse:x": false} {
		if got := (control.PauseState{Paused: true, Reason: reason}).Fuse(); got != want {
			t.Errorf("Fuse() with reason %q = %v, want %v", reason, got, want)
		}
	}
}

func TestPauseRefusesWhatCannotBeAPause(t *testing.T) {
	_, js := start(t)
	provisionPause(t, js)
	for name, tc := range map[string]struct {
		reason string
		until  time.Time
		want   string
	}{
		"past":      {"x", time.Now().Add(-time.Second), "not in the future"},
		"no reason": {"", time.Time{}, "reason is required"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := control.Pause(t.Context(), js, ledgerBucket, reqStream, durable, tc.reason, "me", tc.until)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Pause: %v, want an error saying %q", err, tc.want)
			}
		})
	}
}

// TestPauseOutlivesARestart pauses until resume, restarts the server on the same store and
// reads the pause from a new connection, as a restarted daemon would.
func TestPauseOutlivesARestart(t *testing.T) {
	dir := t.TempDir()
	onDir := func(o *server.Options) { o.StoreDir = dir }
	s := natstest.Start(t, onDir)
	js := connect(t, s)
	provisionPause(t, js)
	if _, err := control.Pause(t.Context(), js, ledgerBucket, reqStream, durable, "migration", "carol", time.Time{}); err != nil {
		t.Fatal(err)
	}
	js.Conn().Close()
	s.Shutdown()
	s.WaitForShutdown()

	js = connect(t, natstest.Start(t, onDir))
	got, err := control.ReadPause(t.Context(), js, ledgerBucket, reqStream, durable)
	want := control.PauseState{Paused: true, Reason: "migration", By: "carol", At: got.At}
	if d := cmp.Diff(want, got); err != nil || d != "" || got.At.IsZero() {
		t.Fatalf("ReadPause after restart: %v (-want +got):\n%s", err, d)
	}
}
