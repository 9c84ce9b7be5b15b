package main

import (
	"context"
	"io"
	"log/slog"
	"os"
	"runtime/pprof"
	"time"

	"github.com/slotreg/slotreg/cluster"
)

// startInProc starts an in-process cluster so that one CPU profile
// covers the nodes and the load together; the nodes' code is used as it
// is, nothing is added to it.
func startInProc(ctx context.Context, data, sessions int, lease time.Duration) ([]string, func(), error) {
	dir, err := os.MkdirTemp("", "slotreg-bench-inproc-")
	if err != nil {
		return nil, nil, err
	}
	cl, err := cluster.Start(cluster.Options{
		Dir: dir, Data: data, Sessions: sessions, Lease: lease,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		os.RemoveAll(dir)
		return nil, nil, err
	}
	stop := func() { cl.Close(); os.RemoveAll(dir) }
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := cl.WaitReady(wctx); err != nil {
		stop()
		return nil, nil, err
	}
	var addrs []string
	for _, s := range cl.Sessions {
		addrs = append(addrs, s.Addr())
	}
	return addrs, stop, nil
}

// startProfile starts a CPU profile into file; the returned func stops
// it.
func startProfile(file string) (func(), error) {
	f, err := os.Create(file)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}
