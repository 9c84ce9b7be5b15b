package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/slotreg/slotreg/proto"
)

// link is the client's hold on one session: a go-redis client for
// lookups and path commands, the pinned connection that carries every
// REGISTER and UNREGISTER, a PubSub for subscriptions and watches, and
// one connection per lock (see lockConn). A link is used once: when
// anything on it fails, the whole link is dropped and a new one made,
// because a replaced registration connection means lost publishers.
type link struct {
	id   uint64 // unique per Client, never 0
	addr string
	c    *Client

	rdb *redis.Client
	pin *redis.Conn
	ps  *redis.PubSub
	// pinID is the pinned connection's CLIENT ID on the session; the
	// health check compares it, so a connection go-redis replaced is
	// noticed even if no command on it ever failed.
	pinID int64
	// cluster is the session's cluster_id (INFO registry), "" from a
	// session that does not say it.
	cluster string

	ctx    context.Context // ends when the link is closed
	cancel context.CancelFunc

	mu      sync.Mutex
	conns   map[*trackedConn]struct{}
	dead    bool
	failErr error
	failed  chan struct{} // closed by fail
	// goaway is closed when the session says it is shutting down: the
	// link still works, and is kept until the next one is ready.
	goaway     chan struct{}
	goawayOnce sync.Once

	lastRecv atomic.Int64 // unix nanos of the last frame on the PubSub
	// pinChecking is set while a health check's CLIENT ID runs on the
	// pinned connection (see check); close waits for it on pinWg.
	pinChecking atomic.Bool
	pinWg       sync.WaitGroup
	// receiving is set, by the manager, once the receiver runs; recvDone
	// is closed when it has returned.
	receiving bool
	recvDone  chan struct{}

	// recon holds the parents of watched paths to look up again on this
	// link (see reconcileLoop); guarded by Client.mu. reconWake wakes
	// the reconciler.
	recon     map[reconKey]struct{}
	reconWake chan struct{}
}

func newLink(c *Client, id uint64, addr string) *link {
	l := &link{id: id, addr: addr, c: c, conns: make(map[*trackedConn]struct{}), failed: make(chan struct{}),
		goaway: make(chan struct{}), recvDone: make(chan struct{}), reconWake: make(chan struct{}, 1)}
	l.ctx, l.cancel = context.WithCancel(context.Background())
	o := &c.opts
	ro := o.redisOptions(addr, l.dial)
	ro.ReadTimeout = o.CommandTimeout
	// Lookups use the caller's deadline; the pinned connection's
	// commands carry none, so CommandTimeout bounds them.
	ro.PoolSize = o.LookupPoolSize + 1 // + the pinned connection
	// Lookups, subscriptions and watches all go through rdb, so every
	// connection it opens (its pool, the pinned one, the PubSub's) takes
	// the client's scope, set where go-redis has sent AUTH and CLIENT
	// SETNAME and before anything else.
	ro.OnConnect = o.onConnect
	l.rdb = redis.NewClient(ro)
	l.pin = l.rdb.Conn()
	l.ps = l.rdb.Subscribe(l.ctx)
	return l
}

// trackedConn is a connection the link dialed; the link closes every one
// still open when it fails, which unblocks whatever waits on them.
type trackedConn struct {
	net.Conn
	l    *link
	once sync.Once
}

func (t *trackedConn) Close() error {
	t.once.Do(func() {
		t.l.mu.Lock()
		delete(t.l.conns, t)
		t.l.mu.Unlock()
	})
	return t.Conn.Close()
}

func (l *link) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	d := net.Dialer{Timeout: l.c.opts.DialTimeout, KeepAlive: 15 * time.Second}
	nc, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	if cfg := l.c.opts.TLS; cfg != nil {
		cfg = cfg.Clone()
		if cfg.ServerName == "" {
			if host, _, err := net.SplitHostPort(addr); err == nil {
				cfg.ServerName = host
			}
		}
		tc := tls.Client(nc, cfg)
		hctx, cancel := context.WithTimeout(ctx, l.c.opts.DialTimeout)
		err := tc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			nc.Close()
			return nil, fmt.Errorf("TLS handshake with %s: %w", addr, err)
		}
		nc = tc
	}
	t := &trackedConn{Conn: nc, l: l}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.dead {
		nc.Close()
		return nil, fmt.Errorf("link to %s is closed: %w", addr, l.failErr)
	}
	l.conns[t] = struct{}{}
	return t, nil
}

// fail marks the link broken and closes its connections, so every
// goroutine blocked on one of them returns. The first error is kept.
func (l *link) fail(err error) {
	l.mu.Lock()
	if l.dead {
		l.mu.Unlock()
		return
	}
	l.dead, l.failErr = true, err
	conns := make([]*trackedConn, 0, len(l.conns))
	for t := range l.conns {
		conns = append(conns, t)
	}
	close(l.failed)
	l.mu.Unlock()
	for _, t := range conns {
		t.Conn.Close()
	}
}

