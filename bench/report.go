package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Target names in results.
const (
	TargetSlotreg = "slotreg"
	TargetRedis   = "redis"
	TargetEtcd    = "etcd"
)

// Result is one scenario's outcome against one target.
type Result struct {
	Scenario string `json:"scenario"`
	Target   string `json:"target"`
	// Params are the knobs the run used, for the record.
	Params map[string]any `json:"params,omitempty"`
	// Ops is the number of operations completed successfully (or pushes
	// received, for push scenarios); Errors those that failed.
	Ops     int64   `json:"ops"`
	Errors  int64   `json:"errors"`
	Seconds float64 `json:"seconds"`
	// Rate is Ops per second.
	Rate    float64         `json:"ops_per_sec"`
	Latency *LatencySummary `json:"latency,omitempty"`
	// Metrics are the scenario's other figures (failover windows, memory).
	Metrics []Metric `json:"metrics,omitempty"`
	Notes   []string `json:"notes,omitempty"`

	hist *Histogram
}

// Metric is one named figure.
type Metric struct {
	Name  string  `json:"name"`
	Value float64 `json:"value"`
	Unit  string  `json:"unit"`
}

// Add appends a metric.
func (r *Result) Add(name string, value float64, unit string) {
	r.Metrics = append(r.Metrics, Metric{Name: name, Value: value, Unit: unit})
}

// Note appends a free-text note.
func (r *Result) Note(format string, args ...any) {
	r.Notes = append(r.Notes, fmt.Sprintf(format, args...))
}

// Hist is the latency histogram behind Latency, nil if none.
func (r *Result) Hist() *Histogram { return r.hist }

// setHist records h as the result's latency distribution.
// timed records what a load run did over elapsed: ops and errs counted,
// their rate, and the latencies of hists merged.
func (r *Result) timed(ops, errs int64, elapsed time.Duration, hists ...*Histogram) {
	r.Ops, r.Errors, r.Seconds = ops, errs, elapsed.Seconds()
	r.Rate = float64(ops) / elapsed.Seconds()
	if len(hists) == 1 {
		r.setHist(hists[0])
		return
	}
	all := NewHistogram()
	for _, h := range hists {
		all.Merge(h)
	}
	r.setHist(all)
}

func (r *Result) setHist(h *Histogram) {
	r.hist = h
	if h != nil && h.Count() > 0 {
		r.Latency = h.Summary()
	}
}

// Machine describes where a report was taken.
type Machine struct {
	Date      string `json:"date"`
	CPUs      int    `json:"nproc"`
	MemoryMiB int64  `json:"memory_mib"`
	Commit    string `json:"commit,omitempty"`
	GoVersion string `json:"go_version"`
	// LoadAvg is /proc/loadavg's 1-minute figure when the run started:
	// other work on the machine skews the figures.
	LoadAvg string `json:"loadavg_1m"`
	Command string `json:"command"`
}

// ThisMachine fills a Machine from the running system.
func ThisMachine() Machine {
	m := Machine{
		Date:      time.Now().UTC().Format(time.RFC3339),
		CPUs:      runtime.NumCPU(),
		GoVersion: runtime.Version(),
		Command:   strings.Join(os.Args, " "),
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) >= 2 && f[0] == "MemTotal:" {
				kb, _ := strconv.ParseInt(f[1], 10, 64)
				m.MemoryMiB = kb / 1024
			}
		}
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(b)); len(f) > 0 {
			m.LoadAvg = f[0]
		}
	}
	if out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output(); err == nil {
		m.Commit = strings.TrimSpace(string(out))
	}
	return m
}

// Ratio compares slotreg with a peer on one figure.
type Ratio struct {
	Scenario string  `json:"scenario"`
	Peer     string  `json:"peer"`
	Figure   string  `json:"figure"`
	Slotreg  float64 `json:"slotreg"`
	PeerVal  float64 `json:"peer_value"`
	Ratio    float64 `json:"ratio"` // slotreg / peer
}

