package main

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/slotreg/slotreg/internal/fanout"
	"github.com/slotreg/slotreg/proto"
	"github.com/slotreg/slotreg/slot"
)

func verifyCommand() *cli.Command {
	return &cli.Command{
		Name:  "verify",
		Usage: "check that sessions and slot leaders, and followers and leaders, agree; exit 3 if not",
		Description: "(a) Each session's digest of its connection-bound publishers per slot (SLOTREG DIGESTS)\n" +
			"must equal the one the slot's leader holds for that session (DSTATS). (b) Each follower of a\n" +
			"slot must hold the leader's content (the same hash) at the same op sequence. Under load the\n" +
			"nodes are read again for up to --settle, and only what differs every time is reported: a\n" +
			"follower that never reaches the leader's sequence \"lags\", one with another hash at the same\n" +
			"sequence \"differs\". A move's target is not checked while it catches up.\n" +
			"Exits 3 if anything differs, 1 if some node could not be checked, 0 if all agree.",
		Flags: []cli.Flag{
			&cli.DurationFlag{Name: "settle", Value: 2 * time.Second, Usage: "read again for up to this long before reporting a difference"},
		},
		Action: action(runVerify),
	}
}

// finding is one difference verify found, keyed so that the same
// difference seen in two rounds is recognized.
type finding struct {
	slot int
	node string // the session or the follower concerned
	kind string
}

// round is what one pass over the cluster found.
type round struct {
	table      *slot.Table
	sessions   int
	followers  int // follower copies compared
	skipped    int // move targets not checked
	diffs      map[finding]string
	unverified map[string]string // node -> why it could not be checked
}

func runVerify(c *cli.Context, e *env) error {
	if c.NArg() > 0 {
		return usageErrorf("verify takes no arguments, got %q", c.Args().Slice())
	}
	settle := c.Duration("settle")
	if _, err := e.findLeader(true); err != nil {
		return err
	}
	deadline := time.Now().Add(settle)
	hist := leaderHistory{}
	var open map[finding]string
	var last *round
	for {
		r, err := e.verifyRound(hist)
		if err != nil {
			return err
		}
		if open == nil {
			open = r.diffs
		} else {
			// Only what differs in every round is reported.
			for f := range open {
				if text, ok := r.diffs[f]; ok {
					open[f] = text
				} else {
					delete(open, f)
				}
			}
		}
		last = r
		if len(open) == 0 || time.Now().After(deadline) {
			break
		}
		if err := sleepCtx(c.Context, 200*time.Millisecond); err != nil {
			return err
		}
	}
	keys := slices.SortedFunc(maps.Keys(open), func(a, b finding) int {
		return cmp.Or(cmp.Compare(a.slot, b.slot), cmp.Compare(a.node, b.node), cmp.Compare(a.kind, b.kind))
	})
	for _, f := range keys {
		e.printf("slot %d: %s\n", f.slot, open[f])
	}
	for _, id := range sortedIDs(last.unverified) {
		e.printf("not checked: %s: %s\n", id, last.unverified[id])
	}
	if len(open) > 0 {
		return &exitError{code: exitDifferences, err: fmt.Errorf("verify: %d differences (table epoch %d)", len(open), last.table.Epoch)}
	}
	if len(last.unverified) > 0 {
		return fmt.Errorf("verify: no differences found, but %d nodes could not be checked", len(last.unverified))
	}
	note := ""
	if last.skipped > 0 {
		note = fmt.Sprintf("; %d move targets still catching up were not checked", last.skipped)
	}
	e.printf("verify: no differences: %s agree with the slot leaders, %s with their leaders (table epoch %d%s)\n",
		count(last.sessions, "session"), count(last.followers, "follower copy", "follower copies"), last.table.Epoch, note)
	return nil
}

// leaderHistory remembers, per slot, the content hash the leader reported
// at each (leader epoch, seq) it was seen at, so a follower read a moment
// later, at a sequence the leader has passed since, can still be compared.
type leaderHistory map[int]map[[2]uint64]uint64

func (h leaderHistory) add(s int, st *proto.SlotStats) {
	if h[s] == nil {
		h[s] = map[[2]uint64]uint64{}
	}
	h[s][[2]uint64{st.LeaderEpoch, st.Seq}] = st.Hash
}

func (h leaderHistory) hash(s int, st *proto.SlotStats) (uint64, bool) {
	v, ok := h[s][[2]uint64{st.LeaderEpoch, st.Seq}]
	return v, ok
}

