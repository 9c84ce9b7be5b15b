package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/slotreg/slotreg/internal/testutil"
)

// get runs GET path and returns the version and value, ok false for null.
func get(t *testing.T, c *redis.Client, path string) (version uint64, value string, ok bool) {
	t.Helper()
	v, err := c.Do(ctxT(t), "GET", path).Slice()
	if errors.Is(err, redis.Nil) {
		return 0, "", false
	}
	if err != nil || len(v) != 2 {
		t.Fatalf("GET %s: %v %v", path, v, err)
	}
	return uint64(v[0].(int64)), v[1].(string), true
}

// Paths are publishers: PUT /a/b/c is registerId c under dataInfoId /a/b,
// seen by GET and LOOKUP on another session, and REGISTER's entries are
// paths too; DEL removes whoever set the value; an EPHEMERAL value goes
// with its connection, a TTL one stays.
func TestPathsArePublishers(t *testing.T) {
	t.Parallel() // an in-process cluster of its own
	cl := mustCluster(t, 2)
	a := mustClient(t, cl.Sessions[0].Addr())
	b := mustClient(t, cl.Sessions[1].Addr())

	v, err := a.Do(ctxT(t), "PUT", "/nodes/master/10.0.0.1:5678", "up").Uint64()
	if err != nil || v == 0 {
		t.Fatalf("PUT: %d, %v", v, err)
	}
	if ver, val, ok := get(t, b, "/nodes/master/10.0.0.1:5678"); !ok || ver != v || val != "up" {
		t.Fatalf("GET via the other session: %d %q %v, want %d up", ver, val, ok, v)
	}
	if ver, set := lookup(t, b, "/nodes/master"); ver != v || fmt.Sprint(set) != "[10.0.0.1:5678=up]" {
		t.Fatalf("LOOKUP /nodes/master: %d %v", ver, set)
	}
	register(t, b, "/nodes/master", "10.0.0.2:5678", "standby")
	if _, val, ok := get(t, a, "/nodes/master/10.0.0.2:5678"); !ok || val != "standby" {
		t.Fatalf("GET of a REGISTERed path: %q %v", val, ok)
	}
	if _, _, ok := get(t, a, "/nodes/master/10.0.0.3:5678"); ok {
		t.Fatal("GET of a path never set is not null")
	}

	// DEL removes it whoever set it: 1, then 0.
	for _, want := range []int64{1, 0} {
		if n, err := a.Do(ctxT(t), "DEL", "/nodes/master/10.0.0.2:5678").Int64(); err != nil || n != want {
			t.Fatalf("DEL: %d, %v; want %d", n, err, want)
		}
	}
	if _, _, ok := get(t, b, "/nodes/master/10.0.0.2:5678"); ok {
		t.Fatal("GET after DEL is not null")
	}

	// EPHEMERAL goes with its connection; TTL does not.
	e := redis.NewClient(&redis.Options{Addr: cl.Sessions[0].Addr(), PoolSize: 1})
	if err := e.Do(ctxT(t), "PUT", "/workers/w1", "x", "EPHEMERAL").Err(); err != nil {
		t.Fatalf("PUT EPHEMERAL: %v", err)
	}
	if err := e.Do(ctxT(t), "PUT", "/workers/w2", "y", "TTL", "60").Err(); err != nil {
		t.Fatalf("PUT TTL: %v", err)
	}
	e.Close()
	testutil.Eventually(t, 10*time.Second, func() (bool, string) {
		_, _, ok := get(t, b, "/workers/w1")
		return !ok, "the ephemeral path outlived its connection"
	})
	if _, val, ok := get(t, b, "/workers/w2"); !ok || val != "y" {
		t.Fatalf("the TTL path went with its connection: %q %v", val, ok)
	}

	// Bad paths get a clear error and change nothing.
	for _, cmd := range [][]any{
		{"PUT", "nodes/x", "v"}, {"PUT", "/", "v"}, {"PUT", "/a//b", "v"}, {"GET", "/a/"},
		{"DEL", "x"}, {"PUT", "/a", "v", "FOREVER"}, {"PUT", "/a", "v", "TTL", "-1"},
	} {
		err := a.Do(ctxT(t), cmd...).Err()
		if err == nil || !strings.HasPrefix(err.Error(), "ERR ") {
			t.Errorf("%v: %v, want an ERR reply", cmd, err)
		}
	}
	if ver, set := lookup(t, b, "/nodes/master"); ver == 0 || fmt.Sprint(set) != "[10.0.0.1:5678=up]" {
		t.Fatalf("after the bad commands, LOOKUP /nodes/master: %d %v", ver, set)
	}
}

