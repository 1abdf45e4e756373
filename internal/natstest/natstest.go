package natstest

import (
	"os"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Start starts a JetStream server on a free loopback port, storing under a temporary
// directory of tb, and shuts it down when tb ends. mod may change the options first.
func Start(tb testing.TB, mod ...func(*server.Options)) *server.Server {
	tb.Helper()
	o := &server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: tb.TempDir(), NoLog: true, NoSigs: true}
	for _, m := range mod {
		m(o)
	}
	s, err := server.NewServer(o)
	if err != nil {
		tb.Fatal(err)
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		tb.Fatal("nats-server did not start")
	}
	tb.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	return s
}

// SkipUnlessCluster skips tb unless CLUSTER=1 (make test-cluster): the tests on a 3-node
// cluster take minutes and wait out leader elections, so they stay out of make test.
func SkipUnlessCluster(tb testing.TB) {
	tb.Helper()
	if os.Getenv("CLUSTER") != "1" {
		tb.Skip("the 3-node cluster tests run only with CLUSTER=1 (make test-cluster)")
	}
}
