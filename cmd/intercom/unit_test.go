package main

import (
	"bufio"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"intercom/device/config"
)

// unitPath is the unit file the package installs.
const unitPath = "../../systemd/intercom.service"

// unitFile holds a unit's assignments: section, key, values in order.
type unitFile map[string]map[string][]string

func parseUnit(t *testing.T, path string) unitFile {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	u := unitFile{}
	section := ""
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
		case strings.HasSuffix(line, `\`):
			t.Fatalf("%s:%d: continuation lines are not parsed here", path, n)
		case line[0] == '[' && line[len(line)-1] == ']':
			section = line[1 : len(line)-1]
			u[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("%s:%d: not an assignment in a section: %q", path, n, line)
			}
			k = strings.TrimSpace(k)
			u[section][k] = append(u[section][k], strings.TrimSpace(v))
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return u
}

// one returns the single value of key, failing when it is missing or
// assigned more than once.
func (u unitFile) one(t *testing.T, section, key string) string {
	t.Helper()
	v := u[section][key]
	if len(v) != 1 {
		t.Fatalf("[%s] %s= is set %d times, want once", section, key, len(v))
	}
	return v[0]
}

// words returns every space-separated word assigned to key.
func (u unitFile) words(section, key string) []string {
	var w []string
	for _, v := range u[section][key] {
		w = append(w, strings.Fields(v)...)
	}
	return w
}

// TestUnitMatchesTheProgram checks what the unit promises about the
// program against the program: the command line it runs, the exit status
// it must not restart on, the state directory it may write.
func TestUnitMatchesTheProgram(t *testing.T) {
	u := parseUnit(t, unitPath)

	cmdline := strings.Fields(u.one(t, "Service", "ExecStart"))
	if len(cmdline) < 2 || cmdline[0] != "/usr/bin/intercom" || cmdline[1] != "run" {
		t.Fatalf("ExecStart=%s: want /usr/bin/intercom run ...", strings.Join(cmdline, " "))
	}
	path, err := configFlag("run", cmdline[2:], io.Discard)
	if err != nil {
		t.Fatalf("ExecStart's arguments: %v", err)
	}
	if path != defaultConfig {
		t.Errorf("ExecStart runs %s, the package installs %s", path, defaultConfig)
	}

	for _, want := range []struct{ key, value string }{
		{"Type", "notify"},
		{"NotifyAccess", "main"},
		{"Restart", "on-failure"},
		{"RestartPreventExitStatus", strconv.Itoa(exitUsage)},
		{"User", "intercom"},
		{"ProtectSystem", "strict"},
		{"NoNewPrivileges", "yes"},
		{"PrivateTmp", "yes"},
		{"DevicePolicy", "closed"},
		{"StateDirectory", "intercom"},
	} {
		if got := u.one(t, "Service", want.key); got != want.value {
			t.Errorf("%s=%s, want %s", want.key, got, want.value)
		}
	}
	if d, err := time.ParseDuration(u.one(t, "Service", "WatchdogSec")); err != nil || d < 10*time.Second {
		t.Errorf("WatchdogSec=%s: want a duration of at least 10s (%v)", u.one(t, "Service", "WatchdogSec"), err)
	}
	// Without it a panic or the watchdog's SIGABRT exits with status 2,
	// which RestartPreventExitStatus= takes for a config error.
	if !slices.Contains(u.words("Service", "Environment"), "GOTRACEBACK=crash") {
		t.Error("Environment= lacks GOTRACEBACK=crash")
	}

	stateDir := config.Default().Provisioning.StateDir
	if got := "/var/lib/" + u.one(t, "Service", "StateDirectory"); got != stateDir {
		t.Errorf("StateDirectory= is %s, provisioning.state_dir defaults to %s", got, stateDir)
	}
	if got := u.words("Service", "ReadWritePaths"); !slices.Equal(got, []string{stateDir}) {
		t.Errorf("ReadWritePaths=%v, want only %s", got, stateDir)
	}
	if got := u["Service"]["DeviceAllow"]; !slices.Equal(got, []string{"char-gpiochip rw", "char-alsa rw"}) {
		t.Errorf("DeviceAllow=%q, want the GPIO chips and ALSA only", got)
	}
	if got := u.words("Service", "SupplementaryGroups"); !slices.Contains(got, "gpio") || !slices.Contains(got, "audio") {
		t.Errorf("SupplementaryGroups=%v, want gpio and audio", got)
	}
	for _, key := range []string{"Wants", "After"} {
		if !slices.Contains(u.words("Unit", key), "network-online.target") {
			t.Errorf("%s= lacks network-online.target", key)
		}
	}
}

// systemdAnalyze returns the path of systemd-analyze, skipping the test
// where it is missing, except in the end-to-end run, which must check.
func systemdAnalyze(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("systemd-analyze")
	if err != nil {
		const hint = "systemd-analyze not found; install it with: apt-get install systemd"
		if os.Getenv("INTERCOM_E2E") == "1" {
			t.Fatal(hint)
		}
		t.Skip(hint)
	}
	return p
}

// installable writes a copy of the unit whose ExecStart names an
// executable that exists here, edited by edit, and returns its path.
// `systemd-analyze verify` checks that the program exists and is
// executable; the program and its arguments are checked by
// TestUnitMatchesTheProgram, so the copy names this test binary.
func installable(t *testing.T, edit func(string) string) string {
	t.Helper()
	data, err := os.ReadFile(unitPath)
	if err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	unit := strings.Replace(string(data), "ExecStart=/usr/bin/intercom ", "ExecStart="+self+" ", 1)
	if unit == string(data) {
		t.Fatal("ExecStart=/usr/bin/intercom not found in the unit")
	}
	path := filepath.Join(t.TempDir(), "intercom.service")
	if err := os.WriteFile(path, []byte(edit(unit)), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestUnitVerifies runs systemd's own parser over the unit: every key
// known and every value valid for the systemd installed here. verify
// exits 0 on most of its complaints, so any output fails the test.
func TestUnitVerifies(t *testing.T) {
	analyze := systemdAnalyze(t)
	verify := func(path string) string {
		out, err := exec.Command(analyze, "verify", "--man=no", path).CombinedOutput()
		if err != nil {
			return string(out) + err.Error()
		}
		return string(out)
	}
	if out := verify(installable(t, func(s string) string { return s })); out != "" {
		t.Fatalf("systemd-analyze verify:\n%s", out)
	}
	// The check can fail: a misspelt key is reported.
	broken := installable(t, func(s string) string { return strings.Replace(s, "\nType=notify", "\nTpye=notify", 1) })
	if out := verify(broken); !strings.Contains(out, "Tpye") {
		t.Fatalf("verify did not report a misspelt key; output %q", out)
	}
}

// maxExposure is the highest `systemd-analyze security` exposure (0-100,
// shown as 0.0-10.0) the unit may reach; it is 1.8 now. Dropping a
// hardening option shows here.
const maxExposure = 30

func TestUnitHardening(t *testing.T) {
	analyze := systemdAnalyze(t)
	out, err := exec.Command(analyze, "security", "--offline=true", "--threshold="+strconv.Itoa(maxExposure),
		installable(t, func(s string) string { return s })).CombinedOutput()
	if err != nil {
		if strings.Contains(string(out), "unrecognized option") {
			t.Skipf("this systemd-analyze cannot assess a unit file offline (systemd 250 or later can): %s", out)
		}
		t.Fatalf("systemd-analyze security: exposure above %d.%d or an error: %v\n%s", maxExposure/10, maxExposure%10, err, out)
	}
}
