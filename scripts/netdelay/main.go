// Command netdelay delays (and optionally drops) the packets that
// iptables sends to an nfqueue, for scripts/cluster.sh's `slow` on kernels
// without the netem qdisc. It runs inside a node's network namespace:
//
//	ip netns exec slotreg-data1 netdelay --queue 77 --delay 100ms [--loss 5]
//
// and gives each packet of queue 77 the ACCEPT verdict DELAY after it was
// queued, or, with probability LOSS percent, the DROP verdict at once.
// Every packet is timed on its own (many are in flight at once), and
// packets are released in the order they came. Rules such as
//
//	iptables-legacy -A INPUT -i eth0 -j NFQUEUE --queue-num 77
//	iptables-legacy -A OUTPUT -o eth0 -j NFQUEUE --queue-num 77
//
// then delay each direction by DELAY. netdelay binds the queue, prints
// "ready" on stdout, and runs until SIGTERM or SIGINT; it then releases
// every packet it holds and the ones still arriving (no delay, no loss)
// until the queue has been idle for 100 ms (at most 2 s), and exits 0. It
// exits 1 if it cannot bind the queue (e.g. another process holds it) and
// 2 on bad flags.
package main

import (
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

func main() {
	fs := flag.NewFlagSet("netdelay", flag.ContinueOnError)
	queue := fs.Uint("queue", 0, "nfqueue number to bind (0-65535; required)")
	delay := fs.Duration("delay", 0, "how long to hold each packet, e.g. 100ms")
	loss := fs.Float64("loss", 0, "percentage 0..100 of packets to drop")
	maxLen := fs.Uint("max-queued", 65536, "packets the kernel may hold for netdelay; it drops the packets beyond")
	if err := fs.Parse(os.Args[1:]); err != nil {
		os.Exit(2)
	}
	if fs.NArg() > 0 || *queue > 65535 || !isFlagSet(fs, "queue") || *delay < 0 || *loss < 0 || *loss > 100 || *maxLen == 0 || *maxLen > 1<<31 {
		fmt.Fprintln(os.Stderr, "usage: netdelay --queue N --delay D [--loss PERCENT] (N 0..65535, D >= 0, PERCENT 0..100)")
		os.Exit(2)
	}
	nfq, err := openQueue(uint16(*queue), uint32(*maxLen))
	if err != nil {
		fmt.Fprintf(os.Stderr, "netdelay: %v\n", err)
		os.Exit(1)
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)

	d := newDelayer(nfq, newDelayQueue(*delay, *loss/100, rand.Float64))
	fmt.Printf("ready: queue %d, delay %v, loss %g%%\n", *queue, *delay, *loss)
	err = d.run(sig)
	if cerr := nfq.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "netdelay: %v\n", err)
		os.Exit(1)
	}
	s := d.stats()
	fmt.Printf("stopped: %d packets in (%d in, %d out), %d accepted, %d dropped\n", s.seen, s.in, s.out, s.accepted, s.dropped)
}

func isFlagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// delayer reads the queue and hands the packets to a delayQueue; a
// second goroutine gives them their verdicts as they fall due.
type delayer struct {
	nfq  *nfQueue
	q    *delayQueue
	wake chan struct{} // a packet was added, or the queue drained

	seen, in, out, accepted, dropped atomic.Uint64
}

type stats struct{ seen, in, out, accepted, dropped uint64 }

func newDelayer(nfq *nfQueue, q *delayQueue) *delayer {
	return &delayer{nfq: nfq, q: q, wake: make(chan struct{}, 1)}
}

func (d *delayer) stats() stats {
	return stats{d.seen.Load(), d.in.Load(), d.out.Load(), d.accepted.Load(), d.dropped.Load()}
}

func (d *delayer) poke() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// run serves the queue until a signal arrives, then drains it.
func (d *delayer) run(sig <-chan os.Signal) error {
	var (
		stop      atomic.Bool  // the reader ends
		draining  atomic.Bool  // a signal came: release at once
		idleSince atomic.Int64 // unix nanos of the last empty read while draining
		wg        sync.WaitGroup
		readErr   = make(chan error, 1)
	)
	wg.Add(1)
	go func() { // reader
		defer wg.Done()
		buf := make([]byte, 256<<10)
		var pkts []packet
		for !stop.Load() {
			var err error
			pkts, err = d.nfq.Read(buf, pkts[:0])
			if errors.Is(err, unix.ENOBUFS) {
				fmt.Fprintln(os.Stderr, "netdelay: the kernel dropped packets it could not hand over (ENOBUFS)")
			} else if err != nil {
				readErr <- err
				return
			}
			if len(pkts) == 0 {
				if draining.Load() && d.q.Len() == 0 {
					idleSince.CompareAndSwap(0, time.Now().UnixNano())
				}
				continue
			}
			idleSince.Store(0)
			now := time.Now()
			var drops []uint32
			for _, p := range pkts {
				d.seen.Add(1)
				switch p.hook {
				case hookLocalIn:
					d.in.Add(1)
				case hookLocalOut:
					d.out.Add(1)
				}
				if !d.q.Add(p.id, now) {
					drops = append(drops, p.id)
				}
			}
			if len(drops) > 0 {
				d.dropped.Add(uint64(len(drops)))
				if err := d.nfq.Verdict(drops, nfDrop); err != nil {
					readErr <- fmt.Errorf("drop verdict: %w", err)
					return
				}
			}
			if len(drops) < len(pkts) {
				d.poke()
			}
		}
	}()
	relErr := make(chan error, 1)
	go func() { relErr <- d.release(sig, &draining, &idleSince) }()
	var err error
	select {
	case err = <-readErr:
	case err = <-relErr:
	}
	stop.Store(true)
	wg.Wait()
	if err == nil {
		select {
		case err = <-readErr:
		default:
		}
	}
	return err
}

// release gives the packets their ACCEPT verdicts as they fall due. On a
// signal it releases every held packet, turns the delay and loss off, and
// returns once the reader has seen the queue idle for 100 ms with nothing
// held, or 2 s after the signal.
func (d *delayer) release(sig <-chan os.Signal, draining *atomic.Bool, idleSince *atomic.Int64) error {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var drainStart time.Time
	for {
		ids, next, ok := d.q.Due(time.Now())
		if len(ids) > 0 {
			d.accepted.Add(uint64(len(ids)))
			if err := d.nfq.Verdict(ids, nfAccept); err != nil {
				return fmt.Errorf("accept verdict: %w", err)
			}
		}
		if draining.Load() {
			t := idleSince.Load()
			if t != 0 && time.Since(time.Unix(0, t)) >= 100*time.Millisecond && d.q.Len() == 0 {
				return nil
			}
			if time.Since(drainStart) >= 2*time.Second {
				return nil
			}
			if !ok {
				next, ok = time.Now().Add(20*time.Millisecond), true // look at idleSince again
			}
		}
		if ok {
			timer.Reset(time.Until(next))
		} else {
			timer.Stop()
		}
		select {
		case <-d.wake:
		case <-timer.C:
		case <-sig:
			// The queue's rules are (normally) gone by now: release
			// what is held, and let the stragglers through at once.
			if !draining.Load() {
				drainStart = time.Now()
				ids := d.q.Drain()
				draining.Store(true)
				d.accepted.Add(uint64(len(ids)))
				if err := d.nfq.Verdict(ids, nfAccept); err != nil {
					return fmt.Errorf("accept verdict: %w", err)
				}
			}
		}
	}
}
