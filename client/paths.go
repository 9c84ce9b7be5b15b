package client

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/slotreg/slotreg/proto"
)

// The path surface (DESIGN.md, "Paths"), in the shape of DolphinScheduler's
// Registry: a path /a/b/c is the publisher c under the dataInfoId /a/b,
// so an ephemeral value is a registration of this client, kept on every
// session it fails over to, while persistent and TTL values are written
// once and belong to no connection.

// Put sets path to value. An ephemeral value belongs to this client, as
// a Register does: it is set again on every session the client fails
// over to, and removed by Delete, by Close, or when the client's process
// dies. A persistent value (ephemeral false) belongs to no connection: it
// lasts until a Delete, whoever sends it.
//
// Put returns once a session has acknowledged the value. If ctx ends
// first, a new ephemeral value is withdrawn, while a new value of a path
// this client already holds ephemerally stays pending and is still sent
// (the newest value wins). errors.Is(err, proto.ErrInvalid) tells a bad
// path or value.
func (c *Client) Put(ctx context.Context, path, value string, ephemeral bool) error {
	parent, name, err := proto.SplitPath(path)
	if err != nil {
		return fmt.Errorf("put %s: %w", path, err)
	}
	if !ephemeral {
		return c.putUnbound(ctx, path, value, proto.OptPersistent)
	}
	if err := checkWrite(parent, name, value); err != nil {
		return fmt.Errorf("put %s: %w", path, err)
	}
	k := regKey{parent, name}
	for {
		r := c.held(k)
		if r == nil {
			_, err = c.Register(ctx, parent, name, value)
			if errors.Is(err, ErrAlreadyRegistered) {
				continue // another Put of the same path came first
			}
		} else if err = r.Update(ctx, value); errors.Is(err, ErrUnregistered) {
			continue // a Delete came first
		}
		if err != nil {
			return fmt.Errorf("put %s: %w", path, err)
		}
		return nil
	}
}

// PutTTL sets path to value for ttl (whole seconds, at least one): it
// belongs to no connection, and the session removes it ttl after it was
// set, unless set again.
func (c *Client) PutTTL(ctx context.Context, path, value string, ttl time.Duration) error {
	secs := int64(ttl / time.Second)
	if secs < 1 || ttl%time.Second != 0 {
		return fmt.Errorf("put %s: TTL %v is not a whole number of seconds of at least 1: %w", path, ttl, proto.ErrInvalid)
	}
	return c.putUnbound(ctx, path, value, proto.OptTTL, strconv.FormatInt(secs, 10))
}

// putUnbound sends PUT path value opts... on any connection of the
// session, after withdrawing an ephemeral value this client holds there,
// which would otherwise be set again over it after a failover.
func (c *Client) putUnbound(ctx context.Context, path, value string, opts ...string) error {
	parent, name, err := proto.SplitPath(path)
	if err == nil {
		err = checkWrite(parent, name, value)
	}
	if err == nil {
		err = c.withdraw(ctx, regKey{parent, name})
	}
	if err == nil {
		args := []any{proto.CmdPut, path, value}
		for _, o := range opts {
			args = append(args, o)
		}
		_, err = c.do(ctx, args...)
	}
	if err != nil {
		return fmt.Errorf("put %s: %w", path, err)
	}
	return nil
}

// held returns a handle on the registration of k if this client holds
// one.
func (c *Client) held(k regKey) *Registration {
	c.mu.Lock()
	defer c.mu.Unlock()
	if st := c.regs[k]; st != nil && st.want {
		return &Registration{c: c, st: st, inc: st.inc}
	}
	return nil
}

// withdraw unregisters this client's ephemeral value of k, if any, and
// waits until the session holding it has removed it.
func (c *Client) withdraw(ctx context.Context, k regKey) error {
	if r := c.held(k); r != nil {
		return r.Unregister(ctx)
	}
	return nil
}

// Get returns the value of path and its version; ok is false if the
// path has no value.
func (c *Client) Get(ctx context.Context, path string) (value string, version uint64, ok bool, err error) {
	if err := proto.CheckPath(path); err != nil {
		return "", 0, false, fmt.Errorf("get %s: %w", path, err)
	}
	v, err := c.do(ctx, proto.CmdGet, path)
	if err != nil || v == nil {
		if err != nil {
			err = fmt.Errorf("get %s: %w", path, err)
		}
		return "", 0, false, err
	}
	value, version, err = parseGet(v)
	if err != nil {
		return "", 0, false, fmt.Errorf("get %s: %w", path, err)
	}
	return value, version, true, nil
}

