package provisioning

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestExpand(t *testing.T) {
	cases := []struct {
		url, mac, serial, want, err string
	}{
		{"https://p/{mac}.yaml", "00:1A:2b:3c:4D:5e", "", "https://p/001a2b3c4d5e.yaml", ""},
		{"https://p/{mac}.yaml", "00-1a-2b-3c-4d-5e", "", "https://p/001a2b3c4d5e.yaml", ""},
		{"https://p/{mac}/{serial}/{mac}", "001a2b3c4d5e", "10000000abc", "https://p/001a2b3c4d5e/10000000abc/001a2b3c4d5e", ""},
		{"https://p/{serial}.yaml", "", "a b/c", "https://p/a%20b%2Fc.yaml", ""},
		{"https://p/all.yaml", "", "", "https://p/all.yaml", ""},
		{"https://p/{serial}.yaml", "001a2b3c4d5e", "", "", "{serial}"},
		{"https://p/{mac}.yaml", "", "s", "", "{mac}"},
		{"https://p/{mac}.yaml", "zz:1a:2b:3c:4d:5e", "", "", "not a MAC"},
		{"https://p/{mac}.yaml", "00:1a", "", "", "not a MAC"},
	}
	for _, c := range cases {
		got, err := Expand(c.url, c.mac, c.serial)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) || got != "" {
				t.Errorf("Expand(%q, %q, %q) = %q, %v; want error with %q", c.url, c.mac, c.serial, got, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("Expand(%q, %q, %q) = %q, %v; want %q", c.url, c.mac, c.serial, got, err, c.want)
		}
	}
}

func writeFile(t *testing.T, dir, name, data string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

const routeTable = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n" +
	"wlan0\t00000000\t0101A8C0\t0003\t0\t0\t600\t00000000\t0\t0\t0\n" +
	"eth0\t0001A8C0\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0\n" +
	"eth0\t00000000\t0101A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n" +
	"eth1\t00000000\t0101A8C0\t0002\t0\t0\t1\t00000000\t0\t0\t0\n"

func TestDefaultMAC(t *testing.T) {
	dir := t.TempDir()
	ifaces := []net.Interface{
		{Name: "lo", Flags: net.FlagUp | net.FlagLoopback},
		{Name: "wg0", Flags: net.FlagUp},
		{Name: "wlan0", Flags: net.FlagUp, HardwareAddr: net.HardwareAddr{0xb8, 0x27, 0xeb, 0, 0, 2}},
		{Name: "eth0", Flags: net.FlagUp, HardwareAddr: net.HardwareAddr{0xb8, 0x27, 0xeb, 0, 0, 1}},
	}
	h := host{routeFile: writeFile(t, dir, "route", routeTable), interfaces: func() ([]net.Interface, error) { return ifaces, nil }}
	// eth1 has the lowest metric but is down; eth0 beats wlan0 on metric.
	if mac, err := h.defaultMAC(); err != nil || mac != "b827eb000001" {
		t.Fatalf("default route MAC = %q, %v", mac, err)
	}
	h.routeFile = filepath.Join(dir, "none")
	if mac, err := h.defaultMAC(); err != nil || mac != "b827eb000002" {
		t.Fatalf("fallback MAC = %q, %v", mac, err)
	}
	h.routeFile = writeFile(t, dir, "route-wg", "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\nwg0\t00000000\t00000000\t0001\t0\t0\t0\t00000000\n")
	if mac, err := h.defaultMAC(); err != nil || mac != "b827eb000002" {
		t.Fatalf("default route without hardware address: %q, %v", mac, err)
	}
	h.interfaces = func() ([]net.Interface, error) { return ifaces[:2], nil }
	if _, err := h.defaultMAC(); err == nil {
		t.Fatal("no MAC, no error")
	}
	h.interfaces = func() ([]net.Interface, error) { return nil, errors.New("boom") }
	if _, err := h.defaultMAC(); err == nil || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("interfaces error: %v", err)
	}
}

func TestSerial(t *testing.T) {
	dir := t.TempDir()
	cpuinfo := writeFile(t, dir, "cpuinfo", "processor\t: 0\nHardware\t: BCM2835\nSerial\t\t: 10000000abcdef01\nModel\t: Raspberry Pi\n")
	dt := writeFile(t, dir, "serial-number", "00000000deadbeef\x00")
	empty := writeFile(t, dir, "empty", "\x00")
	missing := filepath.Join(dir, "missing")
	for _, c := range []struct {
		h    host
		want string
	}{
		{host{serialFiles: []string{missing, dt}, cpuinfo: cpuinfo}, "00000000deadbeef"},
		{host{serialFiles: []string{empty}, cpuinfo: cpuinfo}, "10000000abcdef01"},
		{host{serialFiles: []string{missing}, cpuinfo: writeFile(t, dir, "x86", "processor\t: 0\nmodel name\t: x\n")}, ""},
		{host{cpuinfo: missing}, ""},
	} {
		if got := c.h.serial(); got != c.want {
			t.Errorf("serial() = %q, want %q", got, c.want)
		}
	}
}

func TestRealHostDoesNotFail(t *testing.T) {
	// Whatever this machine has, the calls must not panic; a MAC, when
	// found, must be usable in a URL.
	if mac, err := DefaultMAC(); err == nil {
		if _, err := Expand("http://p/{mac}", mac, ""); err != nil {
			t.Fatalf("DefaultMAC gave %q: %v", mac, err)
		}
	}
	_ = Serial()
}
