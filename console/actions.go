package console

import (
	"context"
	"fmt"

	"github.com/slotreg/slotreg/proto"
)

// The actions: each is checked here with proto's own parser (so the
// console refuses what meta would, with the same words, before it asks),
// then sent to the meta leader, waiting out an election for a moment.

// actionReply is what an action answers: the table epoch after it, and
// for a rebalance the moves it planned (and started, unless a dry run).
type actionReply struct {
	OK        bool                  `json:"ok"`
	Epoch     uint64                `json:"epoch"`
	Rebalance *proto.RebalanceReply `json:"rebalance,omitempty"`
}

// moveBody is POST /ui/api/move.
type moveBody struct {
	Slot *int   `json:"slot"`
	To   string `json:"to"`
}

func (c *Console) actMove(ctx context.Context, body []byte) (any, error) {
	var b moveBody
	if err := decodeBody(body, &b); err != nil {
		return nil, err
	}
	if b.Slot == nil {
		return nil, badRequest(`slot is missing: send {"slot": 0..255, "to": "<data node>"}`)
	}
	if b.To == "" {
		return nil, badRequest(`to is missing: send {"slot": 0..255, "to": "<data node>"}`)
	}
	m := &proto.MoveSlot{Slot: *b.Slot, To: b.To}
	if _, err := proto.ParseMoveSlot(argBytes(m.Args())); err != nil {
		return nil, badRequest("%s", detail(err))
	}
	return c.epochAction(ctx, m.Args())
}

// nodeBody is POST /ui/api/drain and /ui/api/undrain.
type nodeBody struct {
	Node string `json:"node"`
}

func (c *Console) actDrain(ctx context.Context, body []byte) (any, error) {
	var b nodeBody
	if err := decodeBody(body, &b); err != nil {
		return nil, err
	}
	d := &proto.Drain{NodeID: b.Node}
	if _, err := proto.ParseDrain(argBytes(d.Args())); err != nil {
		return nil, badRequest("node: %s", detail(err))
	}
	return c.epochAction(ctx, d.Args())
}

func (c *Console) actUndrain(ctx context.Context, body []byte) (any, error) {
	var b nodeBody
	if err := decodeBody(body, &b); err != nil {
		return nil, err
	}
	u := &proto.Undrain{NodeID: b.Node}
	if _, err := proto.ParseUndrain(argBytes(u.Args())); err != nil {
		return nil, badRequest("node: %s", detail(err))
	}
	return c.epochAction(ctx, u.Args())
}

// rebalanceBody is POST /ui/api/rebalance: MaxMoves 0 plans every move
// the balancer wants.
type rebalanceBody struct {
	MaxMoves int  `json:"maxMoves"`
	DryRun   bool `json:"dryRun"`
}

func (c *Console) actRebalance(ctx context.Context, body []byte) (any, error) {
	var b rebalanceBody
	if err := decodeBody(body, &b); err != nil {
		return nil, err
	}
	rb := &proto.Rebalance{MaxMoves: b.MaxMoves, DryRun: b.DryRun}
	if _, err := proto.ParseRebalance(argBytes(rb.Args())); err != nil {
		return nil, badRequest("%s", detail(err))
	}
	v, err := c.leader.DoWait(ctx, 3*c.cfg.Timeout, rb.Args()...)
	if err != nil {
		return nil, metaErr(err)
	}
	rep, err := proto.ParseRebalanceReply(v)
	if err != nil {
		return nil, unavailable("%v", err)
	}
	return &actionReply{OK: true, Epoch: rep.Epoch, Rebalance: rep}, nil
}

// epochAction sends a command whose reply is the table epoch after it.
func (c *Console) epochAction(ctx context.Context, args []any) (any, error) {
	v, err := c.leader.DoWait(ctx, 3*c.cfg.Timeout, args...)
	if err != nil {
		return nil, metaErr(err)
	}
	n, ok := v.(int64)
	if !ok || n < 0 {
		return nil, unavailable("meta replied %v (%T), not a table epoch", v, v)
	}
	return &actionReply{OK: true, Epoch: uint64(n)}, nil
}

// argBytes turns a command's Args into what a parser takes.
func argBytes(args []any) [][]byte {
	out := make([][]byte, len(args))
	for i, a := range args {
		out[i] = fmt.Append(nil, a)
	}
	return out
}
