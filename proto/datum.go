package proto

import (
	"encoding/binary"
	"errors"
	"fmt"
	"unicode/utf8"
)

// Limits of the data model (DESIGN.md). Session and data nodes check them
// before anything is stored.
const (
	MaxKeyLen  = 512
	MaxDataLen = 64 << 10
)

// Entry is one publisher as subscribers see it. DC and Zone say where it
// was registered: the datacenter and the zone of the session that took it
// (a PERSISTENT path has no zone).
type Entry struct {
	RegisterID string
	Data       string
	DC         string
	Zone       string
}

// Datum is a dataInfoId's publishers at a version, sorted by RegisterID.
type Datum struct {
	DataInfoID string
	Version    uint64
	Entries    []Entry
}

// AppendBinary encodes d compactly for inter-node transfer: the version
// (8 bytes, big endian), then length-prefixed strings.
func (d *Datum) AppendBinary(dst []byte) []byte {
	dst = binary.BigEndian.AppendUint64(dst, d.Version)
	dst = appendString(dst, d.DataInfoID)
	dst = binary.AppendUvarint(dst, uint64(len(d.Entries)))
	for _, e := range d.Entries {
		dst = appendString(dst, e.RegisterID)
		dst = appendString(dst, e.Data)
		dst = appendString(dst, e.DC)
		dst = appendString(dst, e.Zone)
	}
	return dst
}

// ParseDatum decodes what AppendBinary wrote. It never panics on bad input.
func ParseDatum(b []byte) (*Datum, error) {
	if len(b) < 8 {
		return nil, errors.New("datum: short buffer")
	}
	d := &Datum{Version: binary.BigEndian.Uint64(b)}
	b = b[8:]
	var err error
	if d.DataInfoID, b, err = readString(b); err != nil {
		return nil, fmt.Errorf("datum id: %w", err)
	}
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)) {
		return nil, errors.New("datum: bad entry count")
	}
	b = b[k:]
	// n is untrusted until the entries parse: grow, don't preallocate it.
	d.Entries = make([]Entry, 0, min(n, 1024))
	for i := uint64(0); i < n; i++ {
		var e Entry
		if e.RegisterID, b, err = readString(b); err != nil {
			return nil, fmt.Errorf("datum entry %d: %w", i, err)
		}
		if e.Data, b, err = readString(b); err != nil {
			return nil, fmt.Errorf("datum entry %d: %w", i, err)
		}
		if e.DC, b, err = readString(b); err != nil {
			return nil, fmt.Errorf("datum entry %d: %w", i, err)
		}
		if e.Zone, b, err = readString(b); err != nil {
			return nil, fmt.Errorf("datum entry %d: %w", i, err)
		}
		d.Entries = append(d.Entries, e)
	}
	if len(b) != 0 {
		return nil, errors.New("datum: trailing bytes")
	}
	return d, nil
}

func appendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

func readString(b []byte) (string, []byte, error) {
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)-k) {
		return "", nil, errors.New("bad string length")
	}
	return string(b[k : k+int(n)]), b[k+int(n):], nil
}

// Push is a subscriber's message decoded: what AppendPushJSON encodes,
// for clients, tools and tests that read pushes with encoding/json.
type Push struct {
	DataInfoID string      `json:"dataInfoId"`
	Version    uint64      `json:"version"`
	Publishers []PushEntry `json:"publishers"`
}

// PushEntry is one publisher in a Push.
type PushEntry struct {
	RegisterID string `json:"registerId"`
	Data       string `json:"data"`
	Datacenter string `json:"datacenter,omitempty"`
	Zone       string `json:"zone,omitempty"`
}

// AppendPushJSON encodes d as the payload subscribers receive:
// {"dataInfoId":..,"version":..,"publishers":[{"registerId":..,"data":..,
// "datacenter":..,"zone":..}]}.
// It is hand-written because it runs once per push on the hot path and
// encoding/json's reflection costs several allocations per entry.
func (d *Datum) AppendPushJSON(dst []byte) []byte {
	dst = append(dst, `{"dataInfoId":`...)
	dst = appendJSONString(dst, d.DataInfoID)
	dst = append(dst, `,"version":`...)
	dst = fmt.Appendf(dst, "%d", d.Version)
	dst = append(dst, `,"publishers":[`...)
	for i, e := range d.Entries {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `{"registerId":`...)
		dst = appendJSONString(dst, e.RegisterID)
		dst = append(dst, `,"data":`...)
		dst = appendJSONString(dst, e.Data)
		dst = append(dst, `,"datacenter":`...)
		dst = appendJSONString(dst, e.DC)
		dst = append(dst, `,"zone":`...)
		dst = appendJSONString(dst, e.Zone)
		dst = append(dst, '}')
	}
	return append(dst, "]}"...)
}

const hexDigits = "0123456789abcdef"

// appendJSONString quotes s as a JSON string. Invalid UTF-8 becomes U+FFFD,
// as encoding/json does, so the payload always parses.
func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				dst = append(dst, '\\', c)
			case c == '\n':
				dst = append(dst, '\\', 'n')
			case c == '\r':
				dst = append(dst, '\\', 'r')
			case c == '\t':
				dst = append(dst, '\\', 't')
			case c < 0x20 || c == '<' || c == '>' || c == '&':
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			default:
				dst = append(dst, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, `\ufffd`...)
		} else if r == '\u2028' || r == '\u2029' {
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
		} else {
			dst = append(dst, s[i:i+size]...)
		}
		i += size
	}
	return append(dst, '"')
}
