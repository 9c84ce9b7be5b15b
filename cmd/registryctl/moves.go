package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/slotreg/slotreg/proto"
	"github.com/slotreg/slotreg/slot"
)

// pollInterval is how often registryctl reads the table while it waits
// for moves; progressEvery, how often it says it is still waiting when
// nothing changed.
const (
	pollInterval  = 100 * time.Millisecond
	progressEvery = 5 * time.Second
)

func waitTimeoutFlag(d time.Duration) *cli.DurationFlag {
	return &cli.DurationFlag{Name: "wait-timeout", Value: d, Usage: "give up waiting after this long (the moves go on)"}
}

func moveSlotCommand() *cli.Command {
	return &cli.Command{
		Name:      "move-slot",
		Usage:     "move a slot's leadership to a data node, and wait until it leads",
		ArgsUsage: "SLOT --to NODE",
		Description: "The target joins the slot as a follower if it is not one, catches up, and the leader hands\n" +
			"the slot over. Fails if meta refuses the move, or cancels it (its move timeout).",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "to", Usage: "the data node that is to lead the slot"},
			&cli.BoolFlag{Name: "no-wait", Usage: "start the move and return"},
			waitTimeoutFlag(5 * time.Minute),
		},
		Action: action(runMoveSlot),
	}
}

// parseSlot reads a slot argument: a number in 0..255.
func parseSlot(arg string) (int, error) {
	s, err := strconv.Atoi(arg)
	if err != nil || s < 0 || s >= slot.Count {
		return 0, usageErrorf("slot %q is out of range: want a number in 0..%d", arg, slot.Count-1)
	}
	return s, nil
}

func oneArg(c *cli.Context, what string) (string, error) {
	if c.NArg() != 1 {
		return "", usageErrorf("%s takes one %s argument, got %d (see 'registryctl %s --help')", c.Command.Name, what, c.NArg(), c.Command.Name)
	}
	return c.Args().First(), nil
}

func runMoveSlot(c *cli.Context, e *env) error {
	arg, err := oneArg(c, "SLOT")
	if err != nil {
		return err
	}
	s, err := parseSlot(arg)
	if err != nil {
		return err
	}
	to := c.String("to")
	if to == "" {
		return usageErrorf("move-slot needs --to NODE")
	}
	if _, err := e.findLeader(false); err != nil {
		return err
	}
	m, err := e.readMembers()
	if err != nil {
		return err
	}
	if _, err := dataNode(m, to); err != nil {
		return err
	}
	t, err := e.readTable()
	if err != nil {
		return err
	}
	a := t.Slots[s]
	var epoch uint64
	switch {
	case a.Leader == to:
		e.printf("slot %d is led by %s already; nothing to do\n", s, to)
		return nil
	case a.Target == to:
		e.printf("slot %d is moving from %s to %s already\n", s, a.Leader, to)
		epoch = t.Epoch
	default:
		v, err := e.write((&proto.MoveSlot{Slot: s, To: to}).Args()...)
		if err != nil {
			return fmt.Errorf("move-slot %d --to %s: %w", s, to, err)
		}
		n, _ := v.(int64)
		epoch = uint64(n)
		e.printf("moving slot %d from %s to %s (table epoch %d)\n", s, orDash(a.Leader), to, epoch)
	}
	if c.Bool("no-wait") {
		return nil
	}
	return e.waitMove(s, to, epoch, c.Duration("wait-timeout"))
}

// moveOutcome tells how the move of slot s to `to` stands in t: done (to
// leads), failed with the reason (the move was cancelled or replaced), or
// neither (in progress).
func moveOutcome(t *slot.Table, s int, to string) (done bool, failed string) {
	a := t.Slots[s]
	switch {
	case a.Leader == to:
		return true, ""
	case a.Target == to:
		return false, ""
	case a.Target != "":
		return false, fmt.Sprintf("the slot is moving to %s instead", a.Target)
	}
	return false, fmt.Sprintf("cancelled (meta's move timeout, or an operator); %s still leads", orDash(a.Leader))
}

