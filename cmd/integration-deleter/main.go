// Command integration-deleter deletes Kombo integrations on request from NATS JetStream.
package main

import (
	"context"
	"os"

	"github.com/kombo-ops/integration-deleter/internal/cli"
)

func main() {
	cli.Exit("integration-deleter", run(context.Background(), os.Args[1:], os.LookupEnv, os.Stdout, os.Stderr))
}
