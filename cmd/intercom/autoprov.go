package main

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"log/slog"
	"path/filepath"

	"intercom/device"
	"intercom/device/config"
	"intercom/provisioning"
)

// autoProvisioning connects the provisioner to the running station: the
// documents it accepts are merged over the local file (config.ParseLayers)
// and the result is applied as one configuration.
type autoProvisioning struct {
	p     *provisioning.Provisioner
	store *provisioning.Store
	local config.Layer
	sup   *supervisor
	log   *slog.Logger
}

var _ device.Provisioning = (*autoProvisioning)(nil)

// provisioningDir is where the fetched documents are kept, under the
// configured state directory.
func provisioningDir(pc config.Provisioning) string {
	return filepath.Join(pc.StateDir, "provisioning")
}

func newAutoProvisioning(local config.Layer, pc config.Provisioning, sup *supervisor, log *slog.Logger) (*autoProvisioning, error) {
	stationURL, commonURL, err := expandURLs(pc)
	if err != nil {
		return nil, err
	}
	var key ed25519.PublicKey
	if pc.PublicKey != "" {
		if key, err = provisioning.ParsePublicKey(pc.PublicKey); err != nil {
			return nil, fmt.Errorf("provisioning.public_key: %w", err)
		}
	}
	client, err := provisioning.NewClient(provisioning.TLSConfig{CA: pc.CA, ClientCert: pc.ClientCert, ClientKey: pc.ClientKey})
	if err != nil {
		return nil, err
	}
	store, err := provisioning.OpenStore(provisioningDir(pc))
	if err != nil {
		return nil, err
	}
	a := &autoProvisioning{store: store, local: local, sup: sup, log: log}
	source := func(u string) provisioning.Source {
		return provisioning.Source{URL: u, User: pc.User, Password: pc.Password, Token: pc.Token, PublicKey: key}
	}
	a.p, err = provisioning.New(provisioning.Config{
		Common: source(commonURL), Station: source(stationURL),
		Client: client, Store: store,
		Interval: pc.Interval, RollbackAfter: pc.RollbackAfter,
		Check: a.check, Apply: a.apply, Registered: sup.registered, OnEvent: a.onEvent,
		Logger: log,
	})
	if err != nil {
		return nil, err
	}
	return a, nil
}

// expandURLs fills in the board's MAC address and serial number.
func expandURLs(pc config.Provisioning) (stationURL, commonURL string, err error) {
	// A MAC that cannot be found is reported by Expand, and only when a
	// URL asks for it.
	mac, _ := provisioning.DefaultMAC()
	serial := provisioning.Serial()
	if stationURL, err = provisioning.Expand(pc.URL, mac, serial); err != nil {
		return "", "", fmt.Errorf("provisioning.url: %w", err)
	}
	if pc.CommonURL != "" {
		if commonURL, err = provisioning.Expand(pc.CommonURL, mac, serial); err != nil {
			return "", "", fmt.Errorf("provisioning.common_url: %w", err)
		}
	}
	return stationURL, commonURL, nil
}

// layers returns a bundle's documents in merge order, named by their
// masked URLs: the names end up in errors, events and the log.
func layers(b provisioning.Bundle) []config.Layer {
	var ls []config.Layer
	for _, d := range []provisioning.Document{b.Common, b.Station} {
		if d.URL != "" {
			ls = append(ls, config.Layer{Name: provisioning.MaskURL(d.URL), Data: d.Body})
		}
	}
	return ls
}

func (a *autoProvisioning) check(b provisioning.Bundle) error {
	_, err := config.ParseLayers(a.local, layers(b)...)
	return err
}

func (a *autoProvisioning) apply(ctx context.Context, b provisioning.Bundle) error {
	cfg, err := config.ParseLayers(a.local, layers(b)...)
	if err != nil {
		return err
	}
	return a.sup.apply(ctx, cfg)
}

// effective is the configuration to start with: the stored documents that
// still pass the checks merged over the local file, or the local file's
// own configuration localCfg.
func effective(store *provisioning.Store, local config.Layer, localCfg *config.Config) *config.Config {
	// The check that accepts a bundle keeps its merge, so that start-up
	// parses each document once.
	var cfg *config.Config
	check := func(b provisioning.Bundle) error {
		c, err := config.ParseLayers(local, layers(b)...)
		cfg = c
		return err
	}
	if _, ok := provisioning.LoadEffective(store, check); !ok || cfg == nil {
		return localCfg
	}
	return cfg
}

// eventKinds maps the provisioner's outcomes to the station's events.
var eventKinds = map[string]string{
	provisioning.EventProvisioned: device.ProvisioningApplied,
	provisioning.EventRolledBack:  device.ProvisioningRolledBack,
	provisioning.EventRefused:     device.ProvisioningRefused,
	provisioning.EventError:       device.ProvisioningError,
	provisioning.EventUnchanged:   device.ProvisioningUnchanged,
}

// onEvent publishes a check's outcome as a station event; the provisioner
// logs it itself.
func (a *autoProvisioning) onEvent(ev provisioning.Event) {
	if st, err := a.sup.live.get(); err == nil {
		st.ProvisioningEvent(eventKinds[ev.Kind], ev.Reason)
	}
}

// Trigger and Status let the station and its API drive the provisioner.
func (a *autoProvisioning) Trigger() { a.p.Trigger() }

func (a *autoProvisioning) Status() device.ProvisioningStatus {
	st := a.p.Status()
	return device.ProvisioningStatus{
		URL: st.URL, State: st.State, Error: st.Error, LastCheck: st.LastCheck, LastChange: st.LastChange,
		Checks: st.Checks, Refused: st.Refused, Rollbacks: st.Rollbacks,
	}
}
