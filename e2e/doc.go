// Package e2e is the container suite: it runs the real images (nats-js, fake-kombo and
// integration-deleter, built by `make images`) with testcontainers-go, host networking and
// loopback ports, and checks the product from outside: events on subjects, calls the fake
// received, HTTP answers and exit codes. Run it with `make test-containers`.
package e2e
