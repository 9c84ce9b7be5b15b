package sessionserver

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/slotreg/slotreg/internal/obs"
	"github.com/slotreg/slotreg/metaclient"
	"github.com/slotreg/slotreg/proto"
)

// The config cache: every config key meta holds, kept current by a long
// poll (CONFWATCH) on the meta leader. Clients read it with CONFGET, watch
// keys by subscribing to config/<KEY>, and pull it over HTTP. While meta
// has no quorum (or no meta answers) the cache keeps what it has, so
// reads, new subscribers and HTTP pulls are served as before; only new
// versions wait.

// configPollWait is how long one CONFWATCH may wait on meta for a change.
const configPollWait = 5 * time.Second

// configCache is a session's copy of the config keys and the topics of
// the clients watching them.
type configCache struct {
	n   *Node
	rpc *metaclient.Leader

	mu      sync.Mutex
	rev     uint64                        // the meta revision the cache has caught up to
	synced  bool                          // a poll has succeeded at least once
	entries map[string]*proto.ConfigEntry // immutable once stored
	topics  map[string]*topic             // by key; the topic's id is config/<key>
	applied time.Time                     // when the last poll reply was applied
}

func (cc *configCache) init(n *Node) {
	cc.n = n
	cc.rpc = n.metaLeader(configPollWait+3*time.Second, 2)
	cc.entries = map[string]*proto.ConfigEntry{}
	cc.topics = map[string]*topic{}
}

// start runs the poller until the node stops.
func (cc *configCache) start() {
	cc.n.bgWg.Add(1)
	go cc.pollLoop()
}

// close releases the meta connections (the poller did when the node
// stopped); it may be called again.
func (cc *configCache) close() { cc.rpc.Close() }

// isConfigChannel reports whether a SUBSCRIBE channel names a config key.
func isConfigChannel(id string) bool { return strings.HasPrefix(id, proto.ConfigChannelPrefix) }

func (cc *configCache) pollLoop() {
	defer cc.n.bgWg.Done()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-cc.n.stop
		cancel()
		// A long poll waits in a read, which a cancelled context does
		// not interrupt: closing the connections does, so a stopping
		// session does not wait up to configPollWait for it.
		cc.rpc.Close()
	}()
	failures := obs.Failures{Log: cc.n.log, Msg: "config poll failed; serving the cached config", Recovered: "config poll recovered"}
	failures.Start(time.Now())
	backoff := 50 * time.Millisecond
	for ctx.Err() == nil {
		cc.mu.Lock()
		since := cc.rev
		cc.mu.Unlock()
		w := &proto.ConfWatch{Since: since, WaitMs: int(configPollWait / time.Millisecond)}
		v, err := cc.rpc.Do(ctx, w.Args()...)
		var rep *proto.ConfWatchReply
		if err == nil {
			rep, err = proto.ParseConfWatchReply(v)
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			failures.Fail(err, "rev", since)
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, time.Second)
			continue
		}
		failures.OK("rev", rep.Rev)
		backoff = 50 * time.Millisecond
		cc.apply(since, rep)
	}
}

// apply takes in a poll reply: each entry newer than the cached one
// replaces it and is pushed to the key's watchers.
func (cc *configCache) apply(since uint64, rep *proto.ConfWatchReply) {
	now := time.Now()
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if rep.Rev < since {
		// Only a meta group rebuilt from empty goes back. Follow it, but
		// keep every key's version monotonic: entries at or below a
		// cached version are ignored below.
		cc.n.log.Warn("meta config revision went back; keeping the cached versions", "rev", since, "metaRev", rep.Rev)
	}
	cc.rev = rep.Rev
	cc.synced = true
	cc.applied = now
	changed := 0
	for i := range rep.Entries {
		e := &rep.Entries[i]
		if cur := cc.entries[e.Key]; cur != nil && e.Version <= cur.Version {
			continue
		}
		cc.entries[e.Key] = e
		changed++
		t := cc.topics[e.Key]
		if t == nil {
			continue
		}
		t.state.Store(&pushState{version: e.Version, payload: e.AppendPushJSON(nil), received: now})
		for c := range t.subs {
			c.markPush(t)
		}
	}
	if changed > 0 {
		cc.n.log.Debug("config updated", "keys", changed, "rev", rep.Rev)
	}
}

