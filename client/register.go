package client

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/slotreg/slotreg/proto"
)

// ErrAlreadyRegistered is returned by Register for a (dataInfoId,
// registerId) this client already registered: update it through its
// Registration instead.
var ErrAlreadyRegistered = errors.New("already registered by this client")

// ErrUnregistered is returned by Update on a Registration that was
// unregistered (or whose Register failed).
var ErrUnregistered = errors.New("registration was unregistered")

type regKey struct{ dataInfoID, registerID string }

// regState is the desired state of one (dataInfoId, registerId) and what
// the current link holds of it. Guarded by Client.mu.
type regState struct {
	key  regKey
	data string
	want bool // registered (true) or withdrawn
	// gen grows on every change of want or data; inc on every Register,
	// so a handle from an earlier incarnation can tell it is stale.
	gen, inc uint64
	// syncLink/syncGen: the link that has been sent generation syncGen.
	syncLink, syncGen uint64
	// onLink is the link whose connection holds the publisher, 0 none.
	onLink  uint64
	version uint64 // the session's reply to the last REGISTER
	ackGen  uint64 // the highest generation a session acknowledged
	// A generation the session refused for good, and why.
	errGen uint64
	err    error
	// A refusal that may pass: when to send again, and why it failed.
	attempts int
	retryAt  time.Time
	lastErr  error
}

func (st *regState) inSync(link uint64) bool { return st.syncLink == link && st.syncGen == st.gen }

// settle records that link needs nothing for generation gen.
func (st *regState) settle(link, gen uint64) {
	st.syncLink, st.syncGen, st.onLink = link, gen, 0
	st.ackGen = max(st.ackGen, gen)
}

// acked records the session's acknowledgement of op.
func (st *regState) acked(link uint64, op regOp, version uint64) {
	st.syncLink, st.syncGen = link, op.gen
	if op.register {
		st.onLink, st.version = link, version
	} else {
		st.onLink = 0
	}
	st.ackGen = max(st.ackGen, op.gen)
	st.attempts, st.retryAt, st.lastErr = 0, time.Time{}, nil
}

// refused records an error reply to op: for good if the request itself is
// wrong, else to be retried after a backoff.
func (st *regState) refused(link uint64, op regOp, err error, now time.Time, o *Options) {
	if permanent(err) {
		st.syncLink, st.syncGen = link, op.gen
		st.errGen, st.err = op.gen, err
		st.attempts, st.retryAt = 0, time.Time{}
		return
	}
	st.attempts++
	st.retryAt, st.lastErr = now.Add(o.backoff(st.attempts)), err
}

// regOp is one write the manager sends.
type regOp struct {
	st       *regState
	key      regKey
	gen      uint64
	register bool
	data     string
}

func (op regOp) name() string {
	if op.register {
		return "REGISTER"
	}
	return "UNREGISTER"
}

// Registration is a publisher this client registered. The client
// registers it again on every session it fails over to, until Unregister
// or Close.
type Registration struct {
	c   *Client
	st  *regState
	inc uint64
}

// DataInfoID is the service key the publisher is registered under.
func (r *Registration) DataInfoID() string { return r.st.key.dataInfoID }

// RegisterID is the publisher's id within its dataInfoId.
func (r *Registration) RegisterID() string { return r.st.key.registerID }

// Version is the datum version the session returned for the latest
// acknowledged REGISTER of this publisher.
func (r *Registration) Version() uint64 {
	r.c.mu.Lock()
	defer r.c.mu.Unlock()
	return r.st.version
}

func checkWrite(dataInfoID, registerID, data string) error {
	if err := proto.CheckKey(dataInfoID); err != nil {
		return err
	}
	if err := proto.CheckRegisterID(registerID); err != nil {
		return err
	}
	if len(data) > proto.MaxDataLen {
		return proto.Errorf(proto.ErrInvalid, "data is %d bytes, over the %d byte limit", len(data), proto.MaxDataLen)
	}
	return nil
}

