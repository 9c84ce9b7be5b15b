// Package xdclink cuts and heals the link between two datacenters that
// run side by side on loopback (scripts/cluster.sh with their own
// SLOTREG_BASE_PORT), for the tests and the bench. Both datacenters
// listen on 127.0.0.1, so addresses cannot tell their packets apart:
// the second one runs under another group (Wrap), and nftables tags each
// connection that group opens with a conntrack mark from its first
// packet (Tag). A cut drops, silently (no reset), every packet of a
// connection between one datacenter's nodes and the other's meta and data
// ports, both ways, while clients keep reaching both datacenters'
// sessions. It needs root and nft; traffic stays on 127.0.0.1.
package xdclink

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
)

// Group is the group the second datacenter's processes run as.
const Group = 65534

// mark is the conntrack mark of the connections Group opened.
const mark = 0x5e

// Wrap is the command prefix that runs a process (cluster.sh, and so its
// nodes) under Group.
func Wrap() []string {
	return []string{"setpriv", "--regid=" + strconv.Itoa(Group), "--clear-groups", "--"}
}

// Link is the nftables table of one pair of datacenters.
type Link struct {
	table  string
	b1, b2 int // the datacenters' SLOTREG_BASE_PORTs; b2 runs under Group
	cut    bool
}

// Tag starts tagging the connections Group opens; call it before the
// second datacenter starts, so every one of its connections is tagged.
// base1 and base2 are the datacenters' base ports (base2 runs under
// Group).
func Tag(base1, base2 int) (*Link, error) {
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("xdclink: cutting a link between datacenters needs root")
	}
	for _, tool := range []string{"nft", "setpriv"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("xdclink: %w", err)
		}
	}
	l := &Link{table: fmt.Sprintf("slotreg_xdc_%d_%d", os.Getpid(), base2), b1: base1, b2: base2}
	return l, nft(fmt.Sprintf(`add table inet %[1]s
add chain inet %[1]s tag { type filter hook output priority 0; policy accept; }
add rule inet %[1]s tag ct state new meta skgid %[2]d ct mark set %[3]d
`, l.table, Group, mark))
}

// ports are a datacenter's meta RPC and data node ports (cluster.sh's
// layout).
func ports(b int) string { return fmt.Sprintf("%d-%d, %d-%d", b+21, b+23, b+41, b+49) }

// Cut drops every packet between the two datacenters' nodes.
func (l *Link) Cut() error {
	if l.cut {
		return nil
	}
	var b strings.Builder
	fmt.Fprintf(&b, "add chain inet %s cut { type filter hook output priority 1; policy accept; }\n", l.table)
	for _, r := range []struct{ mark, ports string }{
		{strconv.Itoa(mark), ports(l.b1)},         // the second's connections to the first
		{"!= " + strconv.Itoa(mark), ports(l.b2)}, // everyone else's to the second
	} {
		for _, dir := range []string{"dport", "sport"} {
			fmt.Fprintf(&b, "add rule inet %s cut ip daddr 127.0.0.1 ct mark %s tcp %s { %s } drop\n", l.table, r.mark, dir, r.ports)
		}
	}
	if err := nft(b.String()); err != nil {
		return err
	}
	l.cut = true
	return nil
}

// Heal undoes Cut.
func (l *Link) Heal() error {
	if !l.cut {
		return nil
	}
	l.cut = false
	return nft("delete chain inet " + l.table + " cut")
}

// Close heals and removes the table.
func (l *Link) Close() error {
	return nft("delete table inet " + l.table)
}

func nft(script string) error {
	cmd := exec.Command("nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("nft: %v: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}
