// Command server is a gRPC server (the whoami service) that publishes its
// address in slotreg through the Go client, so clients dialling
// slotreg:///<service> find it. On an interrupt it unregisters first,
// then stops serving once the calls in flight are done.
//
//	go run ./examples/grpc/server --sessions 127.0.0.1:9600 --service whoami --name alpha
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"

	"github.com/slotreg/slotreg/client"
	"github.com/slotreg/slotreg/examples/grpc/whoami"
)

func main() {
	sessions := flag.String("sessions", "127.0.0.1:9600", "session addresses, comma-separated, in order of preference")
	service := flag.String("service", "whoami", "dataInfoId to publish under")
	listen := flag.String("listen", "127.0.0.1:0", "address the gRPC server listens on")
	advertise := flag.String("advertise", "", "address clients dial (default: the listener's address)")
	name := flag.String("name", "", "the server's name, answered to every call and used as its registerId (default: host-pid)")
	zone := flag.String("zone", "", "a zone attribute to publish with the address, if any")
	flag.Parse()
	if *name == "" {
		host, _ := os.Hostname()
		*name = fmt.Sprintf("%s-%d", host, os.Getpid())
	}
	if err := run(strings.Split(*sessions, ","), *service, *listen, *advertise, *name, *zone); err != nil {
		fmt.Fprintln(os.Stderr, "server:", err)
		os.Exit(1)
	}
}

func run(sessions []string, service, listen, advertise, name, zone string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	if advertise == "" {
		advertise = ln.Addr().String()
	}
	s := grpc.NewServer()
	whoami.Register(s, name)
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()

	c, err := client.New(client.Options{Sessions: sessions, ClientName: "grpc-server-" + name})
	if err != nil {
		s.Stop()
		return err
	}
	// The JSON form carries attributes next to the address; a bare
	// "host:port" would do when there are none.
	attrs := map[string]string{"name": name}
	if zone != "" {
		attrs["zone"] = zone
	}
	data, err := json.Marshal(map[string]any{"addr": advertise, "attributes": attrs})
	if err != nil {
		c.Close()
		s.Stop()
		return err
	}
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	_, err = c.Register(rctx, service, name, string(data))
	cancel()
	if err != nil {
		c.Close()
		s.Stop()
		return err
	}
	fmt.Printf("%s serves %s on %s, published as %s/%s via %s\n", name, whoami.ServiceName, advertise, service, name, c.Status().Session)

	select {
	case <-ctx.Done():
	case err := <-served:
		c.Close()
		return err
	}
	// Unregister first, so clients stop picking this server, then let
	// the calls in flight finish.
	fmt.Println("unregistering, then stopping")
	c.Close()
	s.GracefulStop()
	if err := <-served; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return err
	}
	return nil
}
