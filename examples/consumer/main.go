// Command consumer subscribes to a service through the slotreg Go client
// and prints every new state it is pushed, until it is interrupted.
//
//	go run ./examples/consumer --sessions 127.0.0.1:19062,127.0.0.1:19061 --service svc
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/slotreg/slotreg/client"
)

func main() {
	sessions := flag.String("sessions", "127.0.0.1:9600", "session addresses, comma-separated, in order of preference")
	service := flag.String("service", "svc", "dataInfoId to watch")
	flag.Parse()
	if err := run(strings.Split(*sessions, ","), *service); err != nil {
		fmt.Fprintln(os.Stderr, "consumer:", err)
		os.Exit(1)
	}
}

func run(sessions []string, service string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	c, err := client.New(client.Options{Sessions: sessions, ClientName: "consumer"})
	if err != nil {
		return err
	}
	defer c.Close()

	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	// Calls are serial and never go back in version, also across a
	// failover of the consumer's own session.
	if _, err := c.Subscribe(sctx, service, func(s client.Snapshot) {
		fmt.Printf("%s version %d:", s.DataInfoID, s.Version)
		for _, p := range s.Publishers {
			fmt.Printf(" %s=%s", p.RegisterID, p.Data)
		}
		fmt.Println()
	}); err != nil {
		return err
	}
	// A one-off read; with no session reachable it comes from the cache,
	// marked stale.
	if s, err := c.Lookup(sctx, service); err == nil {
		fmt.Printf("lookup: version %d, %d publishers, stale %v\n", s.Version, len(s.Publishers), s.Stale)
	}
	<-ctx.Done()
	return nil
}
