package bench

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/slotreg/slotreg/proto"
	"github.com/slotreg/slotreg/sessionserver"
)

// MemoryConfig drives the memory scenario on a cluster whose processes
// the harness knows (StartLocal): publishers are added up to each of
// Steps, held open, and the resident set of every data and session
// process is read from /proc after each step, and its Go heap after a
// full collection.
type MemoryConfig struct {
	Local    *Local
	Steps    []int // cumulative publisher counts, ascending
	Services int
	Clients  int
	DataSize int
	Replicas int
	// Settle is how long to wait after a step's publishers are all in,
	// so followers have caught up before the reading.
	Settle   time.Duration
	Progress *Progress
	// Hold, when set, is called with the cluster full after the last
	// step (the scale scenario runs its load there).
	Hold func(ctx context.Context, prefix string) error
}

// RSS returns a process's resident set in bytes, from /proc/PID/status.
func RSS(pid int) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			return kb * 1024, err
		}
	}
	return 0, fmt.Errorf("pid %d: no VmRSS", pid)
}

// Memory runs the memory scenario.
func Memory(ctx context.Context, cfg MemoryConfig) (*Result, error) {
	if cfg.Local == nil {
		return nil, errors.New("memory: needs --local (the harness must know the node processes)")
	}
	if len(cfg.Steps) == 0 {
		cfg.Steps = []int{100_000, 1_000_000}
	}
	cfg.Services = cmp.Or(max(cfg.Services, 0), 10000)
	cfg.Clients = cmp.Or(max(cfg.Clients, 0), 50)
	// A session refuses a connection more publishers than its
	// --max-publishers-per-conn (100k unless set): hold the largest step
	// over enough connections.
	perConn := sessionserver.DefaultLimits().MaxPublishersPerConn
	cfg.Clients = max(cfg.Clients, (slices.Max(cfg.Steps)+perConn-1)/perConn)
	cfg.DataSize = cmp.Or(max(cfg.DataSize, 0), 32)
	cfg.Replicas = cmp.Or(max(cfg.Replicas, 0), 2)
	cfg.Settle = cmp.Or(max(cfg.Settle, 0), 3*time.Second)
	addrs := cfg.Local.Sessions()
	procs := append(cfg.Local.ByRole(proto.KindData), cfg.Local.ByRole(proto.KindSession)...)
	read := func() (map[string]int64, error) {
		m := map[string]int64{}
		for _, p := range procs {
			r, err := RSS(p.Pid())
			if err != nil {
				return nil, fmt.Errorf("memory: %s: %w", p.ID, err)
			}
			m[p.ID] = r
		}
		return m, nil
	}
	base, err := read()
	if err != nil {
		return nil, err
	}
	baseHeap, err := readHeaps(ctx, procs)
	if err != nil {
		return nil, err
	}
	res := &Result{Scenario: "memory", Target: TargetSlotreg, Params: map[string]any{
		"steps": cfg.Steps, "services": cfg.Services, "clients": cfg.Clients, "data_bytes": cfg.DataSize,
		"replicas": cfg.Replicas,
	}}
	for _, p := range procs {
		res.Add("baseline RSS "+p.ID, mib(base[p.ID]), "MiB")
		res.Add("baseline heap "+p.ID, mib(int64(baseHeap[p.ID].HeapInuse)), "MiB")
	}
	prefix := runPrefix("mem")
	var fleets []*fleet
	defer func() {
		for _, f := range fleets {
			f.Close()
		}
	}()
	from := 0
	start := time.Now()
	for _, n := range cfg.Steps {
		cfg.Progress.Logf("memory: registering publishers %d..%d", from, n-1)
		r, f, err := runRegister(ctx, RegisterConfig{
			Addrs: addrs, Clients: cfg.Clients, Publishers: n, From: from, Services: cfg.Services,
			Duration: 30 * time.Minute, OnePass: true, DataSize: cfg.DataSize, Prefix: prefix, Progress: cfg.Progress,
		})
		if f != nil {
			fleets = append(fleets, f)
		}
		if err != nil {
			return res, fmt.Errorf("memory: step %d: %w", n, err)
		}
		res.Ops += r.Ops
		res.Errors += r.Errors
		if err := waitPublishers(ctx, addrs, int64(n), 2*time.Minute); err != nil {
			return res, fmt.Errorf("memory: step %d: %w", n, err)
		}
		time.Sleep(cfg.Settle)
		now, err := read()
		if err != nil {
			return res, err
		}
		heap, err := readHeaps(ctx, procs)
		if err != nil {
			return res, err
		}
		var dataDelta, sessDelta, dataHeap, sessHeap int64
		for _, p := range procs {
			res.Add(fmt.Sprintf("%d publishers: RSS %s", n, p.ID), mib(now[p.ID]), "MiB")
			res.Add(fmt.Sprintf("%d publishers: heap %s", n, p.ID), mib(int64(heap[p.ID].HeapInuse)), "MiB")
			h := int64(heap[p.ID].HeapInuse) - int64(baseHeap[p.ID].HeapInuse)
			if p.Role == proto.KindData {
				dataDelta += now[p.ID] - base[p.ID]
				dataHeap += h
			} else {
				sessDelta += now[p.ID] - base[p.ID]
				sessHeap += h
			}
		}
		// The bytes a publisher's own strings take: registerId and data,
		// plus its share of the service name.
		rid := len("r") + len(strconv.Itoa(n-1))
		own := float64(rid+cfg.DataSize) + float64(len(serviceName(prefix, cfg.Services-1)))*float64(cfg.Services)/float64(n)
		perCopy := float64(dataDelta) / float64(n*cfg.Replicas)
		perSess := float64(sessDelta) / float64(n)
		res.Add(fmt.Sprintf("%d publishers: data nodes RSS growth per publisher per copy", n), round1(perCopy), "B")
		res.Add(fmt.Sprintf("%d publishers: of which beyond the data bytes (~%.0f B)", n, own), round1(perCopy-own), "B")
		res.Add(fmt.Sprintf("%d publishers: session RSS growth per publisher", n), round1(perSess), "B")
		res.Add(fmt.Sprintf("%d publishers: session beyond the data bytes", n), round1(perSess-own), "B")
		heapCopy := float64(dataHeap) / float64(n*cfg.Replicas)
		heapSess := float64(sessHeap) / float64(n)
		res.Add(fmt.Sprintf("%d publishers: data nodes heap growth per publisher per copy", n), round1(heapCopy), "B")
		res.Add(fmt.Sprintf("%d publishers: of which beyond the data bytes", n), round1(heapCopy-own), "B")
		res.Add(fmt.Sprintf("%d publishers: session heap growth per publisher", n), round1(heapSess), "B")
		res.Add(fmt.Sprintf("%d publishers: session heap beyond the data bytes", n), round1(heapSess-own), "B")
		from = n
	}
	res.Seconds = time.Since(start).Seconds()
	res.Rate = float64(res.Ops) / res.Seconds
	res.Note("RSS includes garbage not yet returned to the OS (GOGC=100 lets the heap grow to about twice the live set); heap is the Go heap in use (HeapInuse) right after a full collection the harness asks each node for (DSTATS GC, SLOTREG MEMORY GC), so it counts live memory only")
	if cfg.Hold != nil {
		if err := cfg.Hold(ctx, prefix); err != nil {
			return res, err
		}
	}
	return res, nil
}