// verifyRound reads the table, the membership, every data node's DSTATS
// and every session's digests, and compares them.
func (e *env) verifyRound(hist leaderHistory) (*round, error) {
	t, err := e.readTable()
	if err != nil {
		return nil, err
	}
	m, err := e.readMembers()
	if err != nil {
		return nil, err
	}
	var dv *dataView
	var digests map[string]*proto.SessionDigests
	var digestErrs map[string]error
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); dv = e.readDataStats(t.Nodes) }()
	go func() { defer wg.Done(); digests, digestErrs = e.readDigests(m.Sessions) }()
	wg.Wait()

	r := &round{table: t, diffs: map[finding]string{}, unverified: map[string]string{}}
	for id, err := range dv.errs {
		r.unverified[id] = oneLine(err.Error())
	}
	for id, err := range digestErrs {
		r.unverified[id] = oneLine(err.Error())
	}
	// The leaders' view, and their history for the followers.
	leaders := make([]*proto.SlotStats, slot.Count)
	for s := range slot.Count {
		a := t.Slots[s]
		if a.Leader == "" || dv.errs[a.Leader] != nil {
			continue
		}
		ls := dv.stats(a.Leader, s)
		if ls == nil || ls.Role != proto.RoleLeader {
			r.diffs[finding{s, a.Leader, "leader"}] = fmt.Sprintf("leader %s does not hold the slot as its leader", a.Leader)
			continue
		}
		leaders[s] = ls
		hist.add(s, ls)
	}
	r.sessions = len(digests)
	compareSessions(r, m, digests, leaders)
	compareFollowers(r, dv, leaders, hist)
	return r, nil
}

// compareSessions checks (a): every session's digest per slot against the
// one the slot's leader holds for it, and that no leader holds
// publishers of a session that is not a member.
func compareSessions(r *round, m *proto.Members, digests map[string]*proto.SessionDigests, leaders []*proto.SlotStats) {
	members := map[string]bool{}
	for _, s := range m.Sessions {
		members[s.ID] = true
	}
	t := r.table
	for _, id := range sortedIDs(digests) {
		sd := digests[id]
		for s := range slot.Count {
			mine := sd.Slots[s]
			ls := leaders[s]
			if ls == nil {
				if t.Slots[s].Leader == "" && mine.Count > 0 {
					r.diffs[finding{s, id, "session"}] = fmt.Sprintf("session %s has %d publishers, but the slot has no leader", id, mine.Count)
				}
				continue // a leader that did not answer is reported as not checked
			}
			if theirs := ls.Sessions[id]; theirs != mine {
				r.diffs[finding{s, id, "session"}] = fmt.Sprintf("session %s has %d publishers (digest %016x), leader %s has %d of them (digest %016x)",
					id, mine.Count, mine.Sum, t.Slots[s].Leader, theirs.Count, theirs.Sum)
			}
		}
	}
	for s, ls := range leaders {
		if ls == nil {
			continue
		}
		for _, id := range sortedIDs(ls.Sessions) {
			if d := ls.Sessions[id]; d.Count > 0 && !members[id] {
				r.diffs[finding{s, id, "stale"}] = fmt.Sprintf("leader %s holds %d publishers of session %s, which is not a member",
					t.Slots[s].Leader, d.Count, id)
			}
		}
	}
}

// compareFollowers checks (b): every follower's content against the
// leader's at the same (leader epoch, seq).
func compareFollowers(r *round, dv *dataView, leaders []*proto.SlotStats, hist leaderHistory) {
	t := r.table
	for s, ls := range leaders {
		if ls == nil {
			continue
		}
		a := t.Slots[s]
		for _, f := range a.Followers {
			if f == a.Target {
				r.skipped++
				continue
			}
			if dv.errs[f] != nil {
				continue
			}
			r.followers++
			key := finding{s, f, "follower"}
			fs := dv.stats(f, s)
			if fs == nil {
				r.diffs[key] = fmt.Sprintf("follower %s does not hold the slot", f)
				continue
			}
			if h, ok := hist.hash(s, fs); ok {
				if h != fs.Hash {
					r.diffs[key] = fmt.Sprintf("follower %s differs from leader %s at leader epoch %d seq %d (hash %016x, leader %016x)",
						f, a.Leader, fs.LeaderEpoch, fs.Seq, fs.Hash, h)
				}
				continue
			}
			r.diffs[key] = fmt.Sprintf("follower %s lags: at leader epoch %d seq %d, leader %s at leader epoch %d seq %d",
				f, fs.LeaderEpoch, fs.Seq, a.Leader, ls.LeaderEpoch, ls.Seq)
		}
	}
}

// readDigests asks every session for SLOTREG DIGESTS, in parallel.
func (e *env) readDigests(sessions []proto.Member) (map[string]*proto.SessionDigests, map[string]error) {
	out := map[string]*proto.SessionDigests{}
	errs := map[string]error{}
	var mu sync.Mutex
	fanout.ForEach(len(sessions), 0, func(i int) {
		s := sessions[i]
		ctx, cancel := e.ctx()
		defer cancel()
		v, err := e.pool.call(ctx, s.Addr, proto.CmdSlotreg, proto.SubDigests)
		var d *proto.SessionDigests
		if err == nil {
			d, err = proto.ParseSessionDigests(v)
		}
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			errs[s.ID] = fmt.Errorf("%s %s: %w", strings.ToUpper(proto.CmdSlotreg), strings.ToUpper(proto.SubDigests), err)
			return
		}
		out[s.ID] = d
	})
	return out, errs
}
