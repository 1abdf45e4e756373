package natstest

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/kombo-ops/integration-deleter/internal/testkit"
)

// ReadyTimeout bounds every wait of a Cluster: start, Restart, WaitHealthy and WaitLeader.
// A JetStream leader election after a node dies takes 4–9 s (the server's election timeout),
// a node cut off from the others notices after about 10 s, and the machine may be loaded.
const ReadyTimeout = 45 * time.Second

// Cluster is a JetStream cluster of nodes embedded in the test process (see the package doc).
type Cluster struct {
	tb  testing.TB
	net *routeNet

	mu    sync.Mutex
	opts  []*server.Options // per node, with the ports it got on its first start
	nodes []*server.Server  // nil while a node is stopped
}

// StartCluster starts n JetStream nodes named n0, n1… in one cluster on loopback, each with
// its own storage directory, and returns once the cluster is healthy (see WaitHealthy). mod may
// change node i's options first. Every node is shut down when tb ends.
func StartCluster(tb testing.TB, n int, mod ...func(i int, o *server.Options)) *Cluster {
	tb.Helper()
	c := &Cluster{tb: tb, net: newRouteNet(tb, n), nodes: make([]*server.Server, n)}
	for i := range n {
		c.opts = append(c.opts, c.nodeOptions(i, n))
		for _, m := range mod {
			m(i, c.opts[i])
		}
	}
	tb.Cleanup(c.shutdown) // after the storage dirs', so it runs before they are removed
	for i := range n {
		if err := c.start(i); err != nil {
			tb.Fatal(err)
		}
	}
	c.WaitHealthy()
	return c
}

func (c *Cluster) nodeOptions(i, n int) *server.Options {
	o := &server.Options{
		ServerName: fmt.Sprintf("n%d", i), Host: "127.0.0.1", Port: -1,
		JetStream: true, StoreDir: c.tb.TempDir(), NoLog: true, NoSigs: true,
		Cluster: server.ClusterOpts{Name: "natstest", Host: "127.0.0.1", Port: -1, Advertise: c.net.addr(i)},
	}
	for j := range n {
		if j != i {
			o.Routes = append(o.Routes, &url.URL{Scheme: "nats-route", Host: c.net.addr(j)})
		}
	}
	return o
}

// start starts node i from its options and, on its first start, keeps the ports it got.
func (c *Cluster) start(i int) error {
	c.mu.Lock()
	o := c.opts[i].Clone()
	c.mu.Unlock()
	s, err := server.NewServer(o)
	if err != nil {
		return fmt.Errorf("node %d: %w", i, err)
	}
	c.net.up(i, s.ID(), "") // known before it dials its peers; reachable once listening
	s.Start()
	if !s.ReadyForConnections(ReadyTimeout) {
		s.Shutdown()
		return fmt.Errorf("node %d did not start listening (ports %d, %d taken?)", i, o.Port, o.Cluster.Port)
	}
	c.net.up(i, s.ID(), s.ClusterAddr().String())
	c.mu.Lock()
	defer c.mu.Unlock()
	c.nodes[i] = s
	c.opts[i].Port = s.Addr().(*net.TCPAddr).Port
	c.opts[i].Cluster.Port = s.ClusterAddr().Port
	return nil
}

func (c *Cluster) shutdown() {
	for i := range c.nodes {
		if c.Node(i) != nil {
			c.Stop(i)
		}
	}
	c.net.close()
}

// N is the number of nodes, running or not.
func (c *Cluster) N() int { return len(c.opts) }

// Node is node i's server, or nil while it is stopped.
func (c *Cluster) Node(i int) *server.Server {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[i]
}

// URL is node i's client URL; it stays the same across Stop and Restart.
func (c *Cluster) URL(i int) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return fmt.Sprintf("nats://127.0.0.1:%d", c.opts[i].Port)
}

// URLs is every node's client URL, comma-separated (a NATS_URL for a client of the cluster).
func (c *Cluster) URLs() string {
	urls := make([]string, c.N())
	for i := range urls {
		urls[i] = c.URL(i)
	}
	return strings.Join(urls, ",")
}

// Stop shuts node i down and waits until it is gone; its storage stays for Restart. The
// cluster is not waited on: its leaders elsewhere are elected in the seconds that follow.
func (c *Cluster) Stop(i int) {
	c.mu.Lock()
	s := c.nodes[i]
	c.nodes[i] = nil
	c.mu.Unlock()
	if s == nil {
		c.tb.Fatalf("natstest: node %d is not running", i)
	}
	c.net.down(i)
	s.Shutdown()
	s.WaitForShutdown()
}

// Crash stops node i the way a kill -9 or a power cut would look to its peers: its routes are
// cut first, so it hands no leadership over, and the other nodes elect new leaders only after
// the election timeout (4–9 s). Its clients see their connection close. Its storage is
// flushed on the way down (an in-process server cannot lose unsynced writes).
func (c *Cluster) Crash(i int) {
	c.Isolate(i)
	c.Stop(i)
	c.Heal(i)
}

// Restart starts stopped node i again on its client and route ports, with its storage, and
// returns once the cluster is healthy again (see WaitHealthy): node i is back in the meta
// group and current, and every stream and consumer it holds a replica of has caught up.
func (c *Cluster) Restart(i int) {
	c.tb.Helper()
	if c.Node(i) != nil {
		c.tb.Fatalf("natstest: node %d is running", i)
	}
	if err := c.start(i); err != nil {
		c.tb.Fatal(err)
	}
	c.WaitHealthy()
}

// Isolate cuts node i off from the other nodes: its route connections close and new ones are
// refused until Heal. Its clients stay connected to it.
func (c *Cluster) Isolate(i int) { c.net.setIsolated(i, true) }

// Isolated reports whether node i is cut off by Isolate.
func (c *Cluster) Isolated(i int) bool { return c.net.isIsolated(i) }

// Heal lets node i's routes connect again (the servers redial every second or so). It does
// not wait: call WaitHealthy for the cluster to be whole.
func (c *Cluster) Heal(i int) { c.net.setIsolated(i, false) }

// WaitHealthy waits up to ReadyTimeout until Healthy holds, and fails the test otherwise.
func (c *Cluster) WaitHealthy() {
	c.tb.Helper()
	err := testkit.Poll(context.Background(), 20*time.Millisecond, ReadyTimeout, func() (bool, string, error) {
		err := c.Healthy()
		if err != nil {
			return false, err.Error(), nil
		}
		return true, "", nil
	})
	if err != nil {
		c.tb.Fatalf("natstest: cluster not healthy: %v", err)
	}
}
