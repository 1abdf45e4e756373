// Package natstest starts real nats-server instances with JetStream, embedded in the test
// process, on loopback only.
//
// Start gives one server. StartCluster gives n nodes (n0, n1, …) in one JetStream cluster,
// each with its own storage directory, its own free client port and route port, and returns
// once the cluster is healthy. A test can rely on:
//
//   - URLs, a comma-separated list of every node's client URL for NATS_URL; a node's URL
//     (and its route port and storage) stay the same across Stop, Crash and Restart.
//   - Stop shuts a node down gracefully: its Raft leaderships are handed to a peer, so a
//     writer through the others stalls for a few hundred milliseconds at most. Crash cuts
//     the node's routes first, so the others elect new leaders after 4–9 s, as after kill -9.
//   - Restart returns once the cluster is healthy again (Healthy): every running node is
//     current with the meta group and passes the server's health check, the meta leader sees
//     every running node online, and every stream and consumer has a leader that sees each of
//     its replicas on a running node current. A restarted node is then caught up and serves.
//   - Isolate cuts one node off from the others while its clients stay connected to it: the
//     routes go through proxies the Cluster owns, and the proxies close and refuse every
//     route connection with that node at either end until Heal. Through the cut-off node,
//     JetStream requests fail (no responders or a timeout); the other two elect leaders after
//     the election timeout. After Heal the routes reconnect within about a second; call
//     WaitHealthy for the cluster to be whole.
//   - Leader and WaitLeader name the node that leads the meta group, a stream, a consumer or
//     a KV bucket (stream KV_<bucket>), in the global account.
//
// Every wait is bounded by ReadyTimeout and polls; every node is shut down when the test
// ends. Timings depend on the load of the machine: tests should bound them loosely.
package natstest
