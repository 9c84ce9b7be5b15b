package sessionserver

import (
	"fmt"
	"time"

	"github.com/slotreg/slotreg/proto"
)

// Limits bound what one client can make a session hold. Each has a
// default (DefaultLimits); an error that refuses a client over a limit
// names it as the operator sets it (the flag name).
type Limits struct {
	// MaxKeySize bounds a dataInfoId and a registerId, in bytes. It can
	// only be lowered below the protocol's 512.
	MaxKeySize int
	// MaxDataSize bounds a publisher's data, in bytes. It can only be
	// lowered below the protocol's 64 KiB.
	MaxDataSize int
	// MaxPublishersPerConn bounds the connection-bound publishers of one
	// client connection.
	MaxPublishersPerConn int
	// MaxSubscriptionsPerConn bounds the dataInfoIds one connection
	// subscribes to.
	MaxSubscriptionsPerConn int
	// MaxConnections bounds the client connections of the session.
	MaxConnections int
	// MaxOutputBuffer bounds the replies and pushes the session holds for
	// one client beyond what its socket takes. When it is full the
	// session waits for the client at most ClientStallTimeout.
	MaxOutputBuffer int
	// MaxRequestSize bounds one command, in bytes; a peer announcing more
	// is refused at the header, before it sends the bytes.
	MaxRequestSize int
	// ClientStallTimeout is how long a client may leave its output unread
	// before it is disconnected (at least 3/4 of it: the write deadline is
	// moved forward only when that little of it is left).
	ClientStallTimeout time.Duration
}

// Names of the limits, as flags and errors spell them.
const (
	LimitKeySize        = proto.LimitKeySize
	LimitDataSize       = proto.LimitDataSize
	LimitPublishers     = "max-publishers-per-conn"
	LimitSubscriptions  = "max-subscriptions-per-conn"
	LimitConnections    = "max-connections"
	LimitOutputBuffer   = "max-output-buffer"
	LimitRequestSize    = "max-request-size"
	LimitClientStall    = "client-stall-timeout"
	defaultRequestSize  = 1 << 20
	defaultOutputBuffer = 8 << 20
)

// DefaultLimits are the limits of a session that sets none.
func DefaultLimits() Limits {
	return Limits{
		MaxKeySize:              proto.MaxKeyLen,
		MaxDataSize:             proto.MaxDataLen,
		MaxPublishersPerConn:    100_000,
		MaxSubscriptionsPerConn: 100_000,
		MaxConnections:          50_000,
		MaxOutputBuffer:         defaultOutputBuffer,
		MaxRequestSize:          defaultRequestSize,
		ClientStallTimeout:      10 * time.Second,
	}
}

// fill sets every zero limit to its default.
func (l *Limits) fill() {
	d := DefaultLimits()
	set := func(v *int, def int) {
		if *v == 0 {
			*v = def
		}
	}
	set(&l.MaxKeySize, d.MaxKeySize)
	set(&l.MaxDataSize, d.MaxDataSize)
	set(&l.MaxPublishersPerConn, d.MaxPublishersPerConn)
	set(&l.MaxSubscriptionsPerConn, d.MaxSubscriptionsPerConn)
	set(&l.MaxConnections, d.MaxConnections)
	set(&l.MaxOutputBuffer, d.MaxOutputBuffer)
	set(&l.MaxRequestSize, d.MaxRequestSize)
	if l.ClientStallTimeout == 0 {
		l.ClientStallTimeout = d.ClientStallTimeout
	}
}

// Validate says which limit is out of range.
func (l *Limits) Validate() error {
	checks := []struct {
		name     string
		v, lo, h int
	}{
		{LimitKeySize, l.MaxKeySize, 1, proto.MaxKeyLen},
		{LimitDataSize, l.MaxDataSize, 1, proto.MaxDataLen},
		{LimitPublishers, l.MaxPublishersPerConn, 1, 1 << 30},
		{LimitSubscriptions, l.MaxSubscriptionsPerConn, 1, 1 << 30},
		{LimitConnections, l.MaxConnections, 1, 1 << 30},
		{LimitOutputBuffer, l.MaxOutputBuffer, 4 << 10, 1 << 30},
		// A request must hold the largest REGISTER.
		{LimitRequestSize, l.MaxRequestSize, proto.MaxDataLen + 4*proto.MaxKeyLen, 1 << 30},
	}
	for _, c := range checks {
		if c.v < c.lo || c.v > c.h {
			return fmt.Errorf("sessionserver: Limits.%s is %d, want %d..%d", c.name, c.v, c.lo, c.h)
		}
	}
	if l.ClientStallTimeout < 0 {
		return fmt.Errorf("sessionserver: Limits.%s is negative", LimitClientStall)
	}
	return nil
}

// client is the part of the limits the command parsers apply.
func (l *Limits) client() proto.ClientLimits {
	return proto.ClientLimits{MaxKeySize: l.MaxKeySize, MaxDataSize: l.MaxDataSize}
}

// StalledClients counts the clients disconnected for leaving their
// output unread past the stall timeout.
func (n *Node) StalledClients() uint64 { return n.stats.stalled.Load() }
