package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// flagRE finds a long flag where a command line passes one.
var flagRE = regexp.MustCompile(`(?:^|\s)--([a-z][a-z0-9-]*)`)

// deployArgs returns the command-line arguments a deploy example passes to
// `registry ROLE`: the args list of a Kubernetes container, the ExecStart
// of a systemd unit, SLOTREG_EXTRA_ARGS of an env file.
func deployArgs(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	inExec := false
	for _, line := range strings.Split(string(b), "\n") {
		trim := strings.TrimSpace(line)
		switch {
		case strings.HasSuffix(path, ".yaml") && strings.HasPrefix(trim, "- --"):
			out = append(out, strings.TrimPrefix(trim, "- "))
		case strings.HasPrefix(trim, "ExecStart="):
			inExec = true
			fallthrough
		case inExec:
			out = append(out, trim)
			inExec = strings.HasSuffix(trim, `\`)
		case strings.HasPrefix(trim, "SLOTREG_EXTRA_ARGS="):
			out = append(out, strings.Trim(strings.TrimPrefix(trim, "SLOTREG_EXTRA_ARGS="), `"`))
		}
	}
	return out
}

// TestDeployExamplesUseRealFlags keeps scripts/deploy/ in step with the
// binary: every flag the systemd units, their env files and the Kubernetes
// manifests pass to a role must be one that `registry ROLE --help` lists.
func TestDeployExamplesUseRealFlags(t *testing.T) {
	known := map[string]map[string]bool{}
	for _, role := range []string{"meta", "data", "session"} {
		out, err := exec.Command(registryBin, role, "--help").CombinedOutput()
		if err != nil {
			t.Fatalf("registry %s --help: %v\n%s", role, err, out)
		}
		known[role] = map[string]bool{}
		for _, m := range flagRE.FindAllStringSubmatch(string(out), -1) {
			known[role][m[1]] = true
		}
	}
	files, err := filepath.Glob("../scripts/deploy/*/*")
	if err != nil {
		t.Fatal(err)
	}
	checked := map[string]int{}
	for _, f := range files {
		role := ""
		for r := range known {
			if strings.Contains(filepath.Base(f), r) {
				role = r
			}
		}
		if role == "" {
			continue
		}
		for _, args := range deployArgs(t, f) {
			for _, m := range flagRE.FindAllStringSubmatch(args, -1) {
				checked[role]++
				if !known[role][m[1]] {
					t.Errorf("%s passes --%s, which `registry %s --help` does not list", f, m[1], role)
				}
			}
		}
	}
	// Each role's unit, env file and manifest pass flags: a parser that
	// found none would make this test pass on anything.
	for role := range known {
		if checked[role] < 8 {
			t.Errorf("found only %d flags for %s in scripts/deploy/", checked[role], role)
		}
	}
	t.Logf("flags checked per role: %v", checked)
}
