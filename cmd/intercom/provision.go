package main

import (
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"intercom/device/config"
)

// provisionCmd runs `intercom provision render TEMPLATE CSV OUTDIR`: the
// installer's tool that writes one provisioned document per station for
// the provisioning server to serve as {mac}.yaml.
func provisionCmd(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return usageError{errors.New("provision: render?")}
	}
	switch args[0] {
	case "render":
		if len(args) != 4 {
			return usageError{errors.New("provision render: TEMPLATE CSV OUTDIR expected")}
		}
		return renderStations(args[1], args[2], args[3], stdout)
	default:
		return usageError{fmt.Errorf("provision: unknown subcommand %q", args[0])}
	}
}

// stationColumns are the CSV columns the template sees, by their template
// field name; name is the only optional one.
var stationColumns = []struct{ column, field string }{
	{"mac", "MAC"},
	{"extension", "Extension"},
	{"password", "Password"},
	{"name", "Name"},
}

// station is one CSV row: the template's data, keyed by field name, and
// where it came from.
type station struct {
	line int
	mac  string
	data map[string]string
}

// rendered is a checked document waiting to be written.
type rendered struct {
	mac  string
	data []byte
}

// renderStations renders the template for every CSV row and writes the
// documents only when every one of them rendered and passed
// config.CheckDocument, so that a mistake in row 40 does not leave a
// directory half old, half new.
func renderStations(tmplPath, csvPath, outDir string, stdout io.Writer) error {
	tmplText, err := os.ReadFile(tmplPath)
	if err != nil {
		return usageError{fmt.Errorf("provision render: %w", err)}
	}
	tmpl, err := parseTemplate(filepath.Base(tmplPath), string(tmplText))
	if err != nil {
		return usageError{fmt.Errorf("provision render: %w", err)}
	}
	csvData, err := os.ReadFile(csvPath)
	if err != nil {
		return usageError{fmt.Errorf("provision render: %w", err)}
	}
	stations, err := readStations(csvPath, csvData)
	if err != nil {
		return usageError{fmt.Errorf("provision render: %w", err)}
	}
	var docs []rendered
	var errs []error
	for _, s := range stations {
		doc := tmpl.render(s.data)
		if err := config.CheckDocument(s.mac+".yaml", doc); err != nil {
			errs = append(errs, fmt.Errorf("%s line %d: %w", csvPath, s.line, err))
			continue
		}
		docs = append(docs, rendered{s.mac, doc})
	}
	if len(errs) > 0 {
		return usageError{fmt.Errorf("provision render: nothing written: %w", errors.Join(errs...))}
	}
	paths, err := writeDocuments(outDir, docs)
	for _, p := range paths {
		fmt.Fprintf(stdout, "wrote %s\n", p)
	}
	if err != nil {
		return fmt.Errorf("provision render: %w", err)
	}
	return nil
}

// readStations parses the CSV: a header row naming the columns in any
// order, then one station per row. All problems are reported together,
// each naming its line.
func readStations(name string, data []byte) ([]station, error) {
	r := csv.NewReader(bytes.NewReader(bytes.TrimPrefix(data, []byte("\ufeff")))) // spreadsheets write a BOM
	header, err := r.Read()
	if err == io.EOF {
		return nil, fmt.Errorf("%s: empty: want a header row naming mac, extension, password and optionally name", name)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	index, err := columnIndex(header)
	if err != nil {
		return nil, fmt.Errorf("%s line 1: %w", name, err)
	}
	var (
		stations []station
		errs     []error
		seen     = map[string]int{} // mac -> line
	)
	for {
		rec, err := r.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			// The reader's error names the line; a broken quote ends
			// the file for it, so there is nothing more to read.
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
			break
		}
		line, _ := r.FieldPos(0)
		s, err := parseStation(rec, index, line)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s line %d: %w", name, line, err))
			continue
		}
		if first, dup := seen[s.mac]; dup {
			errs = append(errs, fmt.Errorf("%s line %d: mac %s is already on line %d", name, line, s.mac, first))
			continue
		}
		seen[s.mac] = line
		stations = append(stations, s)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if len(stations) == 0 {
		return nil, fmt.Errorf("%s: no stations after the header row", name)
	}
	return stations, nil
}

// columnIndex maps each known column to its position in the header.
func columnIndex(header []string) (map[string]int, error) {
	index := map[string]int{}
	var unknown []string
	for i, h := range header {
		col := strings.ToLower(strings.TrimSpace(h))
		known := slices.ContainsFunc(stationColumns, func(c struct{ column, field string }) bool { return c.column == col })
		switch _, dup := index[col]; {
		case !known:
			unknown = append(unknown, strconv.Quote(h))
		case dup:
			return nil, fmt.Errorf("column %s appears twice", col)
		default:
			index[col] = i
		}
	}
	if len(unknown) > 0 {
		return nil, fmt.Errorf("unknown column %s: the columns are mac, extension, password and name", strings.Join(unknown, ", "))
	}
	for _, col := range []string{"mac", "extension", "password"} {
		if _, ok := index[col]; !ok {
			return nil, fmt.Errorf("no %s column: the header must name mac, extension, password and optionally name", col)
		}
	}
	return index, nil
}

