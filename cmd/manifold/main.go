// Command manifold is the Manifold portal: `manifold serve` runs it, `manifold version` says which it is.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout); err != nil {
		if code := exitCode(err); code == 0 {
			return // -h on a client command
		} else {
			fmt.Fprintln(os.Stderr, "manifold:", err)
			stop()
			os.Exit(code)
		}
	}
}
