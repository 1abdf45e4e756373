package daemon

import (
	"net"
	"time"
)

// WithListen returns o with the HTTP listener made by listen instead of net.Listen, for
// tests that break or watch the listener.
func WithListen(o Options, listen func(network, address string) (net.Listener, error)) Options {
	o.listen = listen
	return o
}

// ShutdownBudgets returns the budgets of a shutdown within total: calls in flight, the
// consumer, the NATS drain and the HTTP server.
func ShutdownBudgets(total time.Duration) (calls, consumer, drain, http time.Duration) {
	b := shutdownBudgets(total)
	return b.calls, b.consumer, b.drain, b.http
}
