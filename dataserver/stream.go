package dataserver

import (
	"strings"
	"sync"

	"github.com/slotreg/slotreg/proto"
	"github.com/slotreg/slotreg/slot"
	"github.com/tidwall/redcon"
)

// stream is one session's change feed, spoken as Redis pub/sub on the data
// port so that the session can use a stock client (go-redis PubSub, with
// its reconnects). The channel is a dataInfoId; a message carries the
// datum in binary form. Notices coalesce: the pending set holds each id at
// most once and the writer always sends the newest state, so a slow
// session costs memory per watched id, never per change.
type stream struct {
	n *Node
	// out is where (un)subscribe confirmations go: dc for a stream on
	// the port, nothing for one in this process (see local.go).
	out streamOut
	dc  redcon.DetachedConn // nil in this process
	// deliver, in this process, takes the states that dc would carry.
	deliver func(*proto.Datum)
	wmu     sync.Mutex // guards writes to out
	mu      sync.Mutex
	subs    map[string]struct{}
	pats    map[string]struct{} // path prefixes (PSUBSCRIBE prefix*)
	pend    map[string]struct{}
	wake    chan struct{}
	done    chan struct{}
	once    sync.Once
	// ended is closed once writeLoop has returned (or will never run).
	ended chan struct{}
}

// startStream detaches a connection whose first pub/sub command is cmd.
func (n *Node) startStream(conn redcon.Conn, cmd redcon.Command) {
	s := newStream(n)
	s.dc = conn.Detach()
	s.out = s.dc
	if !n.addStream(s, 2) {
		s.dc.Close()
		return
	}
	go s.readLoop(cmd)
	go s.writeLoop()
}

func newStream(n *Node) *stream {
	return &stream{
		n:     n,
		subs:  make(map[string]struct{}),
		pats:  make(map[string]struct{}),
		pend:  make(map[string]struct{}),
		wake:  make(chan struct{}, 1),
		done:  make(chan struct{}),
		ended: make(chan struct{}),
	}
}

// addStream records s, whose goroutines the node waits for, unless the
// node is closing.
func (n *Node) addStream(s *stream, goroutines int) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closing.Load() {
		return false
	}
	n.streams[s] = struct{}{}
	n.wg.Add(goroutines)
	return true
}

// streamOut is what a stream writes besides change notices.
type streamOut interface {
	WriteArray(n int)
	WriteBulk(b []byte)
	WriteBulkString(s string)
	WriteInt(n int)
	WriteError(msg string)
	Flush() error
}

func (s *stream) close() {
	s.once.Do(func() {
		close(s.done)
		// Close the socket, not the redcon conn: its Close flushes the
		// shared writer, which the write loop may be using.
		if s.dc != nil {
			s.dc.NetConn().Close()
		}
	})
}

