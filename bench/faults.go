package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/slotreg/slotreg/proto"
)

// The faults of a cluster started with ScriptOptions.NetNS, for the
// nemesis (bench/chaos): cluster.sh's partition, slow and heal, and
// signals to a node's process. ScriptCluster satisfies chaos.Cluster.

// IDs lists the ids of the nodes of one role that are running.
func (s *ScriptCluster) IDs(ctx context.Context, role string) ([]string, error) {
	ns, err := s.Status(ctx)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, n := range ns {
		if n.Role == role && n.Up {
			out = append(out, n.ID)
		}
	}
	return out, nil
}

// Partition runs `cluster.sh partition ARGS` (A [B...] [-- C [D...]]).
func (s *ScriptCluster) Partition(ctx context.Context, args ...string) error {
	_, err := s.run(ctx, append([]string{"partition"}, args...)...)
	return err
}

// Heal undoes every partition and slowdown.
func (s *ScriptCluster) Heal(ctx context.Context) error {
	_, err := s.run(ctx, "heal")
	return err
}

// Slow delays (and, with loss set, drops a percentage of) node id's
// packets: `cluster.sh slow ID DELAY [LOSS%]`.
func (s *ScriptCluster) Slow(ctx context.Context, id, delay, loss string) error {
	args := []string{"slow", id, delay}
	if loss != "" {
		args = append(args, loss+"%")
	}
	_, err := s.run(ctx, args...)
	return err
}

// Pause stops node id's process (SIGSTOP); Resume continues it.
func (s *ScriptCluster) Pause(ctx context.Context, id string) error {
	return s.signal(ctx, id, syscall.SIGSTOP)
}

// Resume continues a paused node (SIGCONT).
func (s *ScriptCluster) Resume(ctx context.Context, id string) error {
	return s.signal(ctx, id, syscall.SIGCONT)
}

func (s *ScriptCluster) signal(ctx context.Context, id string, sig syscall.Signal) error {
	pid, err := s.Pid(ctx, id)
	if err != nil {
		return err
	}
	return syscall.Kill(pid, sig)
}

// MetaLeader names the meta node that leads: the one whose NODES reply
// carries lease ages, which only the leader keeps. Ask it while no
// partition cuts a meta off (an isolated old leader still answers so).
func (s *ScriptCluster) MetaLeader(ctx context.Context) (string, error) {
	ns, err := s.Status(ctx)
	if err != nil {
		return "", err
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		for _, n := range ns {
			if n.Role != proto.KindMeta || !n.Up {
				continue
			}
			if leads(ctx, n.Addr) {
				return n.ID, nil
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return "", fmt.Errorf("no meta leader found")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func leads(ctx context.Context, addr string) bool {
	c := redis.NewClient(&redis.Options{Addr: addr, Protocol: 2, DisableIdentity: true, MaxRetries: -1,
		DialTimeout: time.Second, ReadTimeout: time.Second})
	defer c.Close()
	s, err := c.Do(ctx, proto.CmdNodes).Text()
	if err != nil {
		return false
	}
	var m proto.Members
	if json.Unmarshal([]byte(s), &m) != nil {
		return false
	}
	for _, l := range [][]proto.Member{m.Sessions, m.Data} {
		for _, x := range l {
			if x.LastSeenMs > 0 {
				return true
			}
		}
	}
	return false
}
