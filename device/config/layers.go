package config

import (
	"bytes"
	"reflect"

	"github.com/goccy/go-yaml/ast"
)

// Layer is one YAML document of the effective configuration.
type Layer struct {
	// Name is used in errors: a file path or a URL. Errors end up in
	// logs, so a URL must come without its password and query.
	Name string
	Data []byte
}

// ParseLayers builds the effective configuration: the local file over the
// defaults, then each provisioned document in order (common, then the
// station's own), then the local file's keys marked `!local` again.
//
// How the layers merge:
//
//   - A mapping (a section such as sip:, or auto_answer:) merges key by key:
//     a later layer changes only the keys it names. A list or a scalar in a
//     later layer replaces the earlier one whole, so a provisioned buttons:
//     list replaces the local one rather than adding to it.
//   - A provisioned document may not contain the provisioning section: how
//     the station is provisioned is set only in the local file.
//   - In the local file the tag !local on a value, at any depth outside a
//     list (a section, `api: !local {listen: ...}`, a whole list, or a
//     scalar, `listen: !local 0.0.0.0:5062`), keeps that value: provisioned
//     documents cannot change it or anything under it. Their values for it
//     are still checked, then dropped. !local in a provisioned document is
//     an error; so is any other tag, anywhere.
//   - A provisioned document that is empty, only comments or null is an
//     error, so that a server answering with an empty body cannot take the
//     provisioned settings away.
//
// Every error names the layer (Layer.Name) and the line the offending value
// came from; an error found by validating the merged result names the layer
// and line that last set that key. A result is returned only when every
// layer decodes and the merged configuration is valid.
func ParseLayers(local Layer, docs ...Layer) (*Config, error) {
	d := newDecoder()
	layers := append([]Layer{local}, docs...)
	bodies := make([]ast.Node, len(layers))
	for i, l := range layers {
		d.enter(l.Name, i > 0)
		if len(bytes.TrimSpace(l.Data)) == 0 {
			d.errorAt(0, "", d.emptyMsg())
			continue
		}
		// The error is recorded in d; the other layers are still read so
		// that one run reports the syntax errors of all of them.
		bodies[i], _ = d.parseDocument(l.Data)
	}
	if len(d.errs) > 0 {
		return nil, d.result()
	}
	cfg := Default()
	for i, body := range bodies {
		d.begin(i)
		d.cur.lines[""] = lineOf(body, 1)
		if !d.decode("", body, reflect.ValueOf(cfg).Elem(), 1) {
			return nil, d.result()
		}
	}
	cfg.normalize()
	d.validate(cfg)
	if err := d.result(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// CheckDocument checks one provisioned document alone against the schema
// (unknown keys, types, durations, tags, the provisioning section), without
// the cross-key validation that needs the merged result. A document that
// fails it fails ParseLayers too.
func CheckDocument(name string, data []byte) error {
	d := newDecoder()
	d.enter(name, true)
	if len(bytes.TrimSpace(data)) == 0 {
		d.errorAt(0, "", d.emptyMsg())
		return d.result()
	}
	body, err := d.parseDocument(data)
	if err != nil {
		return d.result()
	}
	d.begin(0)
	d.cur.lines[""] = lineOf(body, 1)
	d.decode("", body, reflect.ValueOf(Default()).Elem(), 1)
	return d.result()
}
