# integration-deleter — the doors a newcomer uses. `make` alone prints this list.
SHELL := /bin/bash
# The Go toolchain is go.mod's toolchain line (go1.27.3): the machine's Go 1.26.8 has standard-
# library vulnerabilities that this daemon calls (net/http, crypto/tls, crypto/x509; see
# `make vulncheck`). The go command fetches that toolchain from the module proxy once (~76 MB).
export GOTOOLCHAIN := $(shell sed -n 's/^toolchain //p' go.mod)
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)
UNIT_PKGS = $$(go list ./... | grep -v /e2e)

.DEFAULT_GOAL := help
.PHONY: help build test lint demo images test-containers test-faults test-cluster fuzz vulncheck bench

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  make %-16s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

build: ## build both binaries into bin/
	CGO_ENABLED=0 go build -trimpath -ldflags "$(LDFLAGS)" -o bin/ ./cmd/integration-deleter ./cmd/fake-kombo

test: ## unit and integration tests (embedded NATS, fake Kombo over HTTP), race detector on
	go vet ./...
	go test -race -count=1 $(UNIT_PKGS)

lint: ## go vet, gofmt and staticcheck (pinned in go.mod's tool block)
	go vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	go tool staticcheck ./...

demo: ## run the daemon on embedded NATS against the fake Kombo, print the outcomes (no Docker, no key)
	go run ./cmd/demo

images: ## build the daemon, fake-kombo and NATS images locally (no registry)
	./scripts/images.sh

test-containers: images ## the container suite (testcontainers, real images, host networking)
	./scripts/test-containers.sh

test-cluster: ## the 3-node JetStream cluster: its own tests, then the fault cases under load with 3 daemon replicas (prints a figures table; about 2 minutes)
	CLUSTER=1 go test -count=1 -timeout 10m -run TestCluster ./internal/natstest/
	rm -f faults-report.md
	CLUSTER=1 FAULTS=1 FAULTS_REPORT=$(CURDIR)/faults-report.md go test -count=1 -timeout 20m -v -run TestCluster ./faults/; \
		status=$$?; cat faults-report.md; exit $$status

test-faults: ## the fault suite: real binaries under kill -9, NATS restarts, Kombo failures… (prints a figures table)
	rm -f faults-report.md
	FAULTS=1 FAULTS_REPORT=$(CURDIR)/faults-report.md go test -count=1 -timeout 15m -v -run . ./faults/
	@cat faults-report.md

FUZZTIME ?= 20s
fuzz: ## run each fuzz target for FUZZTIME (default 20s)
	go test -run '^$$' -fuzz '^FuzzDecodeRequest$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 5s ./consumer/
	go test -run '^$$' -fuzz '^FuzzPlainFields$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 5s ./consumer/
	go test -run '^$$' -fuzz '^FuzzResponse$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 5s ./kombo/

vulncheck: ## govulncheck ./... (pinned tool) against the pinned golang.org/x/vulndb module (no vuln.go.dev needed)
	./scripts/govulncheck.sh

bench: ## the benchmark harness: the real daemon vs a plain baseline, eleven scenarios (about 30 minutes); writes BENCHMARKS.md and docs/bench-*.png
	go run ./bench