// Register publishes data as registerId under dataInfoId, bound to this
// client: it stays registered, across session failovers, until
// Unregister or Close. It returns once a session has acknowledged it
// (after which any session's Lookup sees it). If ctx ends first, or the
// session refuses it, the registration is withdrawn and the error
// returned; errors.Is(err, proto.ErrInvalid) tells bad input.
func (c *Client) Register(ctx context.Context, dataInfoID, registerID, data string) (*Registration, error) {
	if err := checkWrite(dataInfoID, registerID, data); err != nil {
		return nil, fmt.Errorf("register %s %s: %w", dataInfoID, registerID, err)
	}
	k := regKey{dataInfoID, registerID}
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return nil, ErrClosed
	}
	st := c.regs[k]
	if st != nil && st.want {
		c.mu.Unlock()
		return nil, fmt.Errorf("register %s %s: %w", dataInfoID, registerID, ErrAlreadyRegistered)
	}
	if st == nil {
		st = &regState{key: k}
		c.regs[k] = st
	}
	st.inc++
	st.want, st.data = true, data
	st.gen++
	r := &Registration{c: c, st: st, inc: st.inc}
	gen := st.gen
	c.mu.Unlock()
	c.kickManager()
	if err := r.await(ctx, gen); err != nil {
		c.mu.Lock()
		if st.inc == r.inc && st.want {
			st.want = false
			st.gen++
		}
		c.mu.Unlock()
		c.kickManager()
		return nil, fmt.Errorf("register %s %s: %w", dataInfoID, registerID, err)
	}
	return r, nil
}

// await waits until generation gen of the registration is acknowledged
// or refused for good.
func (r *Registration) await(ctx context.Context, gen uint64) error {
	st := r.st
	return r.c.await(ctx, func() (bool, error) {
		if st.ackGen >= gen {
			return true, nil
		}
		if st.errGen >= gen {
			return true, st.err
		}
		return false, nil
	})
}

// Update replaces the registration's data and returns once a session has
// acknowledged it. If ctx ends first the update stays pending and is
// still sent; the newest data always wins.
func (r *Registration) Update(ctx context.Context, data string) error {
	k := r.st.key
	if err := checkWrite(k.dataInfoID, k.registerID, data); err != nil {
		return fmt.Errorf("update %s %s: %w", k.dataInfoID, k.registerID, err)
	}
	c := r.c
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return ErrClosed
	}
	if r.st.inc != r.inc || !r.st.want {
		c.mu.Unlock()
		return fmt.Errorf("update %s %s: %w", k.dataInfoID, k.registerID, ErrUnregistered)
	}
	r.st.data = data
	r.st.gen++
	gen := r.st.gen
	c.mu.Unlock()
	c.kickManager()
	if err := r.await(ctx, gen); err != nil {
		return fmt.Errorf("update %s %s: %w", k.dataInfoID, k.registerID, err)
	}
	return nil
}

// Unregister withdraws the registration and returns once the session
// holding it has removed it. When no session holds it (the client is
// between sessions) there is nothing to remove and it returns at once.
// Unregistering twice is not an error.
func (r *Registration) Unregister(ctx context.Context) error {
	c := r.c
	k := r.st.key
	c.mu.Lock()
	if r.st.inc != r.inc || !r.st.want {
		c.mu.Unlock()
		return nil
	}
	if c.closing {
		c.mu.Unlock()
		return ErrClosed
	}
	st := r.st
	st.want = false
	st.gen++
	gen := st.gen
	if c.link == nil || st.onLink != c.link.id {
		// The connection that held it is gone, and with it the publisher.
		// An in-flight REGISTER on a new link still gets its UNREGISTER.
		st.ackGen = max(st.ackGen, gen)
	}
	c.mu.Unlock()
	c.kickManager()
	if err := r.await(ctx, gen); err != nil {
		return fmt.Errorf("unregister %s %s: %w", k.dataInfoID, k.registerID, err)
	}
	return nil
}
