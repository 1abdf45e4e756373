package natstest

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/kombo-ops/integration-deleter/internal/testkit"
)

// Kind is what a Raft group leads: the meta group, a stream, a consumer or a KV bucket.
type Kind int

const (
	Meta     Kind = iota // the JetStream meta group (the cluster's API and placement)
	Stream               // a stream, by name
	Consumer             // a consumer, by stream and consumer name
	KV                   // a KV bucket, by bucket name: its stream KV_<bucket>
)

func (k Kind) String() string {
	return [...]string{"meta", "stream", "consumer", "kv"}[k]
}

// account is the account of a server without accounts configured.
const account = "$G"

// Leader is the index of the running node that leads the group, or -1 when none does (an
// election is under way). A node cut off by Isolate may still believe it leads for ~10 s; the
// leader the others follow is preferred.
func (c *Cluster) Leader(k Kind, name, consumer string) int {
	found := -1
	for i := range c.N() {
		s := c.Node(i)
		if s == nil {
			continue
		}
		var leads bool
		switch k {
		case Meta:
			leads = s.JetStreamIsLeader()
		case Stream:
			leads = s.JetStreamIsStreamLeader(account, name)
		case KV:
			leads = s.JetStreamIsStreamLeader(account, "KV_"+name)
		case Consumer:
			leads = s.JetStreamIsConsumerLeader(account, name, consumer)
		}
		if leads && !c.net.isIsolated(i) {
			return i
		}
		if leads && found < 0 {
			found = i
		}
	}
	return found
}

// WaitLeader waits up to ReadyTimeout for a node the others follow to lead the group and
// returns its index, or fails the test.
func (c *Cluster) WaitLeader(k Kind, name, consumer string) int {
	c.tb.Helper()
	leader := -1
	err := testkit.Poll(context.Background(), 20*time.Millisecond, ReadyTimeout, func() (bool, string, error) {
		leader = c.Leader(k, name, consumer)
		return leader >= 0 && !c.net.isIsolated(leader), "", nil
	})
	if err != nil {
		c.tb.Fatalf("natstest: no %s leader for %q %q: %v", k, name, consumer, err)
	}
	return leader
}

// Healthy reports why the cluster is not healthy, or nil when it is: every running node has
// JetStream enabled, is current with the meta group and passes the server's own health check
// (each stream and consumer it holds is current), and the meta leader sees every running node
// online. Stopped nodes are left out; a node cut off by Isolate makes it fail.
func (c *Cluster) Healthy() error {
	running := 0
	for i := range c.N() {
		s := c.Node(i)
		if s == nil {
			continue
		}
		running++
		switch {
		case !s.JetStreamEnabled():
			return fmt.Errorf("n%d: JetStream not enabled", i)
		case !s.JetStreamIsCurrent():
			return fmt.Errorf("n%d: not current with the meta group", i)
		}
		if h := s.Healthz(nil); h.Status != "ok" {
			return fmt.Errorf("n%d: %s %s", i, h.Status, h.Error)
		}
	}
	if running == 0 {
		return errors.New("no node is running")
	}
	m := c.Leader(Meta, "", "")
	if m < 0 {
		return errors.New("no meta leader")
	}
	if s := c.Node(m); s == nil || len(s.JetStreamClusterPeers()) != running {
		return fmt.Errorf("meta leader n%d does not see all %d running nodes online", m, running)
	}
	return c.caughtUp()
}

// caughtUp reports a stream or consumer without a leader, or one whose leader sees one of
// its replicas on a running node not current (offline, or behind it).
func (c *Cluster) caughtUp() error {
	groups, led := map[string]bool{}, map[string]bool{}
	for i := range c.N() {
		s := c.Node(i)
		if s == nil {
			continue
		}
		ad, err := s.JszAccount(&server.JSzOptions{Account: account, Streams: true, Consumer: true})
		if err != nil {
			continue // no stream in the account yet
		}
		for _, sd := range ad.Streams {
			if err := c.checkGroup(s.Name(), "stream "+sd.Name, sd.Cluster, groups, led); err != nil {
				return err
			}
			for _, ci := range sd.Consumer {
				if err := c.checkGroup(s.Name(), "consumer "+sd.Name+" > "+ci.Name, ci.Cluster, groups, led); err != nil {
					return err
				}
			}
		}
	}
	for g := range groups {
		if !led[g] {
			return fmt.Errorf("%s has no leader", g)
		}
	}
	return nil
}

// checkGroup notes group as seen on node self and, when self leads it, checks its replicas.
func (c *Cluster) checkGroup(self, group string, ci *server.ClusterInfo, groups, led map[string]bool) error {
	if ci == nil {
		return nil // R1 outside a cluster
	}
	groups[group] = true
	if ci.Leader != self {
		return nil
	}
	led[group] = true
	for _, p := range ci.Replicas {
		if c.running(p.Name) && (!p.Current || p.Offline) {
			return fmt.Errorf("%s: leader %s sees replica %s behind by %d (offline %v)", group, self, p.Name, p.Lag, p.Offline)
		}
	}
	return nil
}

// running reports whether the node named name is running.
func (c *Cluster) running(name string) bool {
	for i := range c.N() {
		if s := c.Node(i); s != nil && s.Name() == name {
			return true
		}
	}
	return false
}