// waitMove polls the table until the move of s to `to` is done or failed;
// tables older than minEpoch (a meta lagging behind the move) are skipped.
func (e *env) waitMove(s int, to string, minEpoch uint64, timeout time.Duration) error {
	start := time.Now()
	lastNote := start
	for {
		t, err := e.readTable()
		if err != nil {
			return err
		}
		if t.Epoch >= minEpoch {
			done, failed := moveOutcome(t, s, to)
			if done {
				e.printf("slot %d: %s leads now, at leader epoch %d (%.1fs)\n", s, to, t.Slots[s].LeaderEpoch, time.Since(start).Seconds())
				e.syncMetas(t.Epoch)
				return nil
			}
			if failed != "" {
				return fmt.Errorf("slot %d: the move to %s failed: %s", s, to, failed)
			}
		}
		if time.Since(start) > timeout {
			return fmt.Errorf("slot %d is still moving to %s after %v; gave up waiting (the move goes on)", s, to, timeout)
		}
		if time.Since(lastNote) >= progressEvery {
			e.printf("  still moving slot %d to %s (%.0fs)\n", s, to, time.Since(start).Seconds())
			lastNote = time.Now()
		}
		if err := sleepCtx(e.c.Context, pollInterval); err != nil {
			return err
		}
	}
}

func drainCommand() *cli.Command {
	return &cli.Command{
		Name:      "drain",
		Usage:     "move every slot a data node leads to other nodes, and wait until it leads none",
		ArgsUsage: "NODE",
		Description: "Meta marks the node as draining: it moves the node's slots away (at most its MaxMoves at a\n" +
			"time) and no move, rebalance included, gives it a slot again until 'undrain'. Once it leads\n" +
			"nothing it can be stopped with nothing lost; it keeps its follower places until it leaves.",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "no-wait", Usage: "mark the node as draining and return"},
			waitTimeoutFlag(30 * time.Minute),
		},
		Action: action(runDrain),
	}
}

// nodeArg reads the NODE argument of drain and undrain, finds the meta
// leader and checks that NODE is a data node.
func nodeArg(c *cli.Context, e *env) (string, proto.Member, error) {
	node, err := oneArg(c, "NODE")
	if err != nil {
		return "", proto.Member{}, err
	}
	if _, err := e.findLeader(false); err != nil {
		return "", proto.Member{}, err
	}
	m, err := e.readMembers()
	if err != nil {
		return "", proto.Member{}, err
	}
	d, err := dataNode(m, node)
	return node, d, err
}

func runDrain(c *cli.Context, e *env) error {
	node, _, err := nodeArg(c, e)
	if err != nil {
		return err
	}
	v, err := e.write((&proto.Drain{NodeID: node}).Args()...)
	if err != nil {
		return fmt.Errorf("drain %s: %w", node, err)
	}
	n, _ := v.(int64)
	epoch := uint64(n)
	t, err := e.readTable()
	if err != nil {
		return err
	}
	led := t.LedBy(node)
	e.printf("draining %s: it leads %s; meta moves them to other nodes (table epoch %d)\n", node, count(len(led), "slot"), epoch)
	if c.Bool("no-wait") {
		return nil
	}
	return e.waitDrain(node, led, epoch, c.Duration("wait-timeout"))
}

// waitDrain polls the table until node leads no slot, printing a line per
// slot that moved away.
func (e *env) waitDrain(node string, led []int, minEpoch uint64, timeout time.Duration) error {
	start := time.Now()
	lastNote, lastCheck := start, start
	leader := map[int]string{} // the slots node led when last seen
	for _, s := range led {
		leader[s] = node
	}
	total, moved := len(led), 0
	for {
		t, err := e.readTable()
		if err != nil {
			return err
		}
		if t.Epoch >= minEpoch {
			if !t.HasNode(node) {
				e.printf("%s left the cluster; its followers took over its slots (%d moved before, %.1fs)\n",
					node, moved, time.Since(start).Seconds())
				e.syncMetas(t.Epoch)
				return nil
			}
			for _, s := range sortedSlots(leader) {
				if l := t.Slots[s].Leader; l != node {
					moved++
					e.printf("[%*d/%d] slot %d: %s -> %s\n", len(strconv.Itoa(total)), moved, total, s, node, orDash(l))
					delete(leader, s)
					lastNote = time.Now()
				}
			}
			now := t.LedBy(node)
			for _, s := range now {
				if _, ok := leader[s]; !ok {
					leader[s] = node
					total++
				}
			}
			if len(now) == 0 {
				e.printf("%s leads no slot: %d moved in %.1fs; it can be stopped\n", node, moved, time.Since(start).Seconds())
				e.syncMetas(t.Epoch)
				return nil
			}
			if time.Since(lastNote) >= progressEvery {
				e.printf("  %s still leads %d slots, %d of them moving (%.0fs)\n", node, len(now), movingFrom(t, node), time.Since(start).Seconds())
				lastNote = time.Now()
			}
		}
		// Someone may undrain the node meanwhile; the wait would then
		// never end.
		if time.Since(lastCheck) >= time.Second {
			lastCheck = time.Now()
			if m, err := e.readMembers(); err == nil {
				if d, err := dataNode(m, node); err == nil && !d.Draining {
					return fmt.Errorf("%s is no longer draining (someone undrained it); it still leads %d slots", node, len(leader))
				}
			}
		}
		if time.Since(start) > timeout {
			return fmt.Errorf("%s still leads %d slots after %v; gave up waiting (the drain goes on)", node, len(leader), timeout)
		}
		if err := sleepCtx(e.c.Context, pollInterval); err != nil {
			return err
		}
	}
}

