package provisioning

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
)

// Expand replaces the placeholders of a provisioning URL: {mac} by the
// station's MAC address as lower-case hex without separators (the form
// provisioning servers key files by), {serial} by the board's serial number.
// A placeholder that is used but has no value is an error, so that a whole
// fleet never shares one URL by accident.
func Expand(rawURL, mac, serial string) (string, error) {
	out := rawURL
	if strings.Contains(out, "{mac}") {
		m, err := normalizeMAC(mac)
		if err != nil {
			return "", err
		}
		out = strings.ReplaceAll(out, "{mac}", m)
	}
	if strings.Contains(out, "{serial}") {
		if serial == "" {
			return "", errors.New("provisioning: url uses {serial} but the board has no serial number")
		}
		out = strings.ReplaceAll(out, "{serial}", url.PathEscape(serial))
	}
	return out, nil
}

// normalizeMAC accepts a MAC with or without ':', '-' or '.' separators.
func normalizeMAC(mac string) (string, error) {
	if mac == "" {
		return "", errors.New("provisioning: url uses {mac} but no MAC address is known")
	}
	m := strings.ToLower(strings.NewReplacer(":", "", "-", "", ".", "").Replace(mac))
	if _, err := hex.DecodeString(m); err != nil || len(m) < 12 {
		return "", fmt.Errorf("provisioning: %q is not a MAC address", mac)
	}
	return m, nil
}

// host names where the station's identity is read from; tests point it at
// files of their own.
type host struct {
	routeFile   string
	serialFiles []string
	cpuinfo     string
	interfaces  func() ([]net.Interface, error)
}

var realHost = host{
	routeFile:   "/proc/net/route",
	serialFiles: []string{"/proc/device-tree/serial-number", "/sys/firmware/devicetree/base/serial-number"},
	cpuinfo:     "/proc/cpuinfo",
	interfaces:  net.Interfaces,
}

// DefaultMAC returns the MAC address, as lower-case hex without separators,
// of the interface that holds the IPv4 default route, else of the first
// interface that is up, not loopback and has a hardware address.
func DefaultMAC() (string, error) { return realHost.defaultMAC() }

// Serial returns the board's serial number, or "" when it has none.
func Serial() string { return realHost.serial() }

func (h host) defaultMAC() (string, error) {
	ifaces, err := h.interfaces()
	if err != nil {
		return "", fmt.Errorf("provisioning: interfaces: %w", err)
	}
	if name := defaultRouteIface(h.routeFile); name != "" {
		for _, ifc := range ifaces {
			if ifc.Name == name && len(ifc.HardwareAddr) > 0 {
				return hex.EncodeToString(ifc.HardwareAddr), nil
			}
		}
	}
	// A default route over a tunnel or PPP link has no hardware address.
	for _, ifc := range ifaces {
		if ifc.Flags&net.FlagUp != 0 && ifc.Flags&net.FlagLoopback == 0 && len(ifc.HardwareAddr) > 0 {
			return hex.EncodeToString(ifc.HardwareAddr), nil
		}
	}
	return "", errors.New("provisioning: no network interface with a MAC address")
}

// defaultRouteIface returns the interface of the up IPv4 default route with
// the lowest metric, or "" when there is none or the table is unreadable.
func defaultRouteIface(path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	const rtfUp = 0x1 // RTF_UP, <linux/route.h>
	best, bestMetric := "", uint64(0)
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Scan() // header: Iface Destination Gateway Flags RefCnt Use Metric Mask ...
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 8 || f[1] != "00000000" || f[7] != "00000000" {
			continue
		}
		flags, err1 := strconv.ParseUint(f[3], 16, 32)
		metric, err2 := strconv.ParseUint(f[6], 10, 32)
		if err1 != nil || err2 != nil || flags&rtfUp == 0 {
			continue
		}
		if best == "" || metric < bestMetric {
			best, bestMetric = f[0], metric
		}
	}
	return best
}

func (h host) serial() string {
	for _, p := range h.serialFiles {
		if data, err := os.ReadFile(p); err == nil {
			// The device tree stores the string NUL-terminated.
			if s := strings.TrimSpace(strings.Trim(string(data), "\x00")); s != "" {
				return s
			}
		}
	}
	data, err := os.ReadFile(h.cpuinfo)
	if err != nil {
		return ""
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(key) == "Serial" {
			return strings.TrimSpace(strings.Trim(val, "\x00 \t"))
		}
	}
	return ""
}
