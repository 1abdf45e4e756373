// Command fake-kombo serves a fake Kombo API (package kombotest) over HTTP for demos,
// container tests and benchmarks.
package main

import (
	"context"
	"fmt"
	"os"
)

func main() {
	err := run(context.Background(), os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "fake-kombo:", err)
	}
	os.Exit(exitCode(err))
}
