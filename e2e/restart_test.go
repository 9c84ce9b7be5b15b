package e2e

import (
	"fmt"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/slotreg/slotreg/client"
	"github.com/slotreg/slotreg/internal/testutil"
	"github.com/slotreg/slotreg/slot"
)

// TestClientFollowsARegistryThatRestartedEmpty: a Go client outlives a
// `registry dev` that is killed and started again, empty, on the same
// address. The new registry numbers versions from the start again, below
// the ones the client holds (the slot's leader moved four times in the
// old one, raising its leader epoch); the client sees that it is a new
// cluster, and its subscriber gets the new registry's state instead of
// dropping it as old; so does its watch of a path another client set
// again in the new registry.
func TestClientFollowsARegistryThatRestartedEmpty(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	old := startDevProcess(t, nil, nil, "--listen", addr)
	if old.session != addr || old.meta == "" {
		t.Fatalf("registry dev serves on %q (meta %q), want %s", old.session, old.meta, addr)
	}
	const svc, dir, path = "restart-svc", "/restart", "/restart/a"
	ctx := ctxT(t)
	for _, id := range []string{svc, dir} {
		for i := range 4 {
			to := []string{"data1", "data2"}[i%2]
			if stdout, stderr, code := runCtl(t, nil, "--meta", old.meta, "move-slot", strconv.Itoa(slot.Of(id)), "--to", to); code != 0 {
				t.Fatalf("move %d of %s's slot to %s: %s%s", i, id, to, stdout, stderr)
			}
		}
	}

	sub := mustGoClient(t, addr)
	rec := newClientRecorder()
	if _, err := sub.Subscribe(ctx, svc, rec.fn); err != nil {
		t.Fatal(err)
	}
	pub := mustGoClient(t, addr)
	if _, err := pub.Register(ctx, svc, "p-old", "10.0.0.1:80"); err != nil {
		t.Fatal(err)
	}
	var oldVersion uint64
	testutil.WaitFor(t, 10*time.Second, "the subscriber to see p-old", func() (bool, string) {
		s, ok := rec.last(svc)
		oldVersion = s.Version
		return ok && pubSet(s.Publishers) == "p-old=10.0.0.1:80", pubSet(s.Publishers)
	})
	var evMu sync.Mutex
	var events []client.Event
	last := func() client.Event {
		evMu.Lock()
		defer evMu.Unlock()
		if len(events) == 0 {
			return client.Event{}
		}
		return events[len(events)-1]
	}
	if _, err := sub.Watch(ctx, dir+"/", func(e client.Event) {
		evMu.Lock()
		events = append(events, e)
		evMu.Unlock()
	}); err != nil {
		t.Fatal(err)
	}
	setter := mustGoClient(t, addr)
	if err := setter.Put(ctx, path, "old", false); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 10*time.Second, "the watch to see "+path+"=old", func() (bool, string) {
		e := last()
		return e.Path == path && e.Value == "old", fmt.Sprintf("%+v", e)
	})
	oldPathVersion := last().Version
	setter.Close()

	if err := old.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-old.exited
	fresh := startDevProcess(t, nil, nil, "--listen", addr)
	if fresh.session != addr {
		t.Fatalf("the new registry serves on %q, want %s", fresh.session, addr)
	}
	// pub registers p-old again on its own; p-new exists only in the new
	// registry.
	if _, err := mustGoClient(t, addr).Register(ctx, svc, "p-new", "10.0.0.2:80"); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 20*time.Second, "the subscriber to see the new registry's state", func() (bool, string) {
		s, _ := rec.last(svc)
		return pubSet(s.Publishers) == "p-new=10.0.0.2:80,p-old=10.0.0.1:80", pubSet(s.Publishers) + " at version " + strconv.FormatUint(s.Version, 10)
	})
	if s, _ := rec.last(svc); s.Version >= oldVersion {
		t.Fatalf("the new registry's version %d is not below the old one's %d: the test did not restart versions", s.Version, oldVersion)
	}
	if err := mustGoClient(t, addr).Put(ctx, path, "new", false); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 20*time.Second, "the watch to see "+path+"=new", func() (bool, string) {
		e := last()
		return e.Path == path && e.Value == "new", fmt.Sprintf("%+v", e)
	})
	if v := last().Version; v >= oldPathVersion {
		t.Fatalf("the new registry's version %d of %s is not below the old one's %d", v, path, oldPathVersion)
	}
}
