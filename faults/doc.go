// Package faults is the fault suite of integration-deleter: process-level tests that run the
// real daemon binary against a real NATS server and the fake Kombo, inject faults (kill -9,
// NATS restarts, a deleted consumer, failing and hanging Kombo calls, a rejected key, two
// replicas, a handler panic, MaxDeliver, SIGTERM) and count what ends where. It also holds
// the end-to-end bad-input and security tests, and the proofs of the operator's controls
// (TestControls…: pause, the fuse, protect, expect, dry run, and the commands that look back
// and retry), which run the commands as the binary beside several daemon replicas.
//
// The cluster cases (TestCluster…, issue 13) run the same checks on a 3-node JetStream cluster
// (internal/natstest) with three daemon replicas under load while a leader stops, crashes or
// is cut off, or the nodes restart one by one; they also measure the longest stall between
// two stored results and the time each replica's /readyz was not 200. They need CLUSTER=1 as
// well (make test-cluster), so make test-faults leaves them out.
//
// The tests only run with FAULTS=1 (make test-faults); each case appends one line of figures
// to the file named by FAULTS_REPORT. FAULTS_BIN names a binary built with -tags faultinject
// to run instead of building one from the working tree.
package faults
