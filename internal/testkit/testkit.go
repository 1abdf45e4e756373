// Package testkit holds the helpers that the tests and tools around the daemon share (bench,
// faults, e2e, cmd/demo, the daemon's and the commands' tests): a free loopback port, waiting
// for an HTTP endpoint, polling for a condition, reading /metrics, a NATS connection with
// JetStream, a buffer that one goroutine writes while another reads, and the result event
// as the contract writes it.
//
// It does not import testing, so that binaries (bench, cmd/demo) can use it without linking
// the testing package; the helpers that fail a test take a TB, which *testing.T, *testing.B
// and *testing.F satisfy. The embedded NATS server for tests is internal/natstest.
package testkit

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"
)

// TB is the part of testing.TB that the helpers use.
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
	Cleanup(func())
}

// FreeAddr returns a 127.0.0.1 address whose port was free a moment ago, for a process or
// container that must be told where to listen.
func FreeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// FreePort is FreeAddr's port, failing tb when no port can be had.
func FreePort(tb TB) int {
	tb.Helper()
	addr, err := FreeAddr()
	if err != nil {
		tb.Fatalf("free port: %v", err)
	}
	_, port, _ := net.SplitHostPort(addr)
	p, _ := strconv.Atoi(port)
	return p
}

var httpClient = &http.Client{Timeout: 2 * time.Second}

// Get GETs url (giving up after 2 s) and returns the status and body; status 0, with the
// error's text as the body, when nothing answered.
func Get(ctx context.Context, url string) (int, string) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err.Error()
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
	if err != nil {
		return 0, err.Error()
	}
	return resp.StatusCode, string(b)
}

// WaitReady polls url (e.g. http://127.0.0.1:PORT/readyz) until it answers 200. It returns
// an error when timeout passes or ctx ends first, or as soon as gone (which may be nil)
// returns one: a process that has exited will never be ready.
func WaitReady(ctx context.Context, url string, timeout time.Duration, gone func() error) error {
	return Poll(ctx, 20*time.Millisecond, timeout, func() (bool, string, error) {
		if gone != nil {
			if err := gone(); err != nil {
				return false, "", err
			}
		}
		code, body := Get(ctx, url)
		return code == http.StatusOK, fmt.Sprintf("GET %s: %d %.200q", url, code, body), nil
	})
}
