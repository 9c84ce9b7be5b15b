package dataserver

import (
	"github.com/slotreg/slotreg/internal/inproc"
	"github.com/slotreg/slotreg/proto"
)

// A session in this process reaches the node by calls (internal/inproc):
// a write batch is applied on the session's goroutine, and a change
// reaches the session's feed from the stream's write loop, with no
// socket, no encoding and no reader goroutine between them.
var _ inproc.Data = (*Node)(nil)

// ApplyWrite applies a session's write batch as DWRITE does.
func (n *Node) ApplyWrite(w *proto.DWrite) (results []uint64, refused []error) {
	n.batches[1].Add(1)
	if n.closing.Load() {
		// As a closed port refuses the batch: nothing it holds would
		// outlive the node.
		return make([]uint64, len(w.Ops)), refuseAll(len(w.Ops),
			proto.Errorf(proto.ErrUnavailable, "data node %s is closing", n.cfg.NodeID))
	}
	for i := range w.Ops {
		w.Ops[i].Zone = w.Zone // as DWRITE's parse gives every op the batch's zone
	}
	return n.applyWrite(w)
}

// OpenFeed opens a change feed for a session in this process.
func (n *Node) OpenFeed(deliver func(*proto.Datum)) inproc.Feed {
	s := newStream(n)
	s.out = discard{n}
	s.deliver = deliver
	if n.addStream(s, 1) {
		go s.writeLoop()
	} else {
		s.close()
		close(s.ended)
	}
	return localFeed{s}
}

// deliverLocal hands the newest state of each pending id to the session.
// It holds no lock meanwhile: the session's delivery may take a while
// (a large fan-out), and a watch or unwatch must not wait for it.
func (s *stream) deliverLocal(pend map[string]struct{}) {
	for id := range pend {
		if _, ok := s.channel(id); !ok {
			continue // unwatched meanwhile
		}
		if d, err := s.n.snapshot(id); err == nil {
			s.deliver(d)
		}
	}
}

// localFeed is a stream in this process, driven by calls.
type localFeed struct{ s *stream }

func (f localFeed) Watch(ids []string)   { f.s.command(streamArgs(proto.CmdSubscribe, ids, "")) }
func (f localFeed) Unwatch(ids []string) { f.s.command(streamArgs(proto.CmdUnsubscribe, ids, "")) }
func (f localFeed) WatchPrefixes(prefixes []string) {
	f.s.command(streamArgs(proto.CmdPSubscribe, prefixes, "*"))
}
func (f localFeed) UnwatchPrefix(prefix string) {
	f.s.command(streamArgs(proto.CmdPUnsubscribe, []string{prefix}, "*"))
}

// Close ends the feed as a closed connection ends a stream, and returns
// once no delivery is under way: the session may be closing.
func (f localFeed) Close() {
	f.s.cleanup()
	<-f.s.ended
}

// streamArgs is a stream command as the port would carry it.
func streamArgs(cmd string, names []string, suffix string) [][]byte {
	a := make([][]byte, 0, 1+len(names))
	a = append(a, []byte(cmd))
	for _, name := range names {
		a = append(a, []byte(name+suffix))
	}
	return a
}

// discard is a local stream's streamOut: confirmations have no reader,
// and an error (a bad prefix) is logged, as the session would log it.
type discard struct{ n *Node }

func (discard) WriteArray(int)         {}
func (discard) WriteBulk([]byte)       {}
func (discard) WriteBulkString(string) {}
func (discard) WriteInt(int)           {}
func (d discard) WriteError(msg string) {
	d.n.log.Warn("in-process change feed refused a command", "err", msg)
}
func (discard) Flush() error { return nil }
