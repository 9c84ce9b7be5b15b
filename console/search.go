package console

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/slotreg/slotreg/internal/fanout"
	"github.com/slotreg/slotreg/proto"
	"github.com/slotreg/slotreg/slot"
)

// Search limits: the default number of ids, and how many distinct
// searches the cache keeps.
const (
	defaultSearchLimit = 50
	maxCachedSearches  = 64
)

// searchView is GET /ui/api/search?prefix=&limit=: the dataInfoIds (and
// paths: ids starting with /) with the prefix, sorted, at most limit;
// each with its publisher count, the first publishers and its
// subscribers summed over the sessions. Ids that have subscribers but no
// publisher are listed too. Watches are the path prefixes watched
// (PSUBSCRIBE) under the prefix, with their watchers summed.
type searchView struct {
	At        int64          `json:"at"`
	Prefix    string         `json:"prefix"`
	Limit     int            `json:"limit"`
	Items     []searchItem   `json:"items"`
	Watches   map[string]int `json:"watches"`
	Truncated bool           `json:"truncated,omitempty"`
	// Errors are the nodes that did not answer: results from their slots
	// or clients are missing.
	Errors []nodeError `json:"errors,omitempty"`
	// Unready counts slots whose leaders are still reconciling them:
	// their ids are missing for now.
	Unready int `json:"unready,omitempty"`
}

type searchItem struct {
	DataInfoID  string                `json:"dataInfoId"`
	Slot        int                   `json:"slot"`
	Leader      string                `json:"leader,omitempty"`
	Version     uint64                `json:"version"`
	Publishers  int                   `json:"publishers"`
	Subscribers int                   `json:"subscribers"`
	Sample      []proto.ScanPublisher `json:"sample"`
}

type nodeError struct {
	Node  string `json:"node"`
	Error string `json:"error"`
}

type searchKey struct {
	prefix string
	limit  int
}

type cachedSearch struct {
	at time.Time
	v  *searchView
}

func (c *Console) apiSearch(r *http.Request) (any, error) {
	q := r.URL.Query()
	prefix := q.Get("prefix")
	limit := defaultSearchLimit
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil {
			return nil, badRequest("limit %q is not a whole number", l)
		}
		limit = n
	}
	if err := proto.CheckScan(prefix, limit); err != nil {
		return nil, badRequest("%s", detail(err))
	}
	k := searchKey{prefix, limit}
	c.mu.Lock()
	if e, ok := c.searches[k]; ok && time.Since(e.at) < c.cfg.CacheTTL {
		c.mu.Unlock()
		return e.v, nil
	}
	c.mu.Unlock()
	s, err := c.snapshot(r.Context())
	if err != nil {
		return nil, err
	}
	v := c.search(r, s, prefix, limit)
	c.mu.Lock()
	if len(c.searches) >= maxCachedSearches {
		clear(c.searches)
	}
	c.searches[k] = cachedSearch{at: time.Now(), v: v}
	c.mu.Unlock()
	return v, nil
}

// search asks every data node for DSCAN and every session for SLOTREG
// SUBS, in parallel, and merges their answers.
func (c *Console) search(r *http.Request, s *snapshot, prefix string, limit int) *searchView {
	v := &searchView{At: time.Now().UnixMilli(), Prefix: prefix, Limit: limit, Items: []searchItem{}, Watches: map[string]int{}}
	sc := &proto.Scan{Prefix: prefix, Limit: limit}
	members := append(sortedBy(s.Members.Data), sortedBy(s.Members.Sessions)...)
	items := map[string]*searchItem{}
	subs := map[string]int{}
	var mu sync.Mutex
	fanout.ForEach(len(members), 0, func(i int) {
		m := members[i]
		var err error
		if m.Kind == proto.KindData {
			var rep *proto.ScanReply
			var raw any
			if raw, err = c.pool.call(r.Context(), poolKey{addr: m.Addr}, sc.DScanArgs()...); err == nil {
				rep, err = proto.ParseScanReply(raw)
			}
			if err == nil {
				mu.Lock()
				for _, it := range rep.Items {
					if cur, ok := items[it.DataInfoID]; !ok || it.Version > cur.Version {
						items[it.DataInfoID] = &searchItem{DataInfoID: it.DataInfoID, Slot: it.Slot, Version: it.Version,
							Publishers: it.Publishers, Sample: it.Sample}
					}
				}
				v.Truncated = v.Truncated || rep.Truncated
				v.Unready += len(rep.Unready)
				mu.Unlock()
			}
		} else {
			var rep *proto.SessionSubs
			var raw any
			if raw, err = c.pool.call(r.Context(), poolKey{session: true, addr: m.Addr}, sc.SubsArgs()...); err == nil {
				rep, err = proto.ParseSessionSubs(raw)
			}
			if err == nil {
				mu.Lock()
				for id, n := range rep.Subs {
					subs[id] += n
				}
				for p, n := range rep.Watches {
					v.Watches[p] += n
				}
				v.Truncated = v.Truncated || rep.Truncated
				mu.Unlock()
			}
		}
		if err != nil {
			mu.Lock()
			v.Errors = append(v.Errors, nodeError{Node: m.ID, Error: fmt.Sprintf("%s %s: %s", m.Kind, m.Addr, oneLine(err))})
			mu.Unlock()
		}
	})
	for id, n := range subs {
		it, ok := items[id]
		if !ok {
			it = &searchItem{DataInfoID: id, Slot: slot.Of(id)}
			items[id] = it
		}
		it.Subscribers = n
	}
	ids := make([]string, 0, len(items))
	for id := range items {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	if len(ids) > limit {
		ids, v.Truncated = ids[:limit], true
	}
	for _, id := range ids {
		it := items[id]
		if it.Sample == nil {
			it.Sample = []proto.ScanPublisher{}
		}
		if s.Table != nil {
			it.Leader = s.Table.Leader(it.Slot)
		}
		v.Items = append(v.Items, *it)
	}
	slices.SortFunc(v.Errors, func(a, b nodeError) int { return strings.Compare(a.Node, b.Node) })
	return v
}