func movingFrom(t *slot.Table, node string) int {
	n := 0
	for _, s := range t.Moving() {
		if t.Slots[s].Leader == node {
			n++
		}
	}
	return n
}

func sortedSlots[V any](m map[int]V) []int {
	out := make([]int, 0, len(m))
	for s := range m {
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}

func undrainCommand() *cli.Command {
	return &cli.Command{
		Name:      "undrain",
		Usage:     "end a data node's draining: rebalance (or auto-rebalance) may give it leaders again",
		ArgsUsage: "NODE",
		Action:    action(runUndrain),
	}
}

func runUndrain(c *cli.Context, e *env) error {
	node, d, err := nodeArg(c, e)
	if err != nil {
		return err
	}
	v, err := e.write((&proto.Undrain{NodeID: node}).Args()...)
	if err != nil {
		return fmt.Errorf("undrain %s: %w", node, err)
	}
	if !d.Draining {
		e.printf("%s was not draining (table epoch %d)\n", node, v)
		return nil
	}
	e.printf("%s is no longer draining (table epoch %d); rebalance gives it leaders again\n", node, v)
	return nil
}

func rebalanceCommand() *cli.Command {
	return &cli.Command{
		Name:  "rebalance",
		Usage: "even out the slot leaders over the data nodes: print the plan, then move, a few slots at a time",
		Description: "Prints meta's plan first. Then it starts up to --max-moves moves, waits until they finish\n" +
			"(a line per move), starts the next ones, and so on until the plan is empty; then a summary.\n" +
			"Draining nodes get no slot. Exits 1 if a move failed.",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "dry-run", Usage: "print the plan and change nothing"},
			&cli.IntFlag{Name: "max-moves", Value: 4, Usage: "moves in flight at a time (0: all at once)"},
			&cli.BoolFlag{Name: "wait", Value: true, Usage: "wait for the moves, starting more until the plan is done (--wait=false: start one batch and return)"},
			waitTimeoutFlag(time.Hour),
		},
		Action: action(runRebalance),
	}
}

// rebalance asks meta to plan (dryRun) or start at most maxMoves moves (0:
// no limit).
func (e *env) rebalance(maxMoves int, dryRun bool) (*proto.RebalanceReply, error) {
	v, err := e.write((&proto.Rebalance{MaxMoves: maxMoves, DryRun: dryRun}).Args()...)
	if err != nil {
		return nil, fmt.Errorf("rebalance: %w", err)
	}
	return proto.ParseRebalanceReply(v)
}

func runRebalance(c *cli.Context, e *env) error {
	if c.NArg() > 0 {
		return usageErrorf("rebalance takes no arguments, got %q", c.Args().Slice())
	}
	maxMoves := c.Int("max-moves")
	if maxMoves < 0 || maxMoves > slot.Count {
		return usageErrorf("--max-moves %d is out of range: want 0..%d", maxMoves, slot.Count)
	}
	plan, err := e.rebalance(0, true)
	if err != nil {
		return err
	}
	if len(plan.Moves) == 0 {
		e.printf("leaders are balanced (table epoch %d): nothing to move\n", plan.Epoch)
		return nil
	}
	e.printf("plan at table epoch %d: %d moves\n", plan.Epoch, len(plan.Moves))
	for _, m := range plan.Moves {
		e.printf("  slot %3d: %s -> %s\n", m.Slot, m.From, m.To)
	}
	if c.Bool("dry-run") {
		return nil
	}
	if !c.Bool("wait") {
		rep, err := e.rebalance(maxMoves, false)
		if err != nil {
			return err
		}
		e.printf("started %d moves (table epoch %d)\n", len(rep.Moves), rep.Epoch)
		return nil
	}
	return e.rebalanceLoop(len(plan.Moves), maxMoves, c.Duration("wait-timeout"))
}