// err is why the link failed, nil while it has not.
func (l *link) err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.failErr
}

// close releases everything and waits for the receiver.
func (l *link) close() {
	l.fail(errLinkClosed)
	l.cancel()
	l.pinWg.Wait() // a check's CLIENT ID ends with the context
	l.ps.Close()
	l.pin.Close()
	l.rdb.Close()
	if l.receiving {
		<-l.recvDone
	}
}

var errLinkClosed = errors.New("link closed")

// open makes the pinned connection and checks the session can serve:
// INFO must say ready:1, since a session without a slot table would only
// refuse the replay.
func (l *link) open() error {
	info, err := l.pin.Info(l.ctx, "registry").Result()
	if err != nil {
		return fmt.Errorf("session %s: INFO: %w", l.addr, err)
	}
	if !strings.Contains(info, "ready:1") {
		return fmt.Errorf("session %s: not ready (it has no slot table yet): %w", l.addr, proto.ErrUnavailable)
	}
	l.cluster = infoField(info, "cluster_id")
	if l.pinID, err = l.pin.ClientID(l.ctx).Result(); err != nil {
		return fmt.Errorf("session %s: CLIENT ID: %w", l.addr, err)
	}
	// The session's notice that it is stopping comes on this channel.
	if err := l.ps.Subscribe(l.ctx, proto.ChanGoAway); err != nil {
		return fmt.Errorf("session %s: SUBSCRIBE %s: %w", l.addr, proto.ChanGoAway, err)
	}
	l.lastRecv.Store(time.Now().UnixNano())
	return nil
}

// receive reads the PubSub until it fails. Its first read opens the
// subscription connection, which from then on is always waiting on the
// session: a session that dies is noticed here at once, even by a client
// that subscribes to nothing.
func (l *link) receive() {
	defer close(l.recvDone)
	for {
		msg, err := l.ps.Receive(l.ctx)
		if err != nil {
			l.c.failLink(l, fmt.Errorf("session %s: subscription connection: %w", l.addr, err))
			return
		}
		l.lastRecv.Store(time.Now().UnixNano())
		switch m := msg.(type) {
		case *redis.Subscription:
			switch m.Kind {
			case proto.PushSubscribe:
				l.c.confirmed(l, m.Channel)
			case proto.PushPSubscribe:
				l.c.pconfirmed(l, m.Channel)
			}
		case *redis.Message:
			if m.Pattern != "" {
				l.c.ppushed(l, m.Pattern, m.Channel, m.Payload)
				continue
			}
			if m.Channel == proto.ChanGoAway {
				l.goawayOnce.Do(func() { close(l.goaway) })
				l.c.kickManager()
				continue
			}
			l.c.pushed(m.Channel, m.Payload)
		}
	}
}

// check is the health check: the subscription connection must have
// answered a recent PING (one of the last two), and the pinned connection
// must still be the one the client registered on. The second is checked
// in the background: the pinned connection may be busy with a write that
// waits out a data leader's failover (up to the session's write timeout),
// and a session that hangs must be noticed by the first within two checks,
// well before meta evicts it and its publishers are dropped.
func (l *link) check(every time.Duration) error {
	if age := time.Since(time.Unix(0, l.lastRecv.Load())); age > 2*every {
		return fmt.Errorf("session %s: subscription connection silent for %v", l.addr, age.Round(time.Millisecond))
	}
	if err := l.ps.Ping(l.ctx); err != nil {
		return fmt.Errorf("session %s: subscription PING: %w", l.addr, err)
	}
	if l.pinChecking.CompareAndSwap(false, true) {
		l.pinWg.Add(1)
		go func() {
			defer l.pinWg.Done()
			defer l.pinChecking.Store(false)
			id, err := l.pin.ClientID(l.ctx).Result()
			switch {
			case l.ctx.Err() != nil:
			case err != nil:
				l.fail(fmt.Errorf("session %s: health check: %w", l.addr, err))
			case id != l.pinID:
				l.fail(fmt.Errorf("session %s: the registration connection changed (client id %d, was %d)", l.addr, id, l.pinID))
			}
		}()
	}
	return nil
}

// serverError turns a go-redis error reply into the proto sentinel error
// of its prefix (so errors.Is works for callers), and reports false for
// anything else: a network error, which means the link is gone.
func serverError(err error) (error, bool) {
	var re redis.Error
	if errors.As(err, &re) {
		return proto.FromRESP(re.Error()), true
	}
	return err, false
}

// permanent says whether a refused write will be refused again however
// often it is sent.
func permanent(err error) bool { return errors.Is(err, proto.ErrInvalid) }

// infoField is the value of key in INFO's "key:value" lines, "" if absent.
func infoField(info, key string) string {
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(strings.TrimRight(line, "\r\n"), key+":"); ok {
			return v
		}
	}
	return ""
}
