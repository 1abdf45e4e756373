package control_test

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kombo-ops/integration-deleter/internal/control"
	"github.com/kombo-ops/integration-deleter/internal/testkit"
)

const fuseStream = "REQUESTS_FUSE"

func openFuse(t *testing.T, js jetstream.JetStream, n int, window time.Duration) *control.Fuse {
	t.Helper()
	f, err := control.OpenFuse(t.Context(), js, fuseStream, n, window, 1, true)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// takeAll takes until the fuse refuses, and returns how many it gave.
func takeAll(t *testing.T, f *control.Fuse) int {
	t.Helper()
	for n := 0; ; n++ {
		ok, err := f.Take(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			return n
		}
	}
}

// TestFuseCapsReplicasTakingAtOnce has three replicas, each on its own connection, take 15
// tokens each at once from a fuse of 20: exactly 20 calls are allowed, 25 refused.
func TestFuseCapsReplicasTakingAtOnce(t *testing.T) {
	s, js := start(t)
	f := openFuse(t, js, 20, time.Hour)
	var mu sync.Mutex
	ok, refused := 0, 0
	var wg sync.WaitGroup
	for range 3 {
		r, err := control.OpenFuse(t.Context(), connect(t, s), fuseStream, 20, time.Hour, 1, false)
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			for range 15 {
				got, err := r.Take(t.Context())
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				if got {
					ok++
				} else {
					refused++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if ok != 20 || refused != 25 {
		t.Fatalf("%d tokens taken, %d refused; want 20 and 25", ok, refused)
	}
	if err := f.Reset(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := takeAll(t, f); got != 20 {
		t.Fatalf("after Reset: %d tokens, want 20", got)
	}
	if err := control.ResetFuse(t.Context(), js, fuseStream); err != nil {
		t.Fatal(err)
	}
	if got := takeAll(t, f); got != 20 {
		t.Fatalf("after ResetFuse: %d tokens, want 20", got)
	}
}

// TestFuseTokensComeBackAfterTheWindow: a token returns once the call it allowed is a window
// old, not before.
func TestFuseTokensComeBackAfterTheWindow(t *testing.T) {
	_, js := start(t)
	const window = time.Second
	f := openFuse(t, js, 3, window)
	begin := time.Now()
	if got := takeAll(t, f); got != 3 {
		t.Fatalf("%d tokens, want 3", got)
	}
	testkit.Eventually(t, 5*time.Second, "a token to come back", func() (bool, string) {
		ok, err := f.Take(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		return ok, ""
	})
	if since := time.Since(begin); since < window {
		t.Fatalf("a token came back after %s, within the window of %s", since, window)
	}
}

func TestOpenFuseMissingWithoutProvision(t *testing.T) {
	_, js := start(t)
	_, err := control.OpenFuse(t.Context(), js, fuseStream, 20, time.Hour, 1, false)
	if !errors.Is(err, control.ErrMissing) || !strings.Contains(err.Error(), fuseStream) {
		t.Fatalf("OpenFuse: %v; want ErrMissing naming %s", err, fuseStream)
	}
}

// TestOpenFuseUpdatesChangedLimits reopens the fuse as after DELETE_FUSE changed from
// 20/1h to 2/1s (the duplicate window must shrink too) and back.
func TestOpenFuseUpdatesChangedLimits(t *testing.T) {
	_, js := start(t)
	openFuse(t, js, 20, time.Hour)
	for _, lim := range []struct {
		n      int
		window time.Duration
	}{{2, time.Second}, {20, time.Hour}, {20, time.Hour}} {
		f := openFuse(t, js, lim.n, lim.window)
		if n, w := f.Limit(); n != lim.n || w != lim.window {
			t.Fatalf("Limit() = %d, %s; want %d, %s", n, w, lim.n, lim.window)
		}
		s, err := js.Stream(t.Context(), fuseStream)
		if err != nil {
			t.Fatal(err)
		}
		c := s.CachedInfo().Config
		if c.MaxMsgs != int64(lim.n) || c.MaxAge != lim.window || c.Discard != jetstream.DiscardNew {
			t.Fatalf("stream limits: %d msgs, %s, discard %s; want %d, %s, new", c.MaxMsgs, c.MaxAge, c.Discard, lim.n, lim.window)
		}
	}
}

// TestFuseTakeFailsWhenItCannotTell: without an answer from the stream, Take returns an
// error, not a refusal and not a token.
func TestFuseTakeFailsWhenItCannotTell(t *testing.T) {
	_, js := start(t)
	f := openFuse(t, js, 20, time.Hour)
	if err := js.DeleteStream(t.Context(), fuseStream); err != nil {
		t.Fatal(err)
	}
	if ok, err := f.Take(t.Context()); ok || err == nil {
		t.Fatalf("Take = %v, %v; want an error", ok, err)
	}
}