func (s *stream) mark(id string) {
	s.mu.Lock()
	s.pend[id] = struct{}{}
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// channel says how a change of id is sent: as a message if the stream
// subscribes to id, else as a pmessage of the first prefix that holds it
// (pattern is that prefix with its *); ok is false for neither.
func (s *stream) channel(id string) (pattern string, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, sub := s.subs[id]; sub {
		return "", true
	}
	for p := range s.pats {
		if proto.PrefixHolds(p, id) {
			return p + "*", true
		}
	}
	return "", false
}

func (s *stream) readLoop(first redcon.Command) {
	defer s.n.wg.Done()
	defer s.cleanup()
	cmd := first
	for {
		if !s.command(cmd.Args) {
			return
		}
		var err error
		if cmd, err = s.dc.ReadCommand(); err != nil {
			return
		}
	}
}

// command handles one command on the stream; false ends the stream.
func (s *stream) command(args [][]byte) bool {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	switch strings.ToLower(string(args[0])) {
	case proto.CmdSubscribe:
		for _, a := range args[1:] {
			id := string(a)
			if proto.CheckKey(id) != nil {
				continue
			}
			s.mu.Lock()
			_, had := s.subs[id]
			s.subs[id] = struct{}{}
			n := len(s.subs)
			s.mu.Unlock()
			if !had {
				s.n.slots[slot.Of(id)].watch(id, s)
			}
			s.confirm(proto.PushSubscribe, a, n)
			s.mark(id)
		}
	case proto.CmdUnsubscribe:
		for _, a := range args[1:] {
			id := string(a)
			s.mu.Lock()
			delete(s.subs, id)
			delete(s.pend, id)
			n := len(s.subs)
			s.mu.Unlock()
			s.n.slots[slot.Of(id)].unwatch(id, s)
			s.confirm(proto.PushUnsubscribe, a, n)
		}
	case proto.CmdPSubscribe:
		for _, a := range args[1:] {
			prefix, err := proto.ParsePattern(a)
			if err != nil {
				s.out.WriteError(proto.ToRESP(err))
				continue
			}
			s.mu.Lock()
			_, had := s.pats[prefix]
			s.pats[prefix] = struct{}{}
			n := len(s.subs) + len(s.pats)
			s.mu.Unlock()
			s.confirm(proto.PushPSubscribe, a, n)
			// Again where already watched: the answer is everything
			// under the prefix, as a SUBSCRIBE answers the state.
			for _, u := range s.n.slots {
				if had {
					u.mu.Lock()
					u.markPrefix(prefix, s)
					u.mu.Unlock()
				} else {
					u.pwatch(prefix, s)
				}
			}
		}
	case proto.CmdPUnsubscribe:
		for _, a := range args[1:] {
			prefix, err := proto.ParsePattern(a)
			if err != nil {
				s.out.WriteError(proto.ToRESP(err))
				continue
			}
			s.mu.Lock()
			delete(s.pats, prefix)
			n := len(s.subs) + len(s.pats)
			s.mu.Unlock()
			for _, u := range s.n.slots {
				u.punwatch(prefix, s)
			}
			s.confirm(proto.PushPUnsubscribe, a, n)
		}
	case proto.CmdPing:
		s.out.WriteArray(2)
		s.out.WriteBulkString("pong")
		if len(args) > 1 {
			s.out.WriteBulk(args[1])
		} else {
			s.out.WriteBulkString("")
		}
	default:
		s.out.WriteError("ERR only (P)SUBSCRIBE, (P)UNSUBSCRIBE and PING are allowed on a change stream")
	}
	return s.out.Flush() == nil
}

// confirm writes a (p)(un)subscribe confirmation.
func (s *stream) confirm(kind string, channel []byte, n int) {
	s.out.WriteArray(3)
	s.out.WriteBulkString(kind)
	s.out.WriteBulk(channel)
	s.out.WriteInt(n)
}

func (s *stream) cleanup() {
	s.close()
	s.mu.Lock()
	ids := make([]string, 0, len(s.subs))
	for id := range s.subs {
		ids = append(ids, id)
	}
	pats := make([]string, 0, len(s.pats))
	for p := range s.pats {
		pats = append(pats, p)
	}
	s.mu.Unlock()
	for _, id := range ids {
		s.n.slots[slot.Of(id)].unwatch(id, s)
	}
	for _, p := range pats {
		for _, u := range s.n.slots {
			u.punwatch(p, s)
		}
	}
	s.n.mu.Lock()
	delete(s.n.streams, s)
	s.n.mu.Unlock()
}

func (s *stream) writeLoop() {
	defer s.n.wg.Done()
	defer close(s.ended)
	var buf []byte
	for {
		select {
		case <-s.done:
			return
		case <-s.wake:
		}
		s.mu.Lock()
		pend := s.pend
		s.pend = make(map[string]struct{}, len(pend))
		s.mu.Unlock()
		if s.deliver != nil {
			s.deliverLocal(pend)
			continue
		}
		s.wmu.Lock()
		for id := range pend {
			pattern, ok := s.channel(id)
			if !ok {
				continue // unsubscribed meanwhile
			}
			d, err := s.n.snapshot(id)
			if err != nil {
				// Not led here (any more): the session follows the
				// table to the new leader, which will notify it.
				continue
			}
			buf = d.AppendBinary(buf[:0])
			if pattern == "" {
				s.dc.WriteArray(3)
				s.dc.WriteBulkString(proto.PushMessage)
			} else {
				s.dc.WriteArray(4)
				s.dc.WriteBulkString(proto.PushPMessage)
				s.dc.WriteBulkString(pattern)
			}
			s.dc.WriteBulkString(id)
			s.dc.WriteBulk(buf)
		}
		err := s.dc.Flush()
		s.wmu.Unlock()
		if err != nil {
			s.close()
			return
		}
	}
}
