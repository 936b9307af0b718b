package device

import (
	"context"
	"fmt"
	"time"

	"intercom/device/api"
)

// Provisioning is the configuration fetcher, as the station uses it.
type Provisioning interface {
	// Trigger asks for a check now; it never blocks.
	Trigger()
	Status() ProvisioningStatus
}

// ProvisioningStatus reports the configuration fetcher: its URL with
// credentials already masked (the API shows it as it is), State and Error as
// the fetcher names them, when it last checked and last applied a change
// (zero for never), and how many checks, refused documents and rollbacks
// there were.
type ProvisioningStatus struct {
	URL                        string
	State                      string
	Error                      string
	LastCheck, LastChange      time.Time
	Checks, Refused, Rollbacks uint64
}

// Results ProvisioningEvent takes.
const (
	ProvisioningApplied    = "applied"
	ProvisioningRolledBack = "rolled_back"
	ProvisioningRefused    = "refused"
	ProvisioningError      = "error"
	ProvisioningUnchanged  = "unchanged"
)

// onCheckSync asks the fetcher to check now, as the PBX's NOTIFY asked.
func (s *Station) onCheckSync(ev CheckSyncEvent) {
	if s.prov == nil {
		s.log.Debug("check-sync ignored: provisioning is not configured", "source", ev.Source)
		return
	}
	s.log.Info("provisioning check requested by SIP NOTIFY", "source", ev.Source)
	s.prov.Trigger()
}

// CheckProvisioning starts a configuration fetch without waiting for it.
func (s *Station) CheckProvisioning(context.Context) error {
	if s.prov == nil {
		return fmt.Errorf("provisioning is not configured: %w", api.ErrConflict)
	}
	s.log.Info("provisioning check requested by API")
	s.prov.Trigger()
	return nil
}

// ProvisioningStatus reports the fetcher for the API; nil when provisioning
// is not configured.
func (s *Station) ProvisioningStatus() *api.ProvisioningStatus {
	if s.prov == nil {
		return nil
	}
	p := s.prov.Status()
	return &api.ProvisioningStatus{
		State:      p.State,
		URL:        p.URL,
		Error:      p.Error,
		LastCheck:  timestamp(p.LastCheck),
		LastChange: timestamp(p.LastChange),
		Checks:     p.Checks,
		Refused:    p.Refused,
		Rollbacks:  p.Rollbacks,
	}
}

// ProvisioningEvent publishes a provisioning outcome to API subscribers:
// ProvisioningApplied and ProvisioningRolledBack as a "provisioned" event,
// ProvisioningRefused and ProvisioningError as an "error" event;
// ProvisioningUnchanged, the usual outcome of a periodic check, is no news.
// It is safe from any goroutine and never blocks.
func (s *Station) ProvisioningEvent(kind, reason string) {
	switch kind {
	case ProvisioningApplied, ProvisioningRolledBack:
		s.emit("provisioned", map[string]any{"result": kind, "reason": reason})
	case ProvisioningRefused, ProvisioningError:
		s.emit("error", map[string]any{"source": "provisioning", "result": kind, "reason": reason})
	case ProvisioningUnchanged:
	default:
		s.log.Warn("unknown provisioning result, not published", "result", kind, "reason", reason)
	}
}

// timestamp formats t like the status document's other times; "" for zero.
func timestamp(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}
