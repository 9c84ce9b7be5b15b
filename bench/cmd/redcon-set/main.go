// Command redcon-set is a yardstick, not part of slotreg: the least a Go
// server built as slotreg's session is (redcon, a goroutine per
// connection) can do per request. It answers SET and GET from one map
// and PING, nothing else, so `registry-bench register --peer
// redis=ADDR` against it measures the ceiling of that design on this
// machine, beside Redis in the same run.
package main

import (
	"flag"
	"log"
	"strings"
	"sync"

	"github.com/tidwall/redcon"
)

func main() {
	addr := flag.String("listen", "127.0.0.1:6390", "address to serve")
	flag.Parse()
	var mu sync.Mutex
	kv := make(map[string][]byte)
	err := redcon.ListenAndServe(*addr, func(conn redcon.Conn, cmd redcon.Command) {
		switch strings.ToUpper(string(cmd.Args[0])) {
		case "SET":
			if len(cmd.Args) < 3 {
				conn.WriteError("ERR wrong number of arguments for 'set'")
				return
			}
			mu.Lock()
			kv[string(cmd.Args[1])] = cmd.Args[2]
			mu.Unlock()
			conn.WriteString("OK")
		case "GET":
			if len(cmd.Args) != 2 {
				conn.WriteError("ERR wrong number of arguments for 'get'")
				return
			}
			mu.Lock()
			v, ok := kv[string(cmd.Args[1])]
			mu.Unlock()
			if !ok {
				conn.WriteNull()
				return
			}
			conn.WriteBulk(v)
		case "PING":
			conn.WriteString("PONG")
		case "FLUSHALL", "FLUSHDB":
			mu.Lock()
			clear(kv)
			mu.Unlock()
			conn.WriteString("OK")
		default:
			conn.WriteError("ERR unknown command '" + string(cmd.Args[0]) + "'")
		}
	}, nil, nil)
	if err != nil {
		log.Fatal(err)
	}
}
