package faults

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/kombo-ops/integration-deleter/internal/natstest"
	"github.com/kombo-ops/integration-deleter/internal/testkit"
)

// The cluster cases (issue 13): a 3-node JetStream cluster with the stream, the consumer and
// the ledger at R3, three daemon replicas given every node's URL, 7500 requests with Kombo at
// 10–20 ms a call, and a fault once 30% of the results are stored. Each case checks that
// nothing is lost, every request id has one stored result, no DELETE starts for a request
// id after its outcome was recorded in the ledger (a stale ledger read after a leader change
// must end in a refused compare-and-set write, never a second DELETE), and measures the
// longest stall between two stored results and the time each replica's /readyz was not 200.
// They run with CLUSTER=1 FAULTS=1 (make test-cluster).

// clusterRequests keeps the load going some 3 s after the fault (about 1500 results/s), past
// ACK_WAIT (2 s): a delivery lost with a node comes back after ACK_WAIT while the others are
// still being stored, so that the longest stall measures the service, not the load's tail.
const clusterRequests = 7500

// stopLeader stops the node that leads kind (a graceful shutdown: it hands its leaderships
// over) and starts it again once every request has its result.
func stopLeader(g group) func(cw *clusterWorld) (string, func() string) {
	return func(cw *clusterWorld) (string, func() string) {
		i := cw.c.WaitLeader(g.kind, g.name, g.consumer)
		began := time.Now()
		cw.c.Stop(i)
		stopped := time.Since(began)
		return fmt.Sprintf("stopped n%d (%s leader) in %.2fs", i, g, stopped.Seconds()), restartAtEnd(cw, i)
	}
}

// restartAtEnd starts node i again and says how long the cluster took to be whole.
func restartAtEnd(cw *clusterWorld, i int) func() string {
	return func() string {
		began := time.Now()
		cw.c.Restart(i)
		return fmt.Sprintf("n%d restarted after the load, cluster healthy after %.1fs; leaders then %s",
			i, time.Since(began).Seconds(), cw.leaders())
	}
}

func TestClusterStreamLeaderStopped(t *testing.T) {
	runClusterCase(t, clusterCase{name: "K1 cluster: stream leader stopped", n: clusterRequests,
		alone: &streamGroup, fault: stopLeader(streamGroup)})
}

func TestClusterConsumerLeaderStopped(t *testing.T) {
	runClusterCase(t, clusterCase{name: "K2 cluster: consumer leader stopped", n: clusterRequests,
		alone: &consumerGroup, fault: stopLeader(consumerGroup)})
}

func TestClusterLedgerLeaderStopped(t *testing.T) {
	runClusterCase(t, clusterCase{name: "K3 cluster: ledger (KV) leader stopped", n: clusterRequests,
		alone: &ledgerGroup, fault: stopLeader(ledgerGroup)})
}

// A rolling restart: each node is stopped and started again, and the next one only once the
// cluster is healthy again, while the load goes on (more requests than the other cases, so
// that the load outlasts the three restarts: about 1500 results/s).
func TestClusterRollingRestart(t *testing.T) {
	const n = 18000
	runClusterCase(t, clusterCase{name: "K4 cluster: rolling restart of the 3 nodes", n: n,
		fault: func(cw *clusterWorld) (string, func() string) {
			var steps []string
			for i := range cw.c.N() {
				at := resultCount(cw.js)
				began := time.Now()
				cw.c.Stop(i)
				cw.c.Restart(i)
				steps = append(steps, fmt.Sprintf("n%d stopped at %d of %d results, back and healthy after %.1fs",
					i, at, n, time.Since(began).Seconds()))
			}
			return strings.Join(steps, ", "), nil
		}})
}

// One node, the stream's leader, is cut off from the other two while its clients stay
// connected to it; healed after 10 s. The other two elect a new leader after the election
// timeout; a daemon connected to the cut-off node gets no JetStream answer until the heal.
// The load is not waited on for the cluster to be whole again: how long that took is
// reported once every request has its result.
func TestClusterNodeIsolated(t *testing.T) {
	runClusterCase(t, clusterCase{name: "K5 cluster: stream leader's node isolated 10 s, then healed", n: clusterRequests,
		alone: &streamGroup, election: true,
		fault: func(cw *clusterWorld) (string, func() string) {
			began := time.Now()
			i, elected := cw.streamLeaderLost(cw.c.Isolate)
			time.Sleep(time.Until(began.Add(10 * time.Second))) // the cut itself
			cw.c.Heal(i)
			healed := time.Now()
			return fmt.Sprintf("isolated n%d (stream leader), a new stream leader after %.1fs, healed after 10s", i, elected.Seconds()),
				func() string { return cw.healthyAfter(healed, 60*time.Second) }
		}})
}

// The stream leader's node dies as after kill -9: no leadership is handed over, the other
// two elect after the election timeout.
func TestClusterStreamLeaderCrashed(t *testing.T) {
	runClusterCase(t, clusterCase{name: "K6 cluster: stream leader crashed (kill -9)", n: clusterRequests,
		alone: &streamGroup, election: true,
		fault: func(cw *clusterWorld) (string, func() string) {
			i, elected := cw.streamLeaderLost(cw.c.Crash)
			return fmt.Sprintf("crashed n%d (stream leader), a new stream leader after %.1fs", i, elected.Seconds()),
				restartAtEnd(cw, i)
		}})
}

// streamLeaderLost applies fault to the node that leads the stream and waits for another to
// lead it; it returns the node and how long the election took.
func (cw *clusterWorld) streamLeaderLost(fault func(i int)) (int, time.Duration) {
	i := cw.c.WaitLeader(natstest.Stream, testkit.StreamName, "")
	fault(i)
	began := time.Now()
	cw.c.WaitLeader(natstest.Stream, testkit.StreamName, "")
	return i, time.Since(began)
}
