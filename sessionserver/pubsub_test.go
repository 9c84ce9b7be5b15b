package sessionserver

import (
	"bufio"
	"encoding/json"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/slotreg/slotreg/proto"
	"github.com/slotreg/slotreg/slot"
)

// subscribedConn makes c a subscriber of id and returns a reader of what
// the client receives; the caller starts c's push loop.
func subscribedConn(t *testing.T, n *Node, id string) (*clientConn, *bufio.Reader, net.Conn) {
	t.Helper()
	nc, peer := net.Pipe()
	return subscriberOn(t, n, id, nc, peer)
}

// subscriberOn is subscribedConn on nc, whose client end is peer.
func subscriberOn(t *testing.T, n *Node, id string, nc, peer net.Conn) (*clientConn, *bufio.Reader, net.Conn) {
	t.Helper()
	c := &clientConn{n: n, nc: nc, id: "inc.1", wr: newRespWriter(nc), raw: rawConn(nc), owned: map[pubKey]struct{}{},
		topics: map[string]*topic{}, authed: true,
		wake: make(chan struct{}, 1), pending: map[*topic]struct{}{}, sent: map[*topic]uint64{}}
	tp := &topic{id: id, subs: map[*clientConn]struct{}{c: {}}}
	c.topics[id] = tp
	n.subs.slots[slot.Of(id)].topics[topicKey{id: id}] = tp
	t.Cleanup(func() {
		c.mu.Lock()
		if !c.closed {
			close(c.wake)
			c.closed = true
		}
		c.mu.Unlock()
		peer.Close()
		nc.Close()
		n.wg.Wait()
	})
	return c, bufio.NewReader(peer), peer
}

// nextVersion reads one pushed message and returns its datum's version;
// ok is false if none came within wait.
func nextVersion(t *testing.T, r *bufio.Reader, peer net.Conn, wait time.Duration) (v uint64, ok bool) {
	t.Helper()
	peer.SetReadDeadline(time.Now().Add(wait))
	m, err := decode(r)
	if ne := net.Error(nil); errors.As(err, &ne) && ne.Timeout() {
		return 0, false
	}
	if err != nil {
		t.Fatalf("reading a push: %v", err)
	}
	a, _ := m.([]any)
	if len(a) != 3 || a[0] != proto.PushMessage {
		t.Fatalf("push %#v", m)
	}
	var d struct{ Version uint64 }
	if err := json.Unmarshal([]byte(a[2].(string)), &d); err != nil {
		t.Fatalf("payload %q: %v", a[2], err)
	}
	return d.Version, true
}

// A subscriber gets the newest state of what changed, not a queue of
// every change, and never a version lower than one it got.
func TestPushesCoalesceAndNeverGoBack(t *testing.T) {
	const id = "svc"
	type phase struct {
		early   bool     // delivered before the push loop starts: a client that reads nothing yet
		deliver []uint64 // versions the data node sends
		read    []uint64 // what the client may then read, in order: it reads until the last
		quiet   bool     // the client then gets nothing
	}
	for _, tc := range []struct {
		name   string
		phases []phase
	}{
		{"a burst while the client reads nothing gives the last", []phase{
			{early: true, deliver: []uint64{1, 2, 3, 4, 5}},
			{read: []uint64{5}}}},
		{"an older version after a newer one is dropped", []phase{
			{deliver: []uint64{5, 3}, read: []uint64{5}},
			{deliver: []uint64{4}, quiet: true},
			{deliver: []uint64{6}, read: []uint64{6}}}},
		{"changes during a stalled write are coalesced", []phase{
			{deliver: []uint64{1}}, // the push loop blocks writing it
			{deliver: []uint64{2, 3, 4, 5, 6, 7, 8, 9}, read: []uint64{1, 9}}}},
		{"equal versions are sent once", []phase{
			{deliver: []uint64{7, 7}, read: []uint64{7}},
			{deliver: []uint64{7}, quiet: true}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := mustNode(t, Limits{})
			n.subs.init(n)
			c, r, peer := subscribedConn(t, n, id)
			started := false
			var last uint64
			for i, ph := range tc.phases {
				for _, v := range ph.deliver {
					n.subs.deliver(&proto.Datum{DataInfoID: id, Version: v, Entries: []proto.Entry{{RegisterID: "r", Data: "d"}}})
				}
				if !ph.early && !started {
					started = true
					n.wg.Add(1)
					go c.pushLoop()
				}
				want := ph.read
				if len(want) == 0 && !ph.quiet && !ph.early {
					time.Sleep(20 * time.Millisecond) // let the push loop reach the client
				}
				var got []uint64
				for len(want) > 0 && (len(got) == 0 || got[len(got)-1] != want[len(want)-1]) {
					v, ok := nextVersion(t, r, peer, 5*time.Second)
					if !ok {
						t.Fatalf("phase %d: got %v, then nothing; want up to %v", i, got, want)
					}
					got = append(got, v)
				}
				if len(got) > len(want) {
					t.Fatalf("phase %d: got %v, want at most %v (a queue, not the latest)", i, got, want)
				}
				for _, v := range got {
					if v <= last {
						t.Fatalf("phase %d: version %d after %d", i, v, last)
					}
					last = v
				}
				if ph.quiet {
					if v, ok := nextVersion(t, r, peer, 50*time.Millisecond); ok {
						t.Fatalf("phase %d: got version %d, want none", i, v)
					}
				}
			}
		})
	}
}