// parseStation checks one row. Messages never quote the password.
func parseStation(rec []string, index map[string]int, line int) (station, error) {
	s := station{line: line, data: map[string]string{}}
	for _, c := range stationColumns {
		i, ok := index[c.column]
		if !ok {
			s.data[c.field] = ""
			continue
		}
		v := rec[i]
		switch {
		case !utf8.ValidString(v):
			return station{}, fmt.Errorf("%s is not valid UTF-8", c.column)
		case v == "" && c.column != "name":
			return station{}, fmt.Errorf("%s is empty", c.column)
		}
		s.data[c.field] = v
	}
	mac, err := normalizeMAC(s.data["MAC"])
	if err != nil {
		return station{}, err
	}
	s.mac, s.data["MAC"] = mac, mac
	return s, nil
}

// normalizeMAC accepts a MAC address as 12 hex digits, plain or in pairs
// separated by ':' or '-', in any case, and returns it in the form of the
// {mac} placeholder: 12 lower-case hex digits.
func normalizeMAC(s string) (string, error) {
	in := strings.TrimSpace(s)
	plain := in
	if len(in) == 17 {
		sep := in[2]
		var b strings.Builder
		for i := 0; i < len(in); i++ {
			if i%3 == 2 {
				if in[i] != sep || (sep != ':' && sep != '-') {
					return "", fmt.Errorf("mac %q: want 12 hex digits, plain or in pairs separated by ':' or '-'", s)
				}
				continue
			}
			b.WriteByte(in[i])
		}
		plain = b.String()
	}
	if len(plain) != 12 || strings.Trim(strings.ToLower(plain), "0123456789abcdef") != "" {
		return "", fmt.Errorf("mac %q: want 12 hex digits, plain or in pairs separated by ':' or '-'", s)
	}
	return strings.ToLower(plain), nil
}

// placeholder is a template's only kind of action: {{.Field}} inserts the
// value as it is (inside a quoted string, say), {{yaml .Field}} as a YAML
// string of its own. A full text/template would do, but it makes the
// linker keep every exported method in the binary (about 2 MB more, all of
// it resident on the board), for a tool that needs none of it.
var placeholder = regexp.MustCompile(`\{\{\s*(yaml\s+)?\.([A-Za-z]+)\s*\}\}`)

// docTemplate is a parsed TEMPLATE: text and placeholders in turn.
type docTemplate struct {
	parts []templatePart
}

type templatePart struct {
	text  string
	field string // "" for text
	quote bool
}

// parseTemplate checks that every {{ opens a known placeholder.
func parseTemplate(name, text string) (*docTemplate, error) {
	fields := map[string]bool{}
	for _, c := range stationColumns {
		fields[c.field] = true
	}
	t := &docTemplate{}
	rest, line := text, 1
	for rest != "" {
		i := strings.Index(rest, "{{")
		if i < 0 {
			t.parts = append(t.parts, templatePart{text: rest})
			break
		}
		t.parts = append(t.parts, templatePart{text: rest[:i]})
		line += strings.Count(rest[:i], "\n")
		m := placeholder.FindStringSubmatch(rest[i:])
		if m == nil || !strings.HasPrefix(rest[i:], m[0]) {
			return nil, fmt.Errorf("%s:%d: only {{.Field}} and {{yaml .Field}} are understood here", name, line)
		}
		if !fields[m[2]] {
			return nil, fmt.Errorf("%s:%d: unknown field .%s (have .MAC, .Extension, .Password, .Name)", name, line, m[2])
		}
		t.parts = append(t.parts, templatePart{field: m[2], quote: m[1] != ""})
		rest = rest[i+len(m[0]):]
	}
	return t, nil
}

// render fills the placeholders with one station's values.
func (t *docTemplate) render(data map[string]string) []byte {
	var b bytes.Buffer
	for _, p := range t.parts {
		switch {
		case p.field == "":
			b.WriteString(p.text)
		case p.quote:
			b.WriteString(yamlQuote(data[p.field]))
		default:
			b.WriteString(data[p.field])
		}
	}
	return b.Bytes()
}

// yamlQuote is the template function yaml: it writes a value as a YAML
// double-quoted scalar, so that any text, a password with ": #'\"" in it
// included, reads back exactly. Go's escapes are a subset of YAML's double-
// quoted escapes (YAML 1.2 §5.7) for valid UTF-8, which parseStation
// ensures.
func yamlQuote(s string) string { return strconv.Quote(s) }

// writeDocuments writes every document to a temporary file in outDir
// first and renames them into place only when all were written; it
// returns the paths written, also on an error.
func writeDocuments(outDir string, docs []rendered) ([]string, error) {
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return nil, err
	}
	temps := make([]string, 0, len(docs))
	cleanup := func() {
		for _, t := range temps {
			os.Remove(t)
		}
	}
	for _, d := range docs {
		tmp, err := writeTemp(outDir, d.mac, d.data)
		if err != nil {
			cleanup()
			return nil, err
		}
		temps = append(temps, tmp)
	}
	paths := make([]string, 0, len(docs))
	for i, d := range docs {
		path := filepath.Join(outDir, d.mac+".yaml")
		if err := os.Rename(temps[i], path); err != nil {
			temps = temps[i:]
			cleanup()
			return paths, err
		}
		paths = append(paths, path)
	}
	return paths, syncDir(outDir)
}

// writeTemp writes data to a new mode-0600 file (the documents hold SIP
// passwords) in dir and flushes it to disk.
func writeTemp(dir, mac string, data []byte) (string, error) {
	f, err := os.CreateTemp(dir, "."+mac+".yaml.*.tmp")
	if err != nil {
		return "", err
	}
	_, werr := f.Write(data)
	if werr == nil {
		werr = f.Sync()
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		os.Remove(f.Name())
		return "", werr
	}
	return f.Name(), nil
}

// syncDir makes the renames in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
