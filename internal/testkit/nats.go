package testkit

import (
	"context"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ConnectJetStream connects to the NATS server at url with opts and opens JetStream on the
// connection; the caller closes the connection.
func ConnectJetStream(url string, opts ...nats.Option) (*nats.Conn, jetstream.JetStream, error) {
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return nc, js, nil
}

// JetStream is ConnectJetStream for a test: it fails tb when it cannot connect, and closes
// the connection when tb's test ends.
func JetStream(tb TB, url string, opts ...nats.Option) (*nats.Conn, jetstream.JetStream) {
	tb.Helper()
	nc, js, err := ConnectJetStream(url, opts...)
	if err != nil {
		tb.Fatalf("connect to NATS: %v", err)
	}
	tb.Cleanup(nc.Close)
	return nc, js
}

// KeepStreamsDir gives the account a stream that stays, as the daemon's account always has
// (its request stream). A test that deletes the account's only stream and creates another
// at once needs it: after the last stream goes, nats-server removes the account's emptied
// streams directory from a goroutine of its own, and a create racing it fails with 10049
// "error creating store for stream" (mkdir …/streams: no such file or directory).
func KeepStreamsDir(tb TB, js jetstream.JetStream) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "TESTKIT_KEEP", Subjects: []string{"testkit.keep"}}); err != nil {
		tb.Fatalf("create stream TESTKIT_KEEP: %v", err)
	}
}