func mib(b int64) float64 { return round1(float64(b) / (1 << 20)) }

func round1(v float64) float64 {
	if v < 0 {
		return -round1(-v)
	}
	return float64(int64(v*10+0.5)) / 10
}

// readHeaps asks every data and session process for its heap after a
// full collection: DSTATS GC and SLOTREG MEMORY GC.
func readHeaps(ctx context.Context, procs []*Proc) (map[string]proto.MemoryStats, error) {
	out := make(map[string]proto.MemoryStats, len(procs))
	for _, p := range procs {
		c := redis.NewClient(&redis.Options{Addr: p.Addr, Protocol: 2, DisableIdentity: true, PoolSize: 1, MaxRetries: -1,
			ReadTimeout: 30 * time.Second})
		var m *proto.MemoryStats
		if p.Role == proto.KindData {
			v, err := c.Do(ctx, proto.CmdDStats, proto.OptGC).Result()
			var st *proto.DataStats
			if err == nil {
				st, err = proto.ParseDataStats(v)
			}
			if err == nil && st.Memory == nil {
				err = errors.New("DSTATS has no memory figures")
			}
			if err != nil {
				c.Close()
				return nil, fmt.Errorf("memory: heap of %s: %w", p.ID, err)
			}
			m = st.Memory
		} else {
			v, err := c.Do(ctx, proto.CmdSlotreg, proto.SubMemory, proto.OptGC).Result()
			if err == nil {
				m, err = proto.ParseMemoryStats(v)
			}
			if err != nil {
				c.Close()
				return nil, fmt.Errorf("memory: heap of %s: %w", p.ID, err)
			}
		}
		c.Close()
		out[p.ID] = *m
	}
	return out, nil
}

// waitPublishers polls the sessions' INFO until their publishers add up
// to want.
func waitPublishers(ctx context.Context, addrs []string, want int64, within time.Duration) error {
	deadline := time.Now().Add(within)
	var got int64
	for {
		got = 0
		for _, a := range addrs {
			c := redis.NewClient(&redis.Options{Addr: a, Protocol: 2, DisableIdentity: true, PoolSize: 1, MaxRetries: -1})
			s, err := c.Do(ctx, proto.CmdInfo, "registry").Text()
			c.Close()
			if err != nil {
				return err
			}
			got += sessionPublishers(s)
		}
		if got >= want {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("sessions hold %d publishers, want %d", got, want)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// sessionPublishers reads a session's count of its connection-bound
// publishers from INFO registry: session_conn_publishers since issue 17
// named what it counts, publishers before.
func sessionPublishers(info string) int64 {
	if n, ok := infoInt(info, "session_conn_publishers"); ok {
		return n
	}
	n, _ := infoInt(info, "publishers")
	return n
}

// infoInt reads an integer field of INFO text; ok is false when it is
// not there.
func infoInt(info, key string) (int64, bool) {
	for _, line := range strings.Split(info, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok && k == key {
			n, err := strconv.ParseInt(v, 10, 64)
			return n, err == nil
		}
	}
	return 0, false
}
