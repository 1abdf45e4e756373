package control_test

import (
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kombo-ops/integration-deleter/internal/natstest"
	"github.com/kombo-ops/integration-deleter/internal/testkit"
)

// connect opens a new connection to s, as another replica or the CLI would, closed when t
// ends.
func connect(t *testing.T, s *server.Server) jetstream.JetStream {
	t.Helper()
	_, js := testkit.JetStream(t, s.ClientURL())
	return js
}

// start starts a real embedded server and returns it with a first connection.
func start(t *testing.T) (*server.Server, jetstream.JetStream) {
	t.Helper()
	s := natstest.Start(t)
	return s, connect(t, s)
}
