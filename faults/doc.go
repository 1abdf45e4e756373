// Package faults is the fault suite of integration-deleter: process-level tests that run the
// real daemon binary against a real NATS server and the fake Kombo, inject faults (kill -9,
// NATS restarts, a deleted consumer, failing and hanging Kombo calls, a rejected key, two
// replicas, a handler panic, MaxDeliver, SIGTERM) and count what ends where. It also holds
// the end-to-end bad-input and security tests, and the proofs of the operator's controls
// (TestControls…: pause, the fuse, protect, expect, dry run, and the commands that look back
// and retry), which run the commands as the binary beside several daemon replicas.
//
// The tests only run with FAULTS=1 (make test-faults); each case appends one line of figures
// to the file named by FAULTS_REPORT. FAULTS_BIN names a binary built with -tags faultinject
// to run instead of building one from the working tree.
package faults
