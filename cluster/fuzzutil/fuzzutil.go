// Package fuzzutil is what the fuzz targets of the session and data roles
// share: one in-process cluster per fuzzing process, and a way to send a
// fuzzer's bytes as a RESP command over a fresh connection. Test code
// only; it holds no registry logic. It lives under cluster/, not
// internal/, because it starts a cluster of every role.
package fuzzutil

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/slotreg/slotreg/cluster"
)

var (
	once    sync.Once
	shared  *cluster.Local
	control *redis.Client
	onceErr error
)

// ControlKey is the service a control client keeps one publisher in; a
// fuzz input that does not name it must never change it.
const ControlKey = "fuzz-control-svc"

// Cluster starts (once per process) a cluster with 1 meta, 2 data nodes
// and 1 session, and a control client that registered one publisher.
func Cluster() (*cluster.Local, *redis.Client, error) {
	once.Do(func() {
		dir, err := os.MkdirTemp("", "slotreg-fuzz-")
		if err != nil {
			onceErr = err
			return
		}
		shared, err = cluster.Start(cluster.Options{Dir: dir, Data: 2, Sessions: 1,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			onceErr = err
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if onceErr = shared.WaitReady(ctx); onceErr != nil {
			return
		}
		control = redis.NewClient(&redis.Options{Addr: shared.Sessions[0].Addr(), PoolSize: 1})
		onceErr = control.Do(ctx, "REGISTER", ControlKey, "control", "kept").Err()
	})
	return shared, control, onceErr
}

// SplitArgs turns fuzz bytes into at most 16 arguments, split at NUL.
func SplitArgs(b []byte) [][]byte {
	args := bytes.Split(b, []byte{0})
	if len(args) > 16 {
		args = args[:16]
	}
	return args
}

// Send writes args as one RESP array on a new connection to addr, reads
// for a moment whatever comes back, and closes the connection.
func Send(addr string, args [][]byte) error {
	nc, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return err
	}
	defer nc.Close()
	var buf bytes.Buffer
	buf.WriteString("*" + strconv.Itoa(len(args)) + "\r\n")
	for _, a := range args {
		buf.WriteString("$" + strconv.Itoa(len(a)) + "\r\n")
		buf.Write(a)
		buf.WriteString("\r\n")
	}
	nc.SetDeadline(time.Now().Add(300 * time.Millisecond))
	if _, err := nc.Write(buf.Bytes()); err != nil {
		return nil // the node may close on us; that is allowed
	}
	bufio.NewReader(nc).ReadString('\n')
	return nil
}

// CheckControl fails unless the node answers and the control publisher is
// as registered.
func CheckControl(c *redis.Client) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	v, err := c.Do(ctx, "LOOKUP", ControlKey).Slice()
	if err != nil {
		return fmt.Errorf("LOOKUP after the input: %w", err)
	}
	if got := fmt.Sprint(v[1]); got != "[[control kept]]" {
		return fmt.Errorf("control publisher changed: %s", got)
	}
	return nil
}
