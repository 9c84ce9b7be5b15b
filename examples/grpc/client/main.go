// Command client dials slotreg:///<service> through the slotreg gRPC
// resolver and calls the whoami service in a loop, printing which server
// answered: round robin over every published server, following them as
// they come and go.
//
//	go run ./examples/grpc/client --sessions 127.0.0.1:9600 --service whoami
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

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/peer"

	"github.com/slotreg/slotreg/client"
	"github.com/slotreg/slotreg/examples/grpc/whoami"
	"github.com/slotreg/slotreg/grpcresolver"
)

func main() {
	sessions := flag.String("sessions", "127.0.0.1:9600", "session addresses, comma-separated, in order of preference")
	service := flag.String("service", "whoami", "dataInfoId of the servers")
	every := flag.Duration("every", 500*time.Millisecond, "time between calls")
	flag.Parse()
	if err := run(strings.Split(*sessions, ","), *service, *every); err != nil {
		fmt.Fprintln(os.Stderr, "client:", err)
		os.Exit(1)
	}
}

func run(sessions []string, service string, every time.Duration) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	// One builder, one slotreg client: every slotreg:/// target this
	// process dials shares its session connection.
	b, err := grpcresolver.NewBuilder(grpcresolver.Options{
		Client: client.Options{Sessions: sessions, ClientName: "grpc-client"},
	})
	if err != nil {
		return err
	}
	defer b.Close()
	conn, err := grpc.NewClient("slotreg:///"+service, grpc.WithResolvers(b),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()

	host, _ := os.Hostname()
	caller := fmt.Sprintf("%s-%d", host, os.Getpid())
	tick := time.NewTicker(every)
	defer tick.Stop()
	for i := 1; ; i++ {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		var p peer.Peer
		name, err := whoami.Who(cctx, conn, caller, grpc.Peer(&p))
		cancel()
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			fmt.Printf("call %d: %v\n", i, err)
		default:
			fmt.Printf("call %d: answered by %s at %s\n", i, name, p.Addr)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}
