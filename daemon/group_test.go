package daemon_test

import (
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kombo-ops/integration-deleter/daemon"
	"github.com/kombo-ops/integration-deleter/internal/natstest"
	"github.com/kombo-ops/integration-deleter/internal/testkit"
	"github.com/kombo-ops/integration-deleter/kombo/kombotest"
)

// watchedListener is the daemon's HTTP listener seen from a test: it can be broken, and it
// tells which connections the HTTP server has taken in. http.Server tracks a connection
// before it calls Accept again, so a connection returned by one Accept is tracked once
// the next Accept begins.
type watchedListener struct {
	net.Listener
	mu       sync.Mutex
	returned []string // remote addresses of the connections Accept returned
	tracked  []string // those returned before the last Accept began
}

func (l *watchedListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	l.tracked = slices.Clone(l.returned)
	l.mu.Unlock()
	c, err := l.Listener.Accept()
	if err == nil {
		l.mu.Lock()
		l.returned = append(l.returned, c.RemoteAddr().String())
		l.mu.Unlock()
	}
	return c, err
}

// isTracked reports whether the HTTP server tracks the connection from the local address addr.
func (l *watchedListener) isTracked(addr string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Contains(l.tracked, addr)
}

// watchListen returns a listen function for the daemon and the listener it will make.
func watchListen() (func(network, address string) (net.Listener, error), chan *watchedListener) {
	made := make(chan *watchedListener, 1)
	return func(network, address string) (net.Listener, error) {
		ln, err := net.Listen(network, address)
		if err != nil {
			return nil, err
		}
		wl := &watchedListener{Listener: ln}
		made <- wl
		return wl, nil
	}, made
}

// TestHTTPListenerDies: when the HTTP listener fails, the daemon does not go on without
// /healthz and /metrics; it shuts down and Run names the HTTP server in its error.
func TestHTTPListenerDies(t *testing.T) {
	t.Parallel()
	_, base := kombotest.NewServer(t, kombotest.Options{APIKey: apiKey})
	cfg := testConfig(natstest.Start(t).ClientURL(), base)
	listen, made := watchListen()
	d := start(t, cfg, listen)
	ln := <-made
	d.waitStatus("/readyz", http.StatusOK, 10*time.Second)

	ln.Listener.Close()
	select {
	case err := <-d.done:
		close(d.done)
		if err == nil || !strings.HasPrefix(err.Error(), "daemon: HTTP server: ") {
			t.Errorf("Run() = %v after the HTTP listener died, want an error naming the HTTP server", err)
		}
	case <-time.After(cfg.ShutdownTimeout + 5*time.Second):
		t.Fatal("Run did not return after the HTTP listener died")
	}
	if !strings.Contains(d.logs.String(), `"msg":"consumer stopped"`) {
		t.Error("the consumer was not stopped in order before Run returned")
	}
}

// TestShutdownWithinTimeout: with a Kombo call that never answers and an HTTP client that
// keeps a connection open without finishing its request, the whole shutdown — the call
// given its share of SHUTDOWN_TIMEOUT, then cut and handed back, NATS drained, the HTTP
// server stopped — ends within SHUTDOWN_TIMEOUT, and cleanly.
func TestShutdownWithinTimeout(t *testing.T) {
	t.Parallel()
	// Short: the consumer's last pull, read to its end at shutdown, must fit in its share
	// (a pull waits at most an eighth of the consumer's part).
	const shutdownTimeout = 1500 * time.Millisecond
	const margin = 500 * time.Millisecond // scheduling, and what Run does after the group
	fake, base := kombotest.NewServer(t, kombotest.Options{APIKey: apiKey})
	fake.Script("personio:hangs", kombotest.Answer{Hang: true})
	cfg := testConfig(natstest.Start(t).ClientURL(), base)
	cfg.ShutdownTimeout = shutdownTimeout
	listen, made := watchListen()
	d := start(t, cfg, listen)
	ln := <-made
	js := connect(t, cfg.NATSURL)
	waitBound(t, js)
	d.waitStatus("/readyz", http.StatusOK, 10*time.Second)

	// A connection whose request never completes, as a probe or a scrape cut off.
	conn, err := net.Dial("tcp", d.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("GET /metrics HTTP/1.1\r\n")); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, 10*time.Second, "the HTTP server to take the connection", func() bool {
		return ln.isTracked(conn.LocalAddr().String())
	})
	publish(t, js, `{"integration_id":"personio:hangs","request_id":"hang-1"}`, nil)
	testkit.WaitFor(t, 10*time.Second, "the call in flight", func() bool { return fake.Stats().InFlight == 1 })

	began := time.Now()
	err = d.stop()
	took := time.Since(began)
	if err != nil {
		t.Errorf("Run() = %v, want nil: a call cut at the end of its budget is handed back, not a failure", err)
	}
	if took > shutdownTimeout+margin {
		t.Errorf("the shutdown took %s, want at most SHUTDOWN_TIMEOUT %s (+%s)", took, shutdownTimeout, margin)
	}
	if calls, _, _, _ := daemon.ShutdownBudgets(shutdownTimeout); took < calls {
		t.Errorf("the shutdown took %s: the call in flight was not given its %s", took, calls)
	}
	if r := results(t, js, "hang-1"); len(r) != 0 {
		t.Errorf("the request whose call was cut has results %+v, want none (it is redelivered)", r)
	}
}