// add subscribes c to the config channel id (config/<key>); the cached
// state, if any, is pushed at once. The caller has written the subscribe
// confirmation already, so the value follows it.
func (cc *configCache) add(c *clientConn, id string) *topic {
	key := strings.TrimPrefix(id, proto.ConfigChannelPrefix)
	cc.mu.Lock()
	defer cc.mu.Unlock()
	t := cc.topics[key]
	if t == nil {
		t = &topic{id: id, subs: make(map[*clientConn]struct{})}
		if e := cc.entries[key]; e != nil {
			t.state.Store(&pushState{version: e.Version, payload: e.AppendPushJSON(nil), received: time.Now()})
		}
		cc.topics[key] = t
	}
	t.subs[c] = struct{}{}
	if t.state.Load() != nil {
		c.markPush(t)
	}
	return t
}

// remove unsubscribes c from a config topic.
func (cc *configCache) remove(c *clientConn, t *topic) {
	key := strings.TrimPrefix(t.id, proto.ConfigChannelPrefix)
	cc.mu.Lock()
	defer cc.mu.Unlock()
	delete(t.subs, c)
	if len(t.subs) == 0 && cc.topics[key] == t {
		delete(cc.topics, key)
	}
}

// get returns the cached entry of key (nil if unknown) and whether the
// cache was ever filled.
func (cc *configCache) get(key string) (*proto.ConfigEntry, bool) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	return cc.entries[key], cc.synced
}

// ConfigRev is the meta config revision this session's cache has caught
// up to (0 before its first successful poll).
func (n *Node) ConfigRev() uint64 {
	n.cfgs.mu.Lock()
	defer n.cfgs.mu.Unlock()
	return n.cfgs.rev
}

// confGet answers CONFGET key from the cache: [version, value], or null
// for a key that does not exist or was deleted.
func (c *clientConn) confGet(ck *proto.ConfKey) {
	e, synced := c.n.cfgs.get(ck.Key)
	switch {
	case e == nil && !synced:
		c.replyErr(proto.Errorf(proto.ErrUnavailable, "config not loaded from meta yet"))
	case e == nil || e.Deleted:
		c.wr.WriteNull()
	default:
		c.wr.WriteArray(2)
		c.wr.WriteUint64(e.Version)
		c.wr.WriteBulkString(e.Value)
	}
}

// ConfigPathPrefix is the HTTP path config keys are pulled from:
// GET /v1/config/<KEY>.
const ConfigPathPrefix = "/v1/config/"

// HTTPHandlers are the session's routes for its HTTP endpoint (next to
// /metrics and the health checks), keyed by path pattern.
func (n *Node) HTTPHandlers() map[string]http.Handler {
	return map[string]http.Handler{ConfigPathPrefix: http.HandlerFunc(n.serveConfig)}
}

// serveConfig is the pull fallback: GET /v1/config/<KEY> answers the
// cached entry as JSON ({"key","version","value","deleted"}) with the
// version in X-Config-Version and as the ETag, so a poller sending
// If-None-Match gets 304 until the version changes. 404: no such key (a
// deleted one's body carries its tombstone version); 503: the cache was
// never filled from meta.
func (n *Node) serveConfig(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	key := strings.TrimPrefix(r.URL.Path, ConfigPathPrefix)
	if err := proto.CheckConfigKey(key); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	e, synced := n.cfgs.get(key)
	if e == nil && !synced {
		http.Error(w, "config not loaded from meta yet", http.StatusServiceUnavailable)
		return
	}
	if e == nil {
		e = &proto.ConfigEntry{Key: key, Deleted: true}
	}
	ver := strconv.FormatUint(e.Version, 10)
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Config-Version", ver)
	h.Set("Cache-Control", "no-cache")
	if e.Deleted {
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write(append(e.AppendPushJSON(nil), '\n'))
		return
	}
	etag := `"` + ver + `"`
	h.Set("ETag", etag)
	if r.Header.Get("If-None-Match") == etag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	_, _ = w.Write(append(e.AppendPushJSON(nil), '\n'))
}

// metaLeader is a connection to the meta leader for config and lock
// commands, apart from the heartbeat client's on purpose: a long poll must
// not hold a connection heartbeats need, and twenty clients queueing for a
// lock must not delay the heartbeat that keeps this session's lease.
func (n *Node) metaLeader(readTimeout time.Duration, poolSize int) *metaclient.Leader {
	return metaclient.NewLeader(metaclient.LeaderOptions{Metas: n.cfg.Metas, Secret: n.cfg.ClusterSecret,
		TLS: n.cfg.PeerTLS, ReadTimeout: readTimeout, PoolSize: poolSize})
}
