package control_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/kombo-ops/integration-deleter/internal/control"
	"github.com/kombo-ops/integration-deleter/internal/natstest"
	"github.com/kombo-ops/integration-deleter/internal/testkit"
)

// TestProtectCatchesUpAfterAReconnect: protections added while a replica was cut off, and
// one removed meanwhile, are all applied by the time the replica is Ready again; before
// that, Ready fails. Enough changes are made that catching up takes a while.
func TestProtectCatchesUpAfterAReconnect(t *testing.T) {
	dir, port := t.TempDir(), testkit.FreePort(t)
	onDir := func(o *server.Options) { o.StoreDir, o.Port = dir, port }
	s := natstest.Start(t, onDir)
	_, js := testkit.JetStream(t, s.ClientURL(), nats.ReconnectWait(3*time.Second), nats.MaxReconnects(-1))
	replica := openProtect(t, js)
	admin := openProtect(t, connect(t, s))
	add(t, admin, "acme:old")
	watchProtect(t, replica)
	waitMatch(t, replica, "acme:old", true)

	s.Shutdown()
	s.WaitForShutdown()
	testkit.WaitFor(t, 5*time.Second, "Ready to fail", func() bool { return replica.Ready() != nil })
	s = natstest.Start(t, onDir)
	admin = openProtect(t, connect(t, s)) // the replica reconnects 3 s after it lost the server
	for i := range 300 {
		add(t, admin, fmt.Sprintf("acme:%03d", i))
	}
	if _, err := admin.Remove(t.Context(), "acme:old"); err != nil {
		t.Fatal(err)
	}
	for end := time.Now().Add(10 * time.Second); replica.Ready() != nil; time.Sleep(time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("not Ready 10 s after the server came back: %v", replica.Ready())
		}
	}
	_, hasLast := replica.Match("acme:299")
	_, hasOld := replica.Match("acme:old")
	if !hasLast || hasOld {
		t.Fatalf("Ready after the reconnect with acme:299 protected %v, acme:old %v; want true, false", hasLast, hasOld)
	}
}

func add(t *testing.T, p *control.Protect, pattern string) {
	t.Helper()
	if err := p.Add(t.Context(), control.Protection{Pattern: pattern, Reason: "test", By: "t"}); err != nil {
		t.Fatal(err)
	}
}
