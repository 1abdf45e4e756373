# integration-deleter — the doors a newcomer uses. `make` alone prints this list.
SHELL := /bin/bash
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)
UNIT_PKGS = $$(go list ./... | grep -v /e2e)

.DEFAULT_GOAL := help
.PHONY: help build test lint demo images test-containers bench vet

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
