package control_test

import (
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/kombo-ops/integration-deleter/internal/control"
	"github.com/kombo-ops/integration-deleter/internal/natstest"
	"github.com/kombo-ops/integration-deleter/internal/testkit"
)

// gate is a dialer that refuses while shut: a replica held off the server until a test lets
// it back.
type gate struct {
	shut atomic.Bool
	net.Dialer
}

func (g *gate) Dial(network, address string) (net.Conn, error) {
	if g.shut.Load() {
		return nil, errors.New("gate: held off")
	}
	return g.Dialer.Dial(network, address)
}

// TestProtectCatchesUpAfterAReconnect: protections added while a replica was cut off, and
// one removed meanwhile, are all applied by the time the replica is Ready again, whether
// the server came back with its store or with a new one (the bucket created anew, its
// revisions starting over); before that, Ready fails. Enough changes are made that
// catching up takes a while.
func TestProtectCatchesUpAfterAReconnect(t *testing.T) {
	for _, freshStore := range []bool{false, true} {
		t.Run(fmt.Sprintf("fresh store %v", freshStore), func(t *testing.T) {
			dir, port := t.TempDir(), testkit.FreePort(t)
			onDir := func(o *server.Options) { o.StoreDir, o.Port = dir, port }
			s := natstest.Start(t, onDir)
			g := &gate{}
			_, js := testkit.JetStream(t, s.ClientURL(), nats.SetCustomDialer(g),
				nats.ReconnectWait(20*time.Millisecond), nats.MaxReconnects(-1))
			replica := openProtect(t, js)
			admin := openProtect(t, connect(t, s))
			for i := range 5 {
				add(t, admin, fmt.Sprintf("acme:old-%d", i))
			}
			watchProtect(t, replica)
			waitMatch(t, replica, "acme:old-4", true)

			g.shut.Store(true)
			s.Shutdown()
			s.WaitForShutdown()
			testkit.WaitFor(t, 5*time.Second, "Ready to fail", func() bool { return replica.Ready() != nil })
			if freshStore {
				dir = t.TempDir()
			}
			s = natstest.Start(t, onDir)
			admin = openProtect(t, connect(t, s))
			for i := range 300 {
				add(t, admin, fmt.Sprintf("acme:%03d", i))
			}
			if _, err := admin.Remove(t.Context(), "acme:old-4"); err != nil {
				t.Fatal(err)
			}
			g.shut.Store(false)

			for end := time.Now().Add(10 * time.Second); replica.Ready() != nil; time.Sleep(time.Millisecond) {
				if time.Now().After(end) {
					t.Fatalf("not Ready 10 s after the replica could reconnect: %v", replica.Ready())
				}
			}
			_, hasNew := replica.Match("acme:299")
			_, hasOld := replica.Match("acme:old-4")
			if !hasNew || hasOld {
				t.Fatalf("Ready after the reconnect with acme:299 protected %v, acme:old-4 %v; want true, false", hasNew, hasOld)
			}
		})
	}
}

func add(t *testing.T, p *control.Protect, pattern string) {
	t.Helper()
	if err := p.Add(t.Context(), control.Protection{Pattern: pattern, Reason: "test", By: "t"}); err != nil {
		t.Fatal(err)
	}
}

// TestProtectWatchFailsWhenTheBucketIsGone: a watch that cannot start returns its error
// (Ready says why) instead of trying again for ever.
func TestProtectWatchFailsWhenTheBucketIsGone(t *testing.T) {
	_, js := start(t)
	p := openProtect(t, js)
	if err := js.DeleteKeyValue(t.Context(), protectBucket); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- p.Watch(t.Context()) }()
	select {
	case err := <-done:
		if err == nil || p.Ready() == nil {
			t.Fatalf("Watch on a deleted bucket: %v, Ready %v; want an error from both", err, p.Ready())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Watch on a deleted bucket had not returned after 10 s")
	}
}
