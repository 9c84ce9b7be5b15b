package client

import (
	"slices"
	"testing"
)

func TestStateString(t *testing.T) {
	for s, want := range map[State]string{StateConnected: "CONNECTED", StateDisconnected: "DISCONNECTED",
		StateReconnected: "RECONNECTED", State(0): "UNKNOWN"} {
		if got := s.String(); got != want {
			t.Errorf("State(%d).String() = %q, want %q", int(s), got, want)
		}
	}
}

// The notifier runs what is posted in order, one at a time, also what a
// call posts itself, and stops at quit.
func TestNotifierOrder(t *testing.T) {
	n := newNotifier()
	quit := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		n.run(quit)
	}()
	got := make(chan int, 8)
	for i := range 3 {
		n.post(func() {
			got <- i
			if i == 1 {
				n.post(func() { got <- 10 })
			}
		})
	}
	var seq []int
	for range 4 {
		seq = append(seq, <-got)
	}
	if want := []int{0, 1, 2, 10}; !slices.Equal(seq, want) {
		t.Fatalf("calls in order %v, want %v", seq, want)
	}
	close(quit)
	<-stopped
}
