// Package grpcresolver is a grpc-go name resolver fed by slotreg: a
// target slotreg:///<dataInfoId> resolves to the live publishers of that
// dataInfoId, and follows every change the registry pushes.
//
//	b, err := grpcresolver.NewBuilder(grpcresolver.Options{
//		Client: client.Options{Sessions: []string{"127.0.0.1:9600"}},
//	})
//	...
//	defer b.Close()
//	conn, err := grpc.NewClient("slotreg:///greeter", grpc.WithResolvers(b),
//		grpc.WithTransportCredentials(insecure.NewCredentials()))
//
// A publisher's data is either "host:port" or a JSON object
// {"addr":"host:port","attributes":{"k":"v"}}; the attributes, with the
// publisher's registerId, datacenter and zone, ride on each
// resolver.Address and resolver.Endpoint (PublisherOf reads them back).
// Data that is neither is skipped, logged and counted (BadPublishers),
// never fatal. By default the resolver hands gRPC a service config that
// picks round_robin (DefaultServiceConfig); Options.ServiceConfig
// replaces it and Options.NoServiceConfig leaves the choice to the
// channel (grpc.WithDefaultServiceConfig).
//
// What the package owns: a Builder, the slotreg clients it subscribes
// through (one per session list, shared by every target that names it,
// so one session connection serves many targets) and one resolver per
// target, each a subscription and one goroutine that turns the
// subscription's snapshots into resolver states, newest first, skipping
// none that matter and repeating none. Reconnecting to a session,
// replaying the subscription and never going back in version are the
// client package's job (see package client); this package keeps the
// last state it handed gRPC until the client delivers a newer one, so a
// lost session never empties the address list.
//
// What it must never do: speak RESP itself, crash or stop on bad
// publisher data, block gRPC in Build, or leave a goroutine or a
// subscription behind after Close. The core binaries (cmd/registry,
// cmd/registryctl) must never import it: it is what pulls in grpc-go.
package grpcresolver