// strs runs a command whose reply is an array of strings. A -TIMEOUT or
// -UNAVAILABLE reply is asked again, as the protocol tells clients to:
// CHILDREN needs every slot's leader, and on a busy machine some slot
// may be changing leader for longer than one call waits.
func strs(t *testing.T, c *redis.Client, args ...any) []string {
	t.Helper()
	v, err := doRetry(t, c, args...).StringSlice()
	if err != nil {
		t.Fatalf("%v: %v", args, err)
	}
	return v
}

// doRetry runs a command, again while it answers -TIMEOUT or
// -UNAVAILABLE, for up to 30 s.
func doRetry(t *testing.T, c *redis.Client, args ...any) *redis.Cmd {
	t.Helper()
	var cmd *redis.Cmd
	testutil.Eventually(t, 30*time.Second, func() (bool, string) {
		cmd = c.Do(ctxT(t), args...)
		err := cmd.Err()
		retry := err != nil && (strings.HasPrefix(err.Error(), "TIMEOUT") || strings.HasPrefix(err.Error(), "UNAVAILABLE"))
		return !retry, fmt.Sprintf("%v: %v", args, err)
	})
	return cmd
}

// CHILDREN lists the names below a path whose subtrees hold a value,
// gathered from every slot; EXISTS is true for a value or any
// descendant; both follow DEL and a connection's end.
func TestChildrenAndExists(t *testing.T) {
	t.Parallel() // an in-process cluster of its own
	cl := mustCluster(t, 2)
	a := mustClient(t, cl.Sessions[0].Addr())
	b := mustClient(t, cl.Sessions[1].Addr())

	// 40 workers under two groups, so their parents hash to many slots.
	want := make([]string, 0, 20)
	for i := range 20 {
		g := fmt.Sprintf("g%02d", i)
		want = append(want, g)
		for j := range 2 {
			if err := a.Do(ctxT(t), "PUT", fmt.Sprintf("/sched/workers/%s/10.0.0.%d:1234", g, j), "idle").Err(); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := a.Do(ctxT(t), "PUT", "/sched/masters/m1", "active", "TTL", "60").Err(); err != nil {
		t.Fatal(err)
	}
	if got := strs(t, b, "CHILDREN", "/sched/workers"); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("CHILDREN /sched/workers = %v, want %v", got, want)
	}
	if got := strs(t, b, "CHILDREN", "/sched"); fmt.Sprint(got) != "[masters workers]" {
		t.Fatalf("CHILDREN /sched = %v", got)
	}
	if got := strs(t, b, "CHILDREN", "/sched/workers/g03"); fmt.Sprint(got) != "[10.0.0.0:1234 10.0.0.1:1234]" {
		t.Fatalf("CHILDREN of a leaf's parent = %v", got)
	}
	if got := strs(t, b, "CHILDREN", "/"); !slices.Contains(got, "sched") {
		t.Fatalf("CHILDREN / = %v, want sched among them", got)
	}
	exists := func(path string) int64 {
		n, err := doRetry(t, b, "EXISTS", path).Int64()
		if err != nil {
			t.Fatalf("EXISTS %s: %v", path, err)
		}
		return n
	}
	for path, want := range map[string]int64{
		"/sched": 1, "/sched/workers/g07": 1, "/sched/workers/g07/10.0.0.1:1234": 1,
		"/sched/masters/m1": 1, "/sched/nothing": 0, "/sched/workers/g07/10.0.0.9:1234": 0, "/": 1,
	} {
		if got := exists(path); got != want {
			t.Errorf("EXISTS %s = %d, want %d", path, got, want)
		}
	}

	// An emptied subtree is no child, and no longer exists.
	for j := range 2 {
		if err := a.Do(ctxT(t), "DEL", fmt.Sprintf("/sched/workers/g05/10.0.0.%d:1234", j)).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if got := strs(t, b, "CHILDREN", "/sched/workers"); slices.Contains(got, "g05") || len(got) != 19 {
		t.Fatalf("after DEL, CHILDREN /sched/workers = %v", got)
	}
	if exists("/sched/workers/g05") != 0 {
		t.Fatal("an emptied path still exists")
	}
	// Ephemeral children go with their connection.
	a.Close()
	testutil.Eventually(t, 10*time.Second, func() (bool, string) {
		got := strs(t, b, "CHILDREN", "/sched")
		return fmt.Sprint(got) == "[masters]", fmt.Sprintf("CHILDREN /sched = %v", got)
	})

	// Bad paths: a clear error.
	for _, cmd := range [][]any{
		{"CHILDREN", "sched"}, {"CHILDREN", "/sched/"}, {"EXISTS", "//"}, {"CHILDREN", "/" + strings.Repeat("x", 600)},
		{"EXISTS"}, {"CHILDREN", "/a", "/b"},
	} {
		err := b.Do(ctxT(t), cmd...).Err()
		if err == nil || !strings.HasPrefix(err.Error(), "ERR ") {
			t.Errorf("%v: %v, want an ERR reply", cmd, err)
		}
	}
}

// pathEvent is a PSUBSCRIBE event.
type pathEvent struct {
	Type, Path, Value string
	Version           uint64
}

// watchPaths PSUBSCRIBEs pattern on a session and returns the events as
// they come.
func watchPaths(t *testing.T, addr, pattern string) <-chan pathEvent {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { c.Close() })
	ps := c.PSubscribe(ctxT(t), pattern)
	t.Cleanup(func() { ps.Close() })
	if _, err := ps.Receive(ctxT(t)); err != nil {
		t.Fatalf("PSUBSCRIBE %s: %v", pattern, err)
	}
	out := make(chan pathEvent, 1024)
	go func() {
		defer close(out)
		for m := range ps.Channel() {
			var ev pathEvent
			if err := json.Unmarshal([]byte(m.Payload), &ev); err != nil || ev.Path != m.Channel || m.Pattern != pattern {
				ev = pathEvent{Type: fmt.Sprintf("BAD pattern %q channel %q payload %q: %v", m.Pattern, m.Channel, m.Payload, err)}
			}
			out <- ev
		}
	}()
	return out
}

// nextEvents reads n events, or fails at the deadline.
func nextEvents(t *testing.T, ch <-chan pathEvent, n int) []pathEvent {
	t.Helper()
	var got []pathEvent
	deadline := time.After(10 * time.Second)
	for len(got) < n {
		select {
		case ev := <-ch:
			got = append(got, ev)
		case <-deadline:
			t.Fatalf("got %d events of %d: %+v", len(got), n, got)
		}
	}
	return got
}

func brief(evs []pathEvent) string {
	var parts []string
	for _, ev := range evs {
		parts = append(parts, ev.Type+" "+ev.Path+"="+ev.Value)
	}
	slices.Sort(parts)
	return strings.Join(parts, ", ")
}

// PSUBSCRIBE prefix* sends an ADD for every path under the prefix, then
// every ADD, UPDATE and REMOVE below it, from any slot and either
// session, parents created after the watch included; versions grow per
// path; a bad pattern is refused.
func TestPrefixWatch(t *testing.T) {
	t.Parallel() // an in-process cluster of its own
	cl := mustCluster(t, 2)
	a := mustClient(t, cl.Sessions[0].Addr())
	for _, p := range []string{"/ds/nodes/master/m1", "/ds/nodes/worker/default/w1", "/ds/other/x", "/dsx/y"} {
		if err := a.Do(ctxT(t), "PUT", p, "v0").Err(); err != nil {
			t.Fatal(err)
		}
	}
	evs := watchPaths(t, cl.Sessions[1].Addr(), "/ds/nodes/*")
	if got := brief(nextEvents(t, evs, 2)); got != "ADD /ds/nodes/master/m1=v0, ADD /ds/nodes/worker/default/w1=v0" {
		t.Fatalf("initial events: %s", got)
	}
	if info, err := mustClient(t, cl.Sessions[1].Addr()).Info(ctxT(t), "registry").Result(); err != nil ||
		!strings.Contains(info, "\nsession_watched_prefixes:1\r\n") || !strings.Contains(info, "\nsession_prefix_watches:1\r\n") {
		t.Fatalf("INFO registry does not count the prefix watch: %v\n%s", err, info)
	}
	// A narrower prefix that cuts a segment, on the first session.
	narrow := watchPaths(t, cl.Sessions[0].Addr(), "/ds/nodes/wor*")
	if got := brief(nextEvents(t, narrow, 1)); got != "ADD /ds/nodes/worker/default/w1=v0" {
		t.Fatalf("initial events of /ds/nodes/wor*: %s", got)
	}

	last := map[string]uint64{}
	check := func(want string, evs []pathEvent) {
		t.Helper()
		if got := brief(evs); got != want {
			t.Fatalf("events %s, want %s", got, want)
		}
		for _, ev := range evs {
			if ev.Version <= last[ev.Path] {
				t.Fatalf("%s: version %d after %d", ev.Path, ev.Version, last[ev.Path])
			}
			last[ev.Path] = ev.Version
		}
	}
	// A parent created after the watch began, on the other session.
	b := mustClient(t, cl.Sessions[1].Addr())
	if err := b.Do(ctxT(t), "PUT", "/ds/nodes/worker/gpu/w9", "v1").Err(); err != nil {
		t.Fatal(err)
	}
	check("ADD /ds/nodes/worker/gpu/w9=v1", nextEvents(t, evs, 1))
	if got := brief(nextEvents(t, narrow, 1)); got != "ADD /ds/nodes/worker/gpu/w9=v1" {
		t.Fatalf("narrow watch: %s", got)
	}
	if err := a.Do(ctxT(t), "PUT", "/ds/nodes/worker/gpu/w9", "v2").Err(); err != nil {
		t.Fatal(err)
	}
	check("UPDATE /ds/nodes/worker/gpu/w9=v2", nextEvents(t, evs, 1))
	if err := a.Do(ctxT(t), "DEL", "/ds/nodes/master/m1").Err(); err != nil {
		t.Fatal(err)
	}
	check("REMOVE /ds/nodes/master/m1=v0", nextEvents(t, evs, 1))
	// Paths outside the prefix send nothing: the next event is the
	// ephemeral worker going with its connection.
	if err := a.Do(ctxT(t), "PUT", "/ds/other/y", "v").Err(); err != nil {
		t.Fatal(err)
	}
	e := redis.NewClient(&redis.Options{Addr: cl.Sessions[0].Addr(), PoolSize: 1})
	if err := e.Do(ctxT(t), "PUT", "/ds/nodes/worker/default/w2", "up").Err(); err != nil {
		t.Fatal(err)
	}
	check("ADD /ds/nodes/worker/default/w2=up", nextEvents(t, evs, 1))
	e.Close()
	check("REMOVE /ds/nodes/worker/default/w2=up", nextEvents(t, evs, 1))

	// Bad patterns: a clear error naming the form, and nothing watched.
	for _, pat := range []string{"/ds/nodes", "ds/*", "/a*b*", "*", "/a//*"} {
		err := b.Do(ctxT(t), "PSUBSCRIBE", pat).Err()
		if err == nil || !strings.HasPrefix(err.Error(), "ERR ") {
			t.Errorf("PSUBSCRIBE %s: %v, want an ERR reply", pat, err)
		}
	}
	if err := b.Ping(ctxT(t)).Err(); err != nil {
		t.Fatalf("after bad patterns the connection is not in subscribed mode: %v", err)
	}
}

// A PERSISTENT path outlives its connection, is seen as any path (GET,
// LOOKUP, CHILDREN, a prefix watch), cannot be overwritten by an
// ephemeral PUT or removed by UNREGISTER, and goes with DEL.
func TestPersistentPaths(t *testing.T) {
	t.Parallel() // an in-process cluster of its own
	cl := mustCluster(t, 2)
	b := mustClient(t, cl.Sessions[1].Addr())
	evs := watchPaths(t, cl.Sessions[1].Addr(), "/ds/cfg/*")
	a := redis.NewClient(&redis.Options{Addr: cl.Sessions[0].Addr(), PoolSize: 1})
	v, err := a.Do(ctxT(t), "PUT", "/ds/cfg/alert", "on", "PERSISTENT").Uint64()
	if err != nil || v == 0 {
		t.Fatalf("PUT PERSISTENT: %d %v", v, err)
	}
	if ver, val, ok := get(t, b, "/ds/cfg/alert"); !ok || val != "on" || ver != v {
		t.Fatalf("GET: %d %q %v, want %d on", ver, val, ok, v)
	}
	if evs := nextEvents(t, evs, 1); brief(evs) != "ADD /ds/cfg/alert=on" {
		t.Fatalf("prefix watch: %s", brief(evs))
	}
	a.Close() // its connection goes; the path stays
	if err := b.Do(ctxT(t), "PUT", "/ds/cfg/eph", "x").Err(); err != nil {
		t.Fatal(err)
	}
	if got := strs(t, b, "CHILDREN", "/ds/cfg"); fmt.Sprint(got) != "[alert eph]" {
		t.Fatalf("CHILDREN = %v", got)
	}
	if _, val, ok := get(t, b, "/ds/cfg/alert"); !ok || val != "on" {
		t.Fatalf("after its connection closed: %q %v", val, ok)
	}
	// Overwritten only as PERSISTENT; UNREGISTER cannot remove it.
	for _, cmd := range [][]any{{"PUT", "/ds/cfg/alert", "off"}, {"PUT", "/ds/cfg/alert", "off", "TTL", "5"},
		{"REGISTER", "/ds/cfg", "alert", "off"}, {"UNREGISTER", "/ds/cfg", "alert"}} {
		if err := b.Do(ctxT(t), cmd...).Err(); err == nil || !strings.Contains(err.Error(), "PERSISTENT") {
			t.Errorf("%v: %v, want an error naming PERSISTENT", cmd, err)
		}
	}
	if err := b.Do(ctxT(t), "PUT", "/ds/cfg/alert", "off", "PERSISTENT").Err(); err != nil {
		t.Fatal(err)
	}
	if evs := nextEvents(t, evs, 2); brief(evs) != "ADD /ds/cfg/eph=x, UPDATE /ds/cfg/alert=off" {
		t.Fatalf("prefix watch: %s", brief(evs))
	}
	// An ephemeral path made PERSISTENT stays when its connection goes.
	e := redis.NewClient(&redis.Options{Addr: cl.Sessions[0].Addr(), PoolSize: 1})
	if err := e.Do(ctxT(t), "PUT", "/ds/cfg/promoted", "1").Err(); err != nil {
		t.Fatal(err)
	}
	if err := e.Do(ctxT(t), "PUT", "/ds/cfg/promoted", "2", "PERSISTENT").Err(); err != nil {
		t.Fatal(err)
	}
	e.Close()
	for _, want := range []int64{1, 0} {
		if n, err := b.Do(ctxT(t), "DEL", "/ds/cfg/alert").Int64(); err != nil || n != want {
			t.Fatalf("DEL: %d %v, want %d", n, err, want)
		}
	}
	if _, _, ok := get(t, b, "/ds/cfg/alert"); ok {
		t.Fatal("GET after DEL is not null")
	}
	if evs := nextEvents(t, evs, 3); brief(evs) != "ADD /ds/cfg/promoted=1, REMOVE /ds/cfg/alert=off, UPDATE /ds/cfg/promoted=2" {
		t.Fatalf("prefix watch: %s", brief(evs))
	}
	if _, val, ok := get(t, b, "/ds/cfg/promoted"); !ok || val != "2" {
		t.Fatalf("the promoted path after its connection closed: %q %v", val, ok)
	}
}

// getE is GET without failing the test: ok is false for null or an
// error.
func getE(t *testing.T, c *redis.Client, path string) (uint64, string, bool) {
	ctx, cancel := context.WithTimeout(ctxT(t), 5*time.Second)
	defer cancel()
	v, err := c.Do(ctx, "GET", path).Slice()
	if err != nil || len(v) != 2 {
		return 0, "", false
	}
	ver, _ := v[0].(int64)
	val, _ := v[1].(string)
	return uint64(ver), val, true
}
