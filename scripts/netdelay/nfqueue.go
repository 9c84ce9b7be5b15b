package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// The nfnetlink_queue protocol (linux/netfilter/nfnetlink_queue.h), the
// part of it netdelay uses: bind a queue, copy only the packets' metadata,
// read the packets' ids and hooks, and send verdicts.
const (
	nfqnlMsgPacket  = 0
	nfqnlMsgVerdict = 1
	nfqnlMsgConfig  = 2

	nfqaPacketHdr  = 1 // in a packet: struct nfqnl_msg_packet_hdr
	nfqaVerdictHdr = 2 // in a verdict: struct nfqnl_msg_verdict_hdr

	nfqaCfgCmd      = 1 // struct nfqnl_msg_config_cmd
	nfqaCfgParams   = 2 // struct nfqnl_msg_config_params
	nfqaCfgQueueMax = 3 // __be32
	nfqaCfgMask     = 4 // __be32
	nfqaCfgFlags    = 5 // __be32

	nfqnlCfgCmdBind   = 1
	nfqnlCfgCmdUnbind = 2

	nfqnlCopyMeta = 1

	// NFQA_CFG_F_GSO: hand over GSO packets whole rather than have the
	// kernel segment them first; netdelay never looks at the payload.
	nfqaCfgFGSO = 1 << 2

	nfDrop   = 0
	nfAccept = 1

	nlaTypeMask = 0x3fff // without NLA_F_NESTED and NLA_F_NET_BYTEORDER

	hookLocalIn  = 1
	hookLocalOut = 3
)

// nfQueue is a netlink socket bound to one nfqueue of the current network
// namespace.
type nfQueue struct {
	fd     int
	num    uint16
	seq    atomic.Uint32
	closed atomic.Bool
}

// packet is what netdelay learns of a queued packet.
type packet struct {
	id   uint32
	hook uint8
}

// openQueue binds queue num, copying metadata only, with room for maxLen
// packets in the kernel. It fails when another socket holds the
// queue (EPERM, or EBUSY on old kernels), and (EPERM) without
// CAP_NET_ADMIN.
func openQueue(num uint16, maxLen uint32) (*nfQueue, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_NETFILTER)
	if err != nil {
		return nil, fmt.Errorf("netlink socket: %w", err)
	}
	q := &nfQueue{fd: fd, num: num}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("netlink bind: %w", err)
	}
	// A large receive buffer, so a burst is not lost before it is read
	// (SO_RCVBUFFORCE as root, else whatever rmem_max allows).
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 8<<20) != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 8<<20)
	}
	// Reads wake up now and then, so a shutdown is noticed.
	tv := unix.NsecToTimeval((100 * time.Millisecond).Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("SO_RCVTIMEO: %w", err)
	}

	cmd := []byte{nfqnlCfgCmdBind, 0, 0, 0} // command, pad, pf (unused since Linux 3.8)
	if err := q.config(attr(nfqaCfgCmd, cmd)); err != nil {
		unix.Close(fd)
		if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EBUSY) {
			return nil, fmt.Errorf("bind queue %d: %w (another process holds the queue in this network namespace, or this one lacks CAP_NET_ADMIN)", num, err)
		}
		return nil, fmt.Errorf("bind queue %d: %w", num, err)
	}
	params := make([]byte, 5)
	binary.BigEndian.PutUint32(params, 0xffff) // copy_range: unused with COPY_META
	params[4] = nfqnlCopyMeta
	var maxb, flags []byte
	maxb = binary.BigEndian.AppendUint32(maxb, maxLen)
	flags = binary.BigEndian.AppendUint32(flags, nfqaCfgFGSO)
	var msg []byte
	msg = append(msg, attr(nfqaCfgParams, params)...)
	msg = append(msg, attr(nfqaCfgQueueMax, maxb)...)
	msg = append(msg, attr(nfqaCfgMask, flags)...)
	msg = append(msg, attr(nfqaCfgFlags, flags)...)
	if err := q.config(msg); err != nil {
		q.Close()
		return nil, fmt.Errorf("configure queue %d: %w", num, err)
	}
	return q, nil
}

// Close unbinds the queue and closes the socket. The kernel drops the
// packets still queued to it that have no verdict.
func (q *nfQueue) Close() error {
	if q.closed.Swap(true) {
		return nil
	}
	_ = q.send(q.message(nfqnlMsgConfig, 0, attr(nfqaCfgCmd, []byte{nfqnlCfgCmdUnbind, 0, 0, 0})))
	return unix.Close(q.fd)
}

// message is one nfnetlink message of type t for the queue, with payload
// (its attributes) after the nfgenmsg header.
func (q *nfQueue) message(t uint8, flags uint16, payload []byte) []byte {
	n := unix.NLMSG_HDRLEN + 4 + len(payload)
	b := make([]byte, 0, n)
	b = binary.NativeEndian.AppendUint32(b, uint32(n))
	b = binary.NativeEndian.AppendUint16(b, unix.NFNL_SUBSYS_QUEUE<<8|uint16(t))
	b = binary.NativeEndian.AppendUint16(b, unix.NLM_F_REQUEST|flags)
	b = binary.NativeEndian.AppendUint32(b, q.seq.Add(1))
	b = binary.NativeEndian.AppendUint32(b, 0) // port id: the kernel fills it in
	b = append(b, unix.AF_UNSPEC, unix.NFNETLINK_V0)
	b = binary.BigEndian.AppendUint16(b, q.num)
	return append(b, payload...)
}

