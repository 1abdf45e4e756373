// Command integration-deleter deletes Kombo integrations on request from NATS JetStream.
package main

import (
	"context"
	"fmt"
	"os"
)

func main() {
	err := run(context.Background(), os.Args[1:], os.LookupEnv, os.Stdout, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "integration-deleter:", err)
	}
	os.Exit(exitCode(err))
}
