package console

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/slotreg/slotreg/cluster"
	"github.com/slotreg/slotreg/internal/netsec"
	"github.com/slotreg/slotreg/internal/testutil"
	"github.com/slotreg/slotreg/sessionserver"
)

const (
	testSecret   = "cluster-s3cret"
	testAdmin    = "admin-pw"
	testClientPW = "client-pw"
)

// mustCluster starts an in-process cluster with a cluster secret and a
// client password on its session, and a console on it.
func mustCluster(t *testing.T, admin string) (*cluster.Local, *httptest.Server) {
	t.Helper()
	auth, err := sessionserver.NewAuth(testClientPW, "")
	if err != nil {
		t.Fatal(err)
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	cl, err := cluster.Start(cluster.Options{Dir: t.TempDir(), Data: 2, Sessions: 1, Heartbeat: 100 * time.Millisecond,
		Lease: 2 * time.Second, Secret: netsec.Secret{Current: testSecret}, SessionAuth: auth, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := cl.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	con, err := New(Config{Metas: cl.Metas(), Secret: testSecret, AdminPassword: admin, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(con.Close)
	mux := http.NewServeMux()
	mux.Handle("/ui/", con.Handler())
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return cl, srv
}

func request(t *testing.T, srv *httptest.Server, method, path, token, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("%s %s: %d %q is not a JSON object", method, path, resp.StatusCode, b)
	}
	return resp.StatusCode, out
}

func TestAPI(t *testing.T) {
	t.Parallel()
	cl, srv := mustCluster(t, testAdmin)

	t.Run("page", func(t *testing.T) {
		for _, p := range []string{"/ui/", "/ui/app.js", "/ui/app.css"} {
			resp, err := http.Get(srv.URL + p)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || len(b) == 0 || !strings.Contains(resp.Header.Get("Content-Security-Policy"), "default-src 'self'") {
				t.Errorf("GET %s: %d, %d bytes, CSP %q", p, resp.StatusCode, len(b), resp.Header.Get("Content-Security-Policy"))
			}
		}
	})

	t.Run("overview", func(t *testing.T) {
		testutil.Eventually(t, 10*time.Second, func() (bool, string) {
			code, o := request(t, srv, "GET", "/ui/api/overview", "", "")
			nodes, _ := o["nodes"].([]any)
			healthy := 0
			for _, n := range nodes {
				if n.(map[string]any)["healthy"] == true {
					healthy++
				}
			}
			slots, _ := o["slots"].([]any)
			return code == 200 && len(nodes) == 4 && healthy == 4 && len(slots) == 256 && o["metaLeader"] == cl.Meta.RPCAddr(),
				"overview " + mustJSON(o)
		})
		code, st := request(t, srv, "GET", "/ui/api/stats", "", "")
		if code != 200 || len(st["data"].([]any)) != 2 || len(st["sessions"].([]any)) != 1 ||
			st["sessions"].([]any)[0].(map[string]any)["error"] != nil {
			t.Errorf("stats: %d %s", code, mustJSON(st))
		}
	})

	t.Run("search", func(t *testing.T) {
		ctx := context.Background()
		pub := redis.NewClient(&redis.Options{Addr: cl.Sessions[0].Addr(), Password: testClientPW})
		defer pub.Close()
		if err := pub.Do(ctx, "REGISTER", "console.svc#@#a", "r1", "10.0.0.1:8080").Err(); err != nil {
			t.Fatal(err)
		}
		if err := pub.Do(ctx, "REGISTER", "console.svc#@#b", "r1", "10.0.0.2:8080").Err(); err != nil {
			t.Fatal(err)
		}
		sub := redis.NewClient(&redis.Options{Addr: cl.Sessions[0].Addr(), Password: testClientPW})
		defer sub.Close()
		ps := sub.Subscribe(ctx, "console.svc#@#a")
		defer ps.Close()
		if _, err := ps.Receive(ctx); err != nil {
			t.Fatal(err)
		}
		testutil.Eventually(t, 10*time.Second, func() (bool, string) {
			code, r := request(t, srv, "GET", "/ui/api/search?prefix=console.svc&limit=10", "", "")
			items, _ := r["items"].([]any)
			if code != 200 || len(items) != 2 {
				return false, mustJSON(r)
			}
			a := items[0].(map[string]any)
			sample := a["sample"].([]any)
			return a["dataInfoId"] == "console.svc#@#a" && a["publishers"] == 1.0 && a["subscribers"] == 1.0 &&
				len(sample) == 1 && sample[0].(map[string]any)["data"] == "10.0.0.1:8080" && a["leader"] != "", mustJSON(r)
		})
		code, r := request(t, srv, "GET", "/ui/api/search?prefix=console.svc&limit=1", "", "")
		if code != 200 || len(r["items"].([]any)) != 1 || r["truncated"] != true {
			t.Errorf("limit 1: %d %s", code, mustJSON(r))
		}
	})

	t.Run("bad input", func(t *testing.T) {
		for _, tc := range []struct {
			method, path, body string
			want               int
			says               string
		}{
			{"GET", "/ui/api/search?limit=0", "", 400, "limit"},
			{"GET", "/ui/api/search?limit=x", "", 400, "limit"},
			{"GET", "/ui/api/search?prefix=" + strings.Repeat("k", 600), "", 400, "prefix"},
			{"GET", "/ui/api/config/history", "", 400, "key"},
			{"GET", "/ui/api/config/history?key=a%20b", "", 400, "key"},
			{"GET", "/ui/api/nosuch", "", 404, "no API endpoint"},
			{"POST", "/ui/api/overview", "", 405, "GET"},
			{"GET", "/ui/api/move", "", 405, "POST"},
			{"POST", "/ui/api/move", `{"slot":300,"to":"data1"}`, 400, "slot"},
			{"POST", "/ui/api/move", `{"to":"data1"}`, 400, "slot is missing"},
			{"POST", "/ui/api/move", `{"slot":1}`, 400, "to is missing"},
			{"POST", "/ui/api/move", `{"slot":1,"to":"data1","x":1}`, 400, "unknown field"},
			{"POST", "/ui/api/move", `{"slot":`, 400, "JSON"},
			{"POST", "/ui/api/move", `{"slot":1,"to":"nosuch"}`, 400, "nosuch"},
			{"POST", "/ui/api/drain", `{}`, 400, "node"},
			{"POST", "/ui/api/rebalance", `{"maxMoves":-1}`, 400, ""},
			{"POST", "/ui/api/move", `{"slot":1,"to":"` + strings.Repeat("x", 5000) + `"}`, 400, "over"},
		} {
			code, r := request(t, srv, tc.method, tc.path, testAdmin, tc.body)
			msg, _ := r["error"].(string)
			if code != tc.want || msg == "" || !strings.Contains(msg, tc.says) {
				t.Errorf("%s %.60s %.60s: %d %q, want %d saying %q", tc.method, tc.path, tc.body, code, msg, tc.want, tc.says)
			}
		}
	})

	t.Run("action auth", func(t *testing.T) {
		dry := `{"dryRun":true}`
		for _, tc := range []struct {
			token string
			want  int
		}{
			{"", 401},
			{"wrong", 401},
			{testClientPW, 401},
			{testAdmin, 200},
			{testSecret, 200},
		} {
			code, r := request(t, srv, "POST", "/ui/api/rebalance", tc.token, dry)
			if code != tc.want || (code == 401 && !strings.Contains(r["error"].(string), "admin password")) {
				t.Errorf("token %q: %d %s, want %d", tc.token, code, mustJSON(r), tc.want)
			}
		}
		// A real action: move a slot away from its leader, and back.
		tab := cl.Meta.Table()
		s := 7
		from := tab.Slots[s].Leader
		to := "data1"
		if from == to {
			to = "data2"
		}
		code, r := request(t, srv, "POST", "/ui/api/move", testAdmin, `{"slot":7,"to":"`+to+`"}`)
		if code != 200 || r["ok"] != true {
			t.Fatalf("move: %d %s", code, mustJSON(r))
		}
		testutil.Eventually(t, 15*time.Second, func() (bool, string) {
			_, o := request(t, srv, "GET", "/ui/api/overview", "", "")
			sl := o["slots"].([]any)[s].(map[string]any)
			return sl["leader"] == to && sl["target"] == nil, mustJSON(sl)
		})
		if code, r := request(t, srv, "POST", "/ui/api/drain", testSecret, `{"node":"nosuch"}`); code != 400 {
			t.Errorf("drain nosuch: %d %s", code, mustJSON(r))
		}
	})
}

// With neither an admin password nor a cluster secret, actions are
// refused with how to enable them; reads still work.
func TestActionsDisabledWithoutCredentials(t *testing.T) {
	t.Parallel()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	cl, err := cluster.Start(cluster.Options{Dir: t.TempDir(), Data: 1, Sessions: 1, Heartbeat: 100 * time.Millisecond, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	con, err := New(Config{Metas: cl.Metas(), Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(con.Close)
	srv := httptest.NewServer(con.Handler())
	t.Cleanup(srv.Close)
	code, r := request(t, srv, "POST", "/ui/api/rebalance", "anything", `{"dryRun":true}`)
	if code != 403 || !strings.Contains(r["error"].(string), "--admin-password") {
		t.Errorf("rebalance: %d %s", code, mustJSON(r))
	}
	testutil.Eventually(t, 10*time.Second, func() (bool, string) {
		code, o := request(t, srv, "GET", "/ui/api/overview", "", "")
		return code == 200 && len(o["nodes"].([]any)) == 3, mustJSON(o)
	})
}

func TestConfigValidate(t *testing.T) {
	for _, c := range []Config{{}, {Metas: []string{"nohost"}}, {Metas: []string{"a:1"}, Secret: "x\ny"}, {Metas: []string{"a:1"}, Timeout: -1}} {
		if _, err := New(c); err == nil {
			t.Errorf("New(%+v): no error", c)
		}
	}
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	if len(b) > 2000 {
		b = append(b[:2000], "..."...)
	}
	return string(b)
}
