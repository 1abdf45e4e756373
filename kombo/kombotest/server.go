package kombotest

import (
	"context"
	"net"
	"net/http"
	"time"
)

// TB is the part of testing.TB that NewServer uses. kombotest does not import testing, so
// that the fake-kombo binary and the tools that serve the fake do not link it.
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
	Cleanup(func())
}

// NewServer starts a fake with options o on a loopback port and returns it with its base URL
// (http://127.0.0.1:PORT/v1), ready for a client. The server is closed by tb.Cleanup, after
// Close has ended the calls that still wait.
func NewServer(tb TB, o Options) (*Fake, string) {
	tb.Helper()
	if err := o.Validate(); err != nil {
		tb.Fatalf("kombotest.NewServer: %v", err)
	}
	f := New(o)
	url, stop, err := Serve("127.0.0.1:0", f)
	if err != nil {
		tb.Fatalf("kombotest.NewServer: %v", err)
	}
	tb.Cleanup(stop)
	tb.Cleanup(f.Close) // runs first: releases hanging calls so that stop can return
	return f, url
}

// Serve serves h (a Fake, or a handler in front of one) over HTTP on addr ("127.0.0.1:0" for
// a free loopback port) and returns the base URL a client uses, http://HOST:PORT/v1, and stop,
// which shuts the server down and waits for the calls in progress (up to 5 s, then drops
// them). Close the Fake before stop, so that the calls that wait end at once.
func Serve(addr string, h http.Handler) (baseURL string, stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(ln)
	}()
	stop = func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if srv.Shutdown(ctx) != nil {
			_ = srv.Close()
		}
		<-served
	}
	return "http://" + ln.Addr().String() + "/v1", stop, nil
}
