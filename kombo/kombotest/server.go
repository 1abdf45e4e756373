package kombotest

import (
	"net/http/httptest"
	"testing"
)

// NewServer starts a fake with options o on a loopback port and returns it with its base URL
// (http://127.0.0.1:PORT/v1), ready for a client. The server is closed by tb.Cleanup, after
// Close has ended the calls that still wait.
func NewServer(tb testing.TB, o Options) (*Fake, string) {
	tb.Helper()
	if err := o.Validate(); err != nil {
		tb.Fatalf("kombotest.NewServer: %v", err)
	}
	f := New(o)
	srv := httptest.NewServer(f)
	tb.Cleanup(srv.Close)
	tb.Cleanup(f.Close) // runs first: releases hanging calls so that srv.Close can return
	return f, srv.URL + "/v1"
}
