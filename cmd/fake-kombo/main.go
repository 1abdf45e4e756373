// Command fake-kombo serves a fake Kombo API (package kombotest) over HTTP for demos,
// container tests and benchmarks.
package main

import (
	"context"
	"os"

	"github.com/kombo-ops/integration-deleter/internal/cli"
)

func main() {
	cli.Exit("fake-kombo", run(context.Background(), os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}
