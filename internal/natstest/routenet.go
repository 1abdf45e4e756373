package natstest

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// routeNet carries the route connections of a Cluster. Every node advertises, and is reached
// by its peers at, a proxy listener the routeNet owns; the proxy forwards to the node's real
// route port. A route connection is opened by the soliciting node, whose first line is
// "CONNECT {..."name":"<server id>"...}", so the proxy learns both ends of every link: the
// node behind the listener and the node that dialled it. Isolating a node closes every link
// with it at either end and refuses new ones until Heal, while its client port stays open.
type routeNet struct {
	lns []net.Listener
	wg  sync.WaitGroup

	mu       sync.Mutex
	backends []string       // real route address of node i, "" while it is down
	ids      map[string]int // server ID of a running node -> its index
	isolated []bool
	links    map[*link]struct{}
}

// link is one proxied route connection from node from (-1 until its CONNECT is read) to to.
type link struct {
	from, to int
	in, out  net.Conn
}

func newRouteNet(tb testing.TB, n int) *routeNet {
	tb.Helper()
	r := &routeNet{backends: make([]string, n), ids: map[string]int{}, isolated: make([]bool, n), links: map[*link]struct{}{}}
	for i := range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			r.close()
			tb.Fatal(err)
		}
		r.lns = append(r.lns, ln)
		r.wg.Go(func() { r.serve(i, ln) })
	}
	return r
}

// addr is where the peers of node i reach it (its advertised route address).
func (r *routeNet) addr(i int) string { return r.lns[i].Addr().String() }

// up records that node i, with server ID id, listens for routes at backend.
func (r *routeNet) up(i int, id, backend string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for k, v := range r.ids {
		if v == i {
			delete(r.ids, k)
		}
	}
	r.ids[id], r.backends[i] = i, backend
}

// down forgets node i's route address; its links close as the node shuts down.
func (r *routeNet) down(i int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.backends[i] = ""
}

// setIsolated cuts (or, with false, allows again) every route link of node i.
func (r *routeNet) setIsolated(i int, cut bool) {
	r.mu.Lock()
	r.isolated[i] = cut
	var doomed []*link
	for l := range r.links {
		if cut && (l.from == i || l.to == i) {
			doomed = append(doomed, l)
		}
	}
	r.mu.Unlock()
	for _, l := range doomed {
		l.close()
	}
}

func (r *routeNet) close() {
	for _, ln := range r.lns {
		_ = ln.Close()
	}
	r.mu.Lock()
	for l := range r.links {
		l.close()
	}
	r.mu.Unlock()
	r.wg.Wait()
}

func (r *routeNet) serve(to int, ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		r.wg.Go(func() { r.handle(to, c) })
	}
}

// handle forwards one route connection to node to, unless either end is isolated.
func (r *routeNet) handle(to int, in net.Conn) {
	l := &link{from: -1, to: to, in: in}
	defer l.close()
	if !r.open(l) {
		return
	}
	defer r.forget(l)
	r.wg.Go(func() {
		_, _ = io.Copy(in, l.out)
		l.close()
	})
	br := bufio.NewReader(in)
	_ = in.SetReadDeadline(time.Now().Add(10 * time.Second))
	first, err := br.ReadString('\n')
	_ = in.SetReadDeadline(time.Time{})
	if err != nil || !r.identify(l, first) {
		return
	}
	if _, err := io.WriteString(l.out, first); err != nil {
		return
	}
	_, _ = io.Copy(l.out, br)
}

// open dials node l.to and registers l, or reports false when l.to is isolated or down.
func (r *routeNet) open(l *link) bool {
	r.mu.Lock()
	backend, cut := r.backends[l.to], r.isolated[l.to]
	r.mu.Unlock()
	if cut || backend == "" {
		return false
	}
	out, err := net.DialTimeout("tcp", backend, time.Second)
	if err != nil {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	l.out = out
	if r.isolated[l.to] {
		return false
	}
	r.links[l] = struct{}{}
	return true
}

// identify names the dialling node from its CONNECT line and reports whether the link may
// stay up. A first line that is not a route CONNECT leaves the dialler unknown.
func (r *routeNet) identify(l *link, first string) bool {
	var ci struct {
		Name string `json:"name"`
	}
	if rest, ok := strings.CutPrefix(first, "CONNECT "); ok {
		_ = json.Unmarshal([]byte(strings.TrimSpace(rest)), &ci)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if from, ok := r.ids[ci.Name]; ok {
		l.from = from
		return !r.isolated[from] && !r.isolated[l.to]
	}
	return !r.isolated[l.to]
}

func (r *routeNet) forget(l *link) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.links, l)
}

func (l *link) close() {
	_ = l.in.Close()
	if l.out != nil {
		_ = l.out.Close()
	}
}

func (r *routeNet) isIsolated(i int) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.isolated[i]
}