// parseGet reads GET's [version, value].
func parseGet(v any) (string, uint64, error) {
	a, ok := v.([]any)
	if !ok || len(a) != 2 {
		return "", 0, fmt.Errorf("malformed GET reply: want [version, value], got %T %v", v, v)
	}
	ver, ok1 := a[0].(int64)
	val, ok2 := a[1].(string)
	if !ok1 || !ok2 || ver <= 0 {
		return "", 0, fmt.Errorf("malformed GET reply: [%T %v, %T]", a[0], a[0], a[1])
	}
	return val, uint64(ver), nil
}

// Delete removes path's value, whoever set it. An ephemeral value of this
// client is withdrawn first, so it is not set again after a failover.
// Deleting a path without a value is not an error.
func (c *Client) Delete(ctx context.Context, path string) error {
	parent, name, err := proto.SplitPath(path)
	if err == nil {
		err = c.withdraw(ctx, regKey{parent, name})
	}
	if err == nil {
		_, err = c.do(ctx, proto.CmdDel, path)
	}
	if err != nil {
		return fmt.Errorf("delete %s: %w", path, err)
	}
	return nil
}

// Exists reports whether path has a value or any path below it has.
func (c *Client) Exists(ctx context.Context, path string) (bool, error) {
	if err := proto.CheckPath(path); err != nil {
		return false, fmt.Errorf("exists %s: %w", path, err)
	}
	v, err := c.do(ctx, proto.CmdExists, path)
	if err != nil {
		return false, fmt.Errorf("exists %s: %w", path, err)
	}
	n, ok := v.(int64)
	if !ok {
		return false, fmt.Errorf("exists %s: malformed reply %T", path, v)
	}
	return n == 1, nil
}

// Children returns the sorted names of path's children that have a
// value or paths below them ("/" lists the top level).
func (c *Client) Children(ctx context.Context, path string) ([]string, error) {
	if err := proto.CheckPath(path); err != nil {
		return nil, fmt.Errorf("children %s: %w", path, err)
	}
	v, err := c.do(ctx, proto.CmdChildren, path)
	if err != nil {
		return nil, fmt.Errorf("children %s: %w", path, err)
	}
	names, err := parseNames(v)
	if err != nil {
		return nil, fmt.Errorf("children %s: %w", path, err)
	}
	return names, nil
}

// parseNames reads an array of names.
func parseNames(v any) ([]string, error) {
	a, ok := v.([]any)
	if !ok && v != nil {
		return nil, fmt.Errorf("malformed reply: want an array, got %T", v)
	}
	out := make([]string, 0, len(a))
	for _, e := range a {
		s, ok := e.(string)
		if !ok {
			return nil, fmt.Errorf("malformed reply: a name is %T", e)
		}
		out = append(out, s)
	}
	return out, nil
}

// servingLink waits until the client is ready and returns its link.
func (c *Client) servingLink(ctx context.Context) (*link, error) {
	var l *link
	err := c.await(ctx, func() (bool, error) {
		if c.ready {
			l = c.link
		}
		return c.ready, nil
	})
	return l, err
}

// do sends one command on a pooled connection of the session the client
// is ready on, waiting for one until ctx ends. A null reply is (nil,
// nil). If the session is lost under the command, it is sent again on
// the next one: every command sent here may be repeated.
func (c *Client) do(ctx context.Context, args ...any) (any, error) {
	for {
		l, err := c.servingLink(ctx)
		if errors.Is(err, ErrClosed) {
			return nil, err
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrNoSession, err)
		}
		v, err := l.rdb.Do(ctx, args...).Result()
		switch {
		case err == nil:
			return v, nil
		case errors.Is(err, redis.Nil):
			return nil, nil
		}
		if serr, isReply := serverError(err); isReply {
			return nil, serr
		}
		if l.err() != nil && ctx.Err() == nil {
			continue // the link broke under us: wait for the next one
		}
		return nil, fmt.Errorf("via %s: %w", l.addr, err)
	}
}
