package sessionserver

import (
	"context"
	"errors"
	"time"

	"github.com/slotreg/slotreg/proto"
	"github.com/slotreg/slotreg/slot"
)

// PERSISTENT paths (meta/persist.go, dataserver/persist.go): a PUT ...
// PERSISTENT is stored in meta's log first, which makes it durable, then
// the slot's leader is asked to sync the slot from meta (DPSYNC) so the
// reply comes once reads and watchers see it. A DEL asks meta first too,
// since only meta can remove a PERSISTENT path; a path meta does not hold
// is removed from the slot leader as before.

// persistWrite runs op, a PUT ... PERSISTENT or a DEL, and finishes req
// with the path's datum version (PUT) or 1/0 (DEL).
func (n *Node) persistWrite(op proto.Op, req *writeReq) {
	defer n.bgWg.Done()
	ctx, cancel := context.WithDeadline(context.Background(), req.deadline)
	defer cancel()
	path := proto.JoinPath(op.DataInfoID, op.RegisterID)
	var args []any
	if op.Type == proto.OpRegister {
		args = (&proto.PathArgs{Cmd: proto.CmdMPPut, Path: path, Value: op.Data}).Args()
	} else {
		args = (&proto.PathArgs{Cmd: proto.CmdMPDel, Path: path}).Args()
	}
	v, err := n.locks.rpc.Do(ctx, args...)
	if err != nil {
		req.finish(0, lockErr(err))
		return
	}
	rev, _ := v.(int64)
	if rev == 0 {
		// DEL of a path meta does not hold: an UNREGISTER of whoever
		// holds it.
		op.Persistent = false
		w := n.router.submit(&op, make(chan struct{}))
		select {
		case <-w.done:
			req.finish(w.res, w.err)
		case <-ctx.Done():
			req.finish(0, proto.Errorf(proto.ErrTimeout, "no slot leader answered within %v", n.writeTimeout()))
		}
		return
	}
	ver, err := n.router.dpsync(ctx, op.DataInfoID, uint64(rev))
	switch {
	case err != nil:
		req.finish(0, proto.Errorf(proto.ErrUnavailable, "%s is stored (revision %d) but its slot's leader has not taken it yet: %v", path, rev, err))
	case op.Type == proto.OpRegister:
		req.finish(ver, nil)
	default:
		req.finish(1, nil)
	}
}

// dpsync asks the leader of id's slot to hold the slot's PERSISTENT
// paths as of rev, following the table, and returns id's datum version.
func (r *router) dpsync(ctx context.Context, id string, rev uint64) (uint64, error) {
	s := slot.Of(id)
	wait := 10 * time.Millisecond
	for {
		addr, err := r.slotLeaderAddr(s)
		if err == nil {
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			var ver uint64
			ver, err = r.link(addr).rdb.Do(cctx, (&proto.DPSync{Slot: s, Rev: rev, DataInfoID: id}).Args()...).Uint64()
			cancel()
			if err == nil {
				return ver, nil
			}
			err = fromRedis(err)
			if errors.Is(err, proto.ErrInvalid) {
				return 0, err
			}
			if r.moved(err, s) {
				continue
			}
		}
		r.refreshSoon()
		select {
		case <-ctx.Done():
			return 0, err
		case <-time.After(wait):
		}
		wait = min(2*wait, 200*time.Millisecond)
	}
}