// rebalanceLoop keeps up to maxMoves moves in flight (0: all of the plan
// at once) until meta plans no more, printing a line per finished move. A
// slot whose move fails twice stops it: meta would keep planning it.
func (e *env) rebalanceLoop(total, maxMoves int, timeout time.Duration) error {
	start := time.Now()
	lastNote := start
	inflight := map[int]proto.SlotMove{}
	failures := map[int]int{}
	var done, failed int
	var minEpoch, lastEpoch uint64
	var stopped error
	ask := true // meta may have more moves to start
	width := len(strconv.Itoa(total))
	for {
		if ask && stopped == nil && (maxMoves == 0 || len(inflight) < maxMoves) {
			n := 0
			if maxMoves > 0 {
				n = maxMoves - len(inflight)
			}
			rep, err := e.rebalance(n, false)
			if err != nil {
				return err
			}
			minEpoch = max(minEpoch, rep.Epoch)
			for _, m := range rep.Moves {
				inflight[m.Slot] = m
			}
			ask = len(rep.Moves) > 0
		}
		if len(inflight) == 0 {
			break
		}
		if time.Since(start) > timeout {
			return fmt.Errorf("rebalance: %d moves done, %d failed, %d still moving after %v; gave up waiting (they go on)",
				done, failed, len(inflight), timeout)
		}
		if err := sleepCtx(e.c.Context, pollInterval); err != nil {
			return err
		}
		t, err := e.readTable()
		if err != nil {
			return err
		}
		if t.Epoch < minEpoch {
			continue
		}
		lastEpoch = t.Epoch
		for _, s := range sortedSlots(inflight) {
			m := inflight[s]
			ok, why := moveOutcome(t, s, m.To)
			switch {
			case ok:
				done++
				total = max(total, done+failed+len(inflight)-1)
				e.printf("[%*d/%d] slot %d: %s -> %s (%.1fs)\n", width, done, total, s, m.From, m.To, time.Since(start).Seconds())
			case why != "":
				failed++
				failures[s]++
				e.printf("slot %d: the move %s -> %s failed: %s\n", s, m.From, m.To, why)
				if failures[s] >= 2 && stopped == nil {
					stopped = fmt.Errorf("the move of slot %d failed twice; stopped", s)
				}
			default:
				continue
			}
			delete(inflight, s)
			ask, lastNote = true, time.Now()
		}
		if time.Since(lastNote) >= progressEvery {
			e.printf("  %d moves in flight (%.0fs)\n", len(inflight), time.Since(start).Seconds())
			lastNote = time.Now()
		}
	}
	e.printf("rebalance: %d moves done, %d failed, in %.1fs\n", done, failed, time.Since(start).Seconds())
	e.syncMetas(lastEpoch)
	if stopped != nil {
		return stopped
	}
	if failed > 0 {
		return fmt.Errorf("rebalance: %d moves failed", failed)
	}
	left, err := e.rebalance(0, true)
	if err != nil {
		return err
	}
	if len(left.Moves) > 0 {
		return errors.New("rebalance: meta still plans " + strconv.Itoa(len(left.Moves)) + " moves but started none of them")
	}
	return nil
}

// metaSyncWait bounds how long syncMetas waits for lagging metas.
const metaSyncWait = 2 * time.Second

// syncMetas waits until every meta given in --meta that answers serves a
// table at epoch or later, so that a TABLE read from any of them once
// registryctl has returned (a script's next step) sees the change.
// Followers lag the leader by milliseconds; one that lags longer than
// metaSyncWait gets a warning.
func (e *env) syncMetas(epoch uint64) {
	deadline := time.Now().Add(metaSyncWait)
	pending := e.meta.addrs
	for {
		var behind []string
		for _, addr := range pending {
			ctx, cancel := e.ctx()
			v, err := e.pool.call(ctx, addr, proto.CmdTable)
			cancel()
			if err != nil {
				continue // not answering: nothing to wait for
			}
			var head struct {
				Epoch uint64 `json:"epoch"`
			}
			if b, err := bulk(v, "TABLE reply"); err != nil || json.Unmarshal(b, &head) != nil || head.Epoch < epoch {
				behind = append(behind, addr)
			}
		}
		pending = behind
		if len(pending) == 0 {
			return
		}
		if time.Now().After(deadline) {
			e.warnf("meta %s does not serve table epoch %d yet", strings.Join(pending, ", "), epoch)
			return
		}
		if err := sleepCtx(e.c.Context, 20*time.Millisecond); err != nil {
			return
		}
	}
}