// attr is one netlink attribute, padded to 4 bytes.
func attr(t uint16, data []byte) []byte {
	n := 4 + len(data)
	b := make([]byte, 0, (n+3)&^3)
	b = binary.NativeEndian.AppendUint16(b, uint16(n))
	b = binary.NativeEndian.AppendUint16(b, t)
	b = append(b, data...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

func (q *nfQueue) send(b []byte) error {
	return unix.Sendto(q.fd, b, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK})
}

// config sends a config message and waits for the kernel's answer.
func (q *nfQueue) config(payload []byte) error {
	m := q.message(nfqnlMsgConfig, unix.NLM_F_ACK, payload)
	seq := binary.NativeEndian.Uint32(m[8:])
	if err := q.send(m); err != nil {
		return err
	}
	buf := make([]byte, 8192)
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		n, _, err := unix.Recvfrom(q.fd, buf, 0)
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return err
		}
		for b := buf[:n]; len(b) >= unix.NLMSG_HDRLEN; {
			l := int(binary.NativeEndian.Uint32(b))
			if l < unix.NLMSG_HDRLEN || l > len(b) {
				break
			}
			typ := binary.NativeEndian.Uint16(b[4:])
			if typ == unix.NLMSG_ERROR && binary.NativeEndian.Uint32(b[8:]) == seq && l >= unix.NLMSG_HDRLEN+4 {
				if e := int32(binary.NativeEndian.Uint32(b[unix.NLMSG_HDRLEN:])); e != 0 {
					return unix.Errno(-e)
				}
				return nil
			}
			b = b[(l+3)&^3:]
		}
	}
	return errors.New("no answer from the kernel")
}

// Read waits for queued packets and appends them to pkts. It returns no
// packet and no error when nothing came for a while (100 ms), so the
// caller can check whether to stop; unix.ENOBUFS means the kernel dropped
// packets it could not hand over.
func (q *nfQueue) Read(buf []byte, pkts []packet) ([]packet, error) {
	n, _, err := unix.Recvfrom(q.fd, buf, 0)
	if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
		return pkts, nil
	}
	if err != nil {
		return pkts, err
	}
	for b := buf[:n]; len(b) >= unix.NLMSG_HDRLEN; {
		l := int(binary.NativeEndian.Uint32(b))
		if l < unix.NLMSG_HDRLEN || l > len(b) {
			return pkts, fmt.Errorf("malformed netlink message (length %d of %d)", l, len(b))
		}
		typ := binary.NativeEndian.Uint16(b[4:])
		switch {
		case typ == unix.NFNL_SUBSYS_QUEUE<<8|nfqnlMsgPacket && l >= unix.NLMSG_HDRLEN+4:
			if p, ok := parsePacket(b[unix.NLMSG_HDRLEN+4 : l]); ok {
				pkts = append(pkts, p)
			}
		case typ == unix.NLMSG_ERROR && l >= unix.NLMSG_HDRLEN+4:
			if e := int32(binary.NativeEndian.Uint32(b[unix.NLMSG_HDRLEN:])); e != 0 {
				return pkts, fmt.Errorf("netlink: %w", unix.Errno(-e))
			}
		}
		b = b[min((l+3)&^3, len(b)):]
	}
	return pkts, nil
}

// parsePacket finds NFQA_PACKET_HDR among a packet message's attributes.
func parsePacket(b []byte) (packet, bool) {
	for len(b) >= 4 {
		l := int(binary.NativeEndian.Uint16(b))
		t := binary.NativeEndian.Uint16(b[2:]) & nlaTypeMask
		if l < 4 || l > len(b) {
			return packet{}, false
		}
		if t == nfqaPacketHdr && l >= 4+7 {
			return packet{id: binary.BigEndian.Uint32(b[4:]), hook: b[10]}, true
		}
		b = b[min((l+3)&^3, len(b)):]
	}
	return packet{}, false
}

// Verdict gives every packet of ids the verdict v, in that order, in as
// few writes as fit.
func (q *nfQueue) Verdict(ids []uint32, v uint32) error {
	var batch []byte
	for _, id := range ids {
		hdr := make([]byte, 0, 8)
		hdr = binary.BigEndian.AppendUint32(hdr, v)
		hdr = binary.BigEndian.AppendUint32(hdr, id)
		batch = append(batch, q.message(nfqnlMsgVerdict, 0, attr(nfqaVerdictHdr, hdr))...)
		if len(batch) > 32<<10 {
			if err := q.send(batch); err != nil {
				return err
			}
			batch = batch[:0]
		}
	}
	if len(batch) > 0 {
		return q.send(batch)
	}
	return nil
}
