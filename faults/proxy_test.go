package faults

import (
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
)

// resetProxy forwards TCP connections to a backend and resets some of them in the middle of
// a response: each connection gets a budget of response bytes drawn at random, and when the
// budget runs out inside a response the proxy forwards only part of it and closes the
// client's side with SO_LINGER 0 (a TCP RST). HTTP keep-alive puts several calls on one
// connection, so roughly one response in budget/response-size is cut.
type resetProxy struct {
	ln      net.Listener
	backend string
	minB    int
	maxB    int

	mu  sync.Mutex
	rng *rand.Rand

	resets atomic.Int64 // connections reset mid-response
	conns  atomic.Int64
	wg     sync.WaitGroup
}

// startResetProxy proxies to the host of backendURL; it returns the proxy and backendURL with
// the proxy's host. Budgets are uniform in [minBytes, maxBytes].
func startResetProxy(t *testing.T, backendURL string, r *rand.Rand, minBytes, maxBytes int) (*resetProxy, string) {
	t.Helper()
	u, err := url.Parse(backendURL)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &resetProxy{ln: ln, backend: u.Host, minB: minBytes, maxB: maxBytes, rng: r}
	p.wg.Go(p.serve)
	t.Cleanup(func() {
		_ = ln.Close()
		p.wg.Wait()
	})
	u.Host = ln.Addr().String()
	return p, u.String()
}

func (p *resetProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.conns.Add(1)
		p.mu.Lock()
		budget := p.minB + p.rng.IntN(p.maxB-p.minB+1)
		p.mu.Unlock()
		p.wg.Go(func() { p.handle(c.(*net.TCPConn), budget) })
	}
}

func (p *resetProxy) handle(client *net.TCPConn, budget int) {
	defer client.Close()
	backend, err := net.Dial("tcp", p.backend)
	if err != nil {
		_ = client.SetLinger(0)
		return
	}
	defer backend.Close()
	go func() {
		// Requests go through untouched; when the client is done, so is the backend.
		_, _ = io.Copy(backend, client)
		_ = backend.(*net.TCPConn).CloseWrite()
	}()
	buf := make([]byte, 32<<10)
	for {
		n, err := backend.Read(buf)
		if n > 0 {
			if n >= budget {
				// Cut this response: part of it, then a reset.
				_, _ = client.Write(buf[:max(1, budget/2)])
				_ = client.SetLinger(0)
				p.resets.Add(1)
				return
			}
			budget -= n
			if _, werr := client.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				_ = client.SetLinger(0)
			}
			return
		}
	}
}
