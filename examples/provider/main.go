// Command provider publishes one instance of a service through the slotreg
// Go client and keeps it published, across session failovers, until it is
// interrupted; then it unregisters and exits.
//
//	go run ./examples/provider --sessions 127.0.0.1:19061,127.0.0.1:19062 --service svc --id host1 --addr 10.0.0.1:80
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
	service := flag.String("service", "svc", "dataInfoId to publish under")
	id := flag.String("id", "", "registerId (default: the host name)")
	addr := flag.String("addr", "10.0.0.1:80", "the data to publish: this instance's address")
	flag.Parse()
	if *id == "" {
		*id, _ = os.Hostname()
	}
	if err := run(strings.Split(*sessions, ","), *service, *id, *addr); err != nil {
		fmt.Fprintln(os.Stderr, "provider:", err)
		os.Exit(1)
	}
}

func run(sessions []string, service, id, addr string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	c, err := client.New(client.Options{Sessions: sessions, ClientName: "provider-" + id})
	if err != nil {
		return err
	}
	// Close unregisters the publisher and waits for the client's goroutines.
	defer c.Close()

	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	reg, err := c.Register(rctx, service, id, addr)
	cancel()
	if err != nil {
		return err
	}
	fmt.Printf("registered %s/%s = %s at version %d via %s\n", service, id, addr, reg.Version(), c.Status().Session)

	// The client re-registers by itself after a failover; report them.
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	last := c.Status()
	for {
		select {
		case <-ctx.Done():
			fmt.Println("unregistering")
			return nil
		case <-tick.C:
		}
		if st := c.Status(); st.Failovers != last.Failovers || st.Session != last.Session {
			fmt.Printf("session now %q (ready %v, failovers %d, last error: %v)\n", st.Session, st.Ready, st.Failovers, st.LastError)
			last = st
		}
	}
}
