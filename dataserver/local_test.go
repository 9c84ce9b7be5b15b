package dataserver

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/slotreg/slotreg/proto"
	"github.com/slotreg/slotreg/slot"
)

// ApplyWrite answers per op as DWRITE does, gives each op the batch's
// zone as DWRITE's parse does, and refuses everything once the node is
// closing, applying nothing.
func TestApplyWriteAnswersAsDWrite(t *testing.T) {
	n := leaderNode(t)
	var led, dropped string
	for i := 0; led == "" || dropped == ""; i++ {
		id := fmt.Sprint("svc-", i)
		if led == "" {
			led = id
		} else if slot.Of(id) != slot.Of(led) {
			dropped = id
		}
	}
	n.slots[slot.Of(dropped)].drop()
	w := &proto.DWrite{Epoch: 1, SessionID: "s1", Zone: "z9", Ops: []proto.Op{
		{Type: proto.OpRegister, DataInfoID: led, RegisterID: "r", Data: "d", ConnID: "c"},
		{Type: proto.OpRegister, DataInfoID: dropped, RegisterID: "r", Data: "d", ConnID: "c"},
	}}
	results, refused := n.ApplyWrite(w)
	if len(results) != 2 || results[0] == 0 || refused == nil || refused[0] != nil {
		t.Fatalf("results %v, refused %v", results, refused)
	}
	var no *proto.NotOwnerError
	if !errors.As(refused[1], &no) || no.Slot != slot.Of(dropped) {
		t.Fatalf("op to a slot not led here: %v, want NOTOWNER for slot %d", refused[1], slot.Of(dropped))
	}
	d, err := n.snapshot(led)
	if err != nil || len(d.Entries) != 1 || d.Entries[0].Zone != "z9" || d.Version != results[0] {
		t.Fatalf("snapshot %+v (%v): want one entry of zone z9 at version %d", d, err, results[0])
	}

	n.closing.Store(true)
	w.Ops = []proto.Op{{Type: proto.OpRegister, DataInfoID: led, RegisterID: "late", Data: "d", ConnID: "c"}}
	_, refused = n.ApplyWrite(w)
	if refused == nil || !errors.Is(refused[0], proto.ErrUnavailable) {
		t.Fatalf("a closing node answered %v, want UNAVAILABLE", refused)
	}
	if d, _ := n.snapshot(led); len(d.Entries) != 1 {
		t.Fatalf("a closing node applied the write: %+v", d.Entries)
	}
}

// A feed in this process delivers what a SUBSCRIBE stream would: the
// state on watching, each change after, nothing once unwatched, and it
// leaves the node's streams on Close.
func TestOpenFeedDeliversAsAStream(t *testing.T) {
	n := leaderNode(t)
	got := make(chan *proto.Datum, 16)
	f := n.OpenFeed(func(d *proto.Datum) { got <- d })
	next := func(id string) *proto.Datum {
		t.Helper()
		select {
		case d := <-got:
			if d.DataInfoID != id {
				t.Fatalf("delivered %s, want %s", d.DataInfoID, id)
			}
			return d
		case <-time.After(10 * time.Second):
			t.Fatalf("nothing delivered for %s", id)
			return nil
		}
	}
	write := func(id, rid string) uint64 {
		t.Helper()
		res, refused := n.ApplyWrite(&proto.DWrite{Epoch: 1, SessionID: "s1",
			Ops: []proto.Op{{Type: proto.OpRegister, DataInfoID: id, RegisterID: rid, Data: "d", ConnID: "c"}}})
		if refused != nil {
			t.Fatalf("write refused: %v", refused)
		}
		return res[0]
	}
	write("svc-a", "r0")
	f.Watch([]string{"svc-a"})
	if d := next("svc-a"); len(d.Entries) != 1 {
		t.Fatalf("state on watching: %+v", d)
	}
	v := write("svc-a", "r1")
	if d := next("svc-a"); d.Version != v || len(d.Entries) != 2 {
		t.Fatalf("after a change: %+v, want version %d with 2 entries", d, v)
	}
	f.Unwatch([]string{"svc-a"})
	f.Watch([]string{"svc-b"})
	next("svc-b") // its (empty) state on watching
	write("svc-a", "r2")
	write("svc-b", "r0")
	if d := next("svc-b"); len(d.Entries) != 1 {
		t.Fatalf("svc-b after its write: %+v", d)
	}
	f.Close()
	n.mu.Lock()
	left := len(n.streams)
	n.mu.Unlock()
	if left != 0 {
		t.Fatalf("%d streams left after Close", left)
	}
	select {
	case d := <-got:
		t.Fatalf("delivered %s after it was unwatched or closed", d.DataInfoID)
	default:
	}
}

// Close returns only once a delivery under way has ended: the session
// that closes its feed may be closing itself.
func TestLocalFeedCloseWaitsForADelivery(t *testing.T) {
	n := leaderNode(t)
	in, release := make(chan struct{}), make(chan struct{})
	f := n.OpenFeed(func(*proto.Datum) {
		in <- struct{}{}
		<-release
	})
	f.Watch([]string{"svc-a"})
	<-in // delivering the state on watching
	closed := make(chan struct{})
	go func() { f.Close(); close(closed) }()
	select {
	case <-closed:
		t.Fatal("Close returned during a delivery")
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return after the delivery ended")
	}
}
