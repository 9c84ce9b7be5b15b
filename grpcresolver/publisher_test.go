package grpcresolver

import (
	"maps"
	"strings"
	"testing"

	"google.golang.org/grpc/attributes"
)

func TestParseData(t *testing.T) {
	for _, tc := range []struct {
		data, addr string
		attrs      map[string]string
		err        string // a part of the error; "" for none
	}{
		{data: "127.0.0.1:8080", addr: "127.0.0.1:8080"},
		{data: " host.example:443\n", addr: "host.example:443"},
		{data: "[::1]:50051", addr: "[::1]:50051"},
		{data: `{"addr":"10.0.0.1:80"}`, addr: "10.0.0.1:80"},
		{data: `{"addr":"10.0.0.1:80","attributes":{}}`, addr: "10.0.0.1:80"},
		{data: `{"addr":"10.0.0.1:80","attributes":{"zone":"a","weight":"3"},"future":1}`, addr: "10.0.0.1:80",
			attrs: map[string]string{"zone": "a", "weight": "3"}},
		{data: "", err: "not host:port"},
		{data: "nope", err: "not host:port"},
		{data: "10.0.0.1", err: "not host:port"},
		{data: ":80", err: "no usable host"},
		{data: "a b:80", err: "no usable host"},
		{data: "http://x:80", err: "not host:port"},
		{data: "x:http", err: "not a number"},
		{data: "x:0", err: "not a number"},
		{data: "x:70000", err: "not a number"},
		{data: `{"addr":`, err: "bad JSON"},
		{data: `{"attributes":{"a":"b"}}`, err: `without "addr"`},
		{data: `{"addr":"nope"}`, err: `"addr"`},
		{data: `{"addr":"x:1","attributes":{"n":1}}`, err: "bad JSON"},
		{data: `{"addr":"x:1"} trailing`, err: "bad JSON"},
	} {
		addr, attrs, err := parseData(tc.data)
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("parseData(%q): %v", tc.data, err)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("parseData(%q) = %q, %v, error %v; want an error with %q", tc.data, addr, attrs, err, tc.err)
		case tc.err == "" && (addr != tc.addr || !maps.Equal(attrs, tc.attrs)):
			t.Errorf("parseData(%q) = %q, %v; want %q, %v", tc.data, addr, attrs, tc.addr, tc.attrs)
		}
	}
}

func TestPublisherOf(t *testing.T) {
	p := Publisher{RegisterID: "r1", Datacenter: "dc1", Zone: "z1", Attributes: map[string]string{"k": "v"}}
	a := attributes.New(attrKey{}, &pubAttr{p})
	got, ok := PublisherOf(a)
	if !ok || got.RegisterID != "r1" || got.Datacenter != "dc1" || got.Zone != "z1" || got.Attributes["k"] != "v" {
		t.Fatalf("PublisherOf = %+v, %v", got, ok)
	}
	got.Attributes["k"] = "changed"
	if again, _ := PublisherOf(a); again.Attributes["k"] != "v" {
		t.Fatal("the caller's copy of Attributes is the resolver's")
	}
	if _, ok := PublisherOf(nil); ok {
		t.Fatal("PublisherOf(nil) found a publisher")
	}
	if _, ok := PublisherOf(attributes.New("other", 1)); ok {
		t.Fatal("PublisherOf found a publisher in foreign attributes")
	}
	// gRPC compares attributes to tell whether an address changed: equal
	// records must compare equal, and never panic on the map.
	same := attributes.New(attrKey{}, &pubAttr{Publisher{RegisterID: "r1", Datacenter: "dc1", Zone: "z1", Attributes: map[string]string{"k": "v"}}})
	other := attributes.New(attrKey{}, &pubAttr{Publisher{RegisterID: "r1", Datacenter: "dc1", Zone: "z1", Attributes: map[string]string{"k": "w"}}})
	if !a.Equal(same) || a.Equal(other) {
		t.Fatalf("Equal: same %v, other %v", a.Equal(same), a.Equal(other))
	}
}