// Report is everything one harness run measured.
type Report struct {
	Machine Machine   `json:"machine"`
	Results []*Result `json:"results"`
	Ratios  []Ratio   `json:"ratios,omitempty"`
}

// ComputeRatios fills Ratios from the results: register throughput and
// push p99 of slotreg against each peer run of the same scenario.
func (rp *Report) ComputeRatios() {
	rp.Ratios = nil
	find := func(scenario, target string) *Result {
		for _, r := range rp.Results {
			if r.Scenario == scenario && r.Target == target {
				return r
			}
		}
		return nil
	}
	for _, peer := range []string{TargetRedis, TargetEtcd} {
		if a, b := find("register", TargetSlotreg), find("register", peer); a != nil && b != nil && b.Rate > 0 {
			rp.Ratios = append(rp.Ratios, Ratio{"register", peer, "ops/s", a.Rate, b.Rate, a.Rate / b.Rate})
		}
		if a, b := find("push-latency", TargetSlotreg), find("push-latency", peer); a != nil && b != nil &&
			a.Latency != nil && b.Latency != nil && b.Latency.P99Ms > 0 {
			rp.Ratios = append(rp.Ratios, Ratio{"push-latency", peer, "p99 ms", a.Latency.P99Ms, b.Latency.P99Ms, a.Latency.P99Ms / b.Latency.P99Ms})
		}
	}
}

// WriteJSON writes the report as indented JSON.
func (rp *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(rp)
}

// WriteTable writes the report as aligned text for people.
func (rp *Report) WriteTable(w io.Writer) error {
	m := rp.Machine
	fmt.Fprintf(w, "# %s  nproc=%d  mem=%dMiB  commit=%s  %s  loadavg(1m)=%s\n# %s\n\n", m.Date, m.CPUs, m.MemoryMiB, m.Commit, m.GoVersion, m.LoadAvg, m.Command)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\ttarget\tops\terrors\tops/s\tp50 ms\tp99 ms\tp999 ms\tmax ms\t")
	for _, r := range rp.Results {
		p50, p99, p999, mx := "-", "-", "-", "-"
		if l := r.Latency; l != nil {
			p50, p99, p999, mx = fmtMs(l.P50Ms), fmtMs(l.P99Ms), fmtMs(l.P999Ms), fmtMs(l.MaxMs)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%.0f\t%s\t%s\t%s\t%s\t\n", r.Scenario, r.Target, r.Ops, r.Errors, r.Rate, p50, p99, p999, mx)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, r := range rp.Results {
		if len(r.Metrics) == 0 && len(r.Notes) == 0 {
			continue
		}
		fmt.Fprintf(w, "\n%s (%s):\n", r.Scenario, r.Target)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		for _, mt := range r.Metrics {
			fmt.Fprintf(tw, "  %s\t%s\t%s\n", mt.Name, fmtVal(mt.Value), mt.Unit)
		}
		tw.Flush()
		for _, n := range r.Notes {
			fmt.Fprintf(w, "  note: %s\n", n)
		}
	}
	if len(rp.Ratios) > 0 {
		fmt.Fprintln(w, "\nslotreg / peer:")
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		for _, ra := range rp.Ratios {
			fmt.Fprintf(tw, "  %s\t%s\t%s\tslotreg %.4g\tpeer %.4g\tratio %.3f\n", ra.Scenario, ra.Peer, ra.Figure, ra.Slotreg, ra.PeerVal, ra.Ratio)
		}
		tw.Flush()
	}
	return nil
}

func fmtMs(v float64) string {
	switch {
	case v >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case v >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	default:
		return strconv.FormatFloat(v, 'f', 3, 64)
	}
}

// fmtVal prints a metric with the precision its size deserves.
func fmtVal(v float64) string {
	a := v
	if a < 0 {
		a = -a
	}
	switch {
	case a == float64(int64(a)) || a >= 1000:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case a >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	default:
		return strconv.FormatFloat(v, 'f', 3, 64)
	}
}
