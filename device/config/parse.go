package config

import (
	"errors"
	"fmt"
	"math"
	"os"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
)

// Error is one problem in a configuration file. Parse joins them with
// errors.Join, one per line of the message, ordered by line.
type Error struct {
	File string
	Line int    // 1-based; 0 when the problem has no place in the file
	Path string // key path such as "buttons[0].debounce"; empty for the whole document
	Msg  string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	b.WriteString(": ")
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Load reads and parses the configuration file at path.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Parse(path, data)
}

// Parse decodes a configuration file strictly (an unknown or duplicate key
// is an error), fills in the defaults of DESIGN §4 for missing keys and
// validates the result. filename is used only in error messages, which
// read "FILE:LINE: key.path: problem"; all problems found are reported.
// It is ParseLayers with the local file alone.
//
// The document is decoded from go-yaml's syntax tree rather than with
// yaml.Unmarshal: its strict mode stops at the first unknown key (picked in
// map order, so not even the first in the file) and its duration errors
// carry no position.
func Parse(filename string, data []byte) (*Config, error) {
	return ParseLayers(Layer{Name: filename, Data: data})
}

// maxNodes bounds the work a document may cause through aliases that
// repeat a large anchored value many times.
const maxNodes = 100_000

type decoder struct {
	layers  []*layerState   // every layer entered so far, in order
	cur     *layerState     // the layer being decoded
	failed  map[string]bool // key paths that failed to decode; validation skips them
	locked  map[string]bool // key paths the local file marked !local
	anchors map[string]ast.Node
	budget  int
	errs    []issue
}

// layerState is what the decoder knows about one layer: where each key path
// it set came from, so that errors about the merged result can point there.
type layerState struct {
	index    int
	name     string
	doc      bool            // a provisioned document rather than the local file
	lines    map[string]int  // key path -> line of its value
	replaced map[string]bool // list paths this layer set whole
}

// issue is an Error with the layer it belongs to, for ordering.
type issue struct {
	layer int
	err   *Error
}

func newDecoder() *decoder {
	return &decoder{failed: map[string]bool{}, locked: map[string]bool{}}
}

// enter adds the next layer and makes it the current one.
func (d *decoder) enter(name string, doc bool) {
	d.cur = &layerState{index: len(d.layers), name: name, doc: doc, lines: map[string]int{}, replaced: map[string]bool{}}
	d.layers = append(d.layers, d.cur)
}

// begin starts decoding layer i: aliases and the size budget are per
// document.
func (d *decoder) begin(i int) {
	d.cur = d.layers[i]
	d.anchors = map[string]ast.Node{}
	d.budget = maxNodes
}

// parseDocument returns the body of the file's single YAML document.
func (d *decoder) parseDocument(data []byte) (body ast.Node, err error) {
	// go-yaml is a large hand-written parser; a panic on some malformed
	// input must become an error, not take the process down (DESIGN §6).
	defer func() {
		if r := recover(); r != nil {
			body, err = nil, d.errorAt(0, "", fmt.Sprintf("invalid YAML: %v", r))
		}
	}()
	f, err := parser.ParseBytes(data, 0)
	if err != nil {
		var ye yaml.Error
		if errors.As(err, &ye) && ye.GetToken() != nil {
			return nil, d.errorAt(ye.GetToken().Position.Line, "", "invalid YAML: "+ye.GetMessage())
		}
		return nil, d.errorAt(0, "", fmt.Sprintf("invalid YAML: %v", err))
	}
	var docs []*ast.DocumentNode
	for _, doc := range f.Docs {
		if doc != nil && doc.Body != nil {
			docs = append(docs, doc)
		}
	}
	switch {
	case len(docs) == 0:
		return nil, d.errorAt(0, "", d.emptyMsg())
	case len(docs) > 1:
		return nil, d.errorAt(lineOf(docs[1].Body, 0), "", "more than one YAML document; expected one")
	case d.cur.doc && docs[0].Body.Type() == ast.NullType:
		// A bare "~" would merge as nothing, like an empty body.
		return nil, d.errorAt(lineOf(docs[0].Body, 0), "", d.emptyMsg())
	}
	return docs[0].Body, nil
}

// emptyMsg is the error for a layer without content. For a provisioned
// document it is never "nothing to change": a server that answers 200 with
// an empty body must not take the provisioned settings away.
func (d *decoder) emptyMsg() string {
	if d.cur.doc {
		return "empty document"
	}
	return "empty configuration"
}

// errorAt records a problem of the current layer's document as a whole
// and returns it.
func (d *decoder) errorAt(line int, path, msg string) error {
	e := &Error{File: d.cur.name, Line: line, Path: path, Msg: msg}
	d.errs = append(d.errs, issue{d.cur.index, e})
	return e
}

// fail records a decoding error; the value at path keeps its default.
func (d *decoder) fail(line int, path, format string, args ...any) {
	d.failed[path] = true
	d.errorAt(line, path, fmt.Sprintf(format, args...))
}

// errf records a validation error of the merged result at the layer and
// line that last set path, or its nearest ancestor when no layer set it.
func (d *decoder) errf(path, format string, args ...any) {
	if d.failed[path] {
		return
	}
	layer, line := d.placeOf(path)
	e := &Error{File: d.layers[layer].name, Line: line, Path: path, Msg: fmt.Sprintf(format, args...)}
	d.errs = append(d.errs, issue{layer, e})
}

func (d *decoder) placeOf(path string) (layer, line int) {
	for p := path; ; p = parentPath(p) {
		if layer, line, ok := d.setBy(p); ok {
			return layer, line
		}
		if p == "" {
			return 0, 0
		}
	}
}

// setBy finds the last layer that set path: by itself, or by replacing a
// list that holds it (the list items of earlier layers are gone).
func (d *decoder) setBy(path string) (layer, line int, ok bool) {
	for i := len(d.layers) - 1; i >= 0; i-- {
		l := d.layers[i]
		if line, ok := l.lines[path]; ok {
			return i, line, true
		}
		for a := path; a != ""; {
			a = parentPath(a)
			if l.replaced[a] {
				return i, l.nearestLine(path), true
			}
		}
	}
	return 0, 0, false
}

// nearestLine is the line of path in l, or of its nearest ancestor l set.
func (l *layerState) nearestLine(path string) int {
	for {
		if line, ok := l.lines[path]; ok || path == "" {
			return line
		}
		path = parentPath(path)
	}
}

func parentPath(path string) string {
	i := strings.LastIndexAny(path, ".[")
	if i < 0 {
		return ""
	}
	return path[:i]
}

func (d *decoder) result() error {
	if len(d.errs) == 0 {
		return nil
	}
	sort.SliceStable(d.errs, func(i, j int) bool {
		a, b := d.errs[i], d.errs[j]
		return a.layer < b.layer || a.layer == b.layer && a.err.Line < b.err.Line
	})
	errs := make([]error, len(d.errs))
	for i, e := range d.errs {
		errs[i] = e.err
	}
	return errors.Join(errs...)
}

func lineOf(n ast.Node, fallback int) int {
	if n == nil {
		return fallback
	}
	if tk := n.GetToken(); tk != nil && tk.Position != nil && tk.Position.Line > 0 {
		return tk.Position.Line
	}
	return fallback
}

var durationType = reflect.TypeOf(time.Duration(0))

// decode stores node n into v, reporting problems under path. line is the
// line of the key that holds n, used when n itself has no position. It
// returns false when the document is too large to go on.
func (d *decoder) decode(path string, n ast.Node, v reflect.Value, line int) bool {
	if d.budget--; d.budget < 0 {
		d.fail(line, path, "document too large (more than %d values after expanding aliases)", maxNodes)
		return false
	}
	n, ok := d.resolve(path, n, line)
	if !ok {
		return true
	}
	if a, ok := n.(*ast.AnchorNode); ok {
		// Registered only once its value is decoded, so that a value
		// cannot refer to itself.
		more := d.decode(path, a.Value, v, line)
		if a.Name != nil && a.Name.GetToken() != nil {
			d.anchors[a.Name.GetToken().Value] = a.Value
		}
		return more
	}
	line = lineOf(n, line)
	if n == nil || n.Type() == ast.NullType {
		// An empty section keeps its defaults; an empty value is the
		// zero value, so "listen:" disables the API like listen: "".
		if v.Kind() != reflect.Struct {
			v.Set(reflect.Zero(v.Type()))
		}
		return true
	}
	switch {
	case v.Type() == durationType:
		s, ok := scalarText(n)
		if !ok {
			d.fail(line, path, "expected a duration such as 30s, got %s", describe(n))
			return true
		}
		dur, err := time.ParseDuration(s)
		if err != nil {
			d.fail(line, path, "invalid duration %q", s)
			return true
		}
		v.SetInt(int64(dur))
	case v.Kind() == reflect.Struct:
		return d.decodeStruct(path, n, v, line)
	case v.Kind() == reflect.Slice:
		return d.decodeSlice(path, n, v, line)
	case v.Kind() == reflect.String:
		s, ok := scalarText(n)
		if !ok {
			hint := ""
			if m, ok := n.(*ast.MappingNode); ok && len(m.Values) == 1 {
				// go-yaml reads [sip:201@pbx] inside {...} as the
				// one-pair mapping {sip: 201@pbx}.
				hint = ` (quote values that contain ':', e.g. "sip:201@pbx")`
			}
			d.fail(line, path, "expected a string, got %s%s", describe(n), hint)
			return true
		}
		v.SetString(s)
	case v.Kind() == reflect.Int:
		i, ok := integer(n)
		if !ok {
			if _, isInt := n.(*ast.IntegerNode); isInt {
				d.fail(line, path, "integer out of range")
			} else {
				d.fail(line, path, "expected an integer, got %s", describe(n))
			}
			return true
		}
		v.SetInt(i)
	case v.Kind() == reflect.Float64:
		f, ok := number(n)
		if !ok {
			d.fail(line, path, "expected a number, got %s", describe(n))
			return true
		}
		v.SetFloat(f)
	case v.Kind() == reflect.Bool:
		b, ok := n.(*ast.BoolNode)
		if !ok {
			d.fail(line, path, "expected true or false, got %s", describe(n))
			return true
		}
		v.SetBool(b.Value)
	default:
		// Unreachable for the Config types; kept as an error so a new
		// field type cannot silently be ignored.
		d.fail(line, path, "unsupported field type %s", v.Type())
	}
	return true
}

// resolve unwraps tags and aliases down to the node that holds the value.
func (d *decoder) resolve(path string, n ast.Node, line int) (ast.Node, bool) {
	for {
		switch t := n.(type) {
		case *ast.TagNode:
			if !d.tag(path, t, line) {
				return nil, false
			}
			n = t.Value
		case *ast.AliasNode:
			name := ""
			if t.Value != nil && t.Value.GetToken() != nil {
				name = t.Value.GetToken().Value
			}
			target, ok := d.anchors[name]
			if !ok {
				d.fail(lineOf(t, line), path, "unknown alias *%s", name)
				return nil, false
			}
			n = target
		default:
			return n, true
		}
	}
}

// localTag marks a value of the local file that provisioned documents
// cannot change.
const localTag = "!local"

// tag handles the tag t on the value at path, reporting whether the value
// is to be decoded. !local is the only tag: any other would be silently
// meaningless, and a misspelt !local would leave a value unprotected.
func (d *decoder) tag(path string, t *ast.TagNode, line int) bool {
	line = lineOf(t, line)
	name := ""
	if t.Start != nil {
		name = t.Start.Value
	}
	switch {
	case name != localTag:
		d.fail(line, path, "unknown tag %s: only %s is understood", name, localTag)
		return false
	case d.cur.doc:
		d.fail(line, path, "%s belongs in the local file only", localTag)
		return false
	case strings.Contains(path, "["):
		// Lists are replaced whole, so a part of an item has no identity
		// across layers.
		d.fail(line, path, "%s inside a list: mark the whole list instead", localTag)
		return false
	}
	d.locked[path] = true
	return true
}

// isLocked reports whether path or a section holding it is marked !local.
func (d *decoder) isLocked(path string) bool {
	for {
		if d.locked[path] {
			return true
		}
		if path == "" {
			return false
		}
		path = parentPath(path)
	}
}

func (d *decoder) decodeStruct(path string, n ast.Node, v reflect.Value, line int) bool {
	var pairs []*ast.MappingValueNode
	switch m := n.(type) {
	case *ast.MappingNode:
		pairs = m.Values
	case *ast.MappingValueNode:
		pairs = []*ast.MappingValueNode{m}
	default:
		what := "a mapping"
		if path == "" {
			what = "a mapping of sections at the top level"
		}
		d.fail(line, path, "expected %s, got %s", what, describe(n))
		return true
	}
	// go-yaml's parser already rejects duplicate keys.
	fields := yamlFields(v.Type())
	for _, p := range pairs {
		keyLine := lineOf(p.Key, line)
		if p.Key.IsMergeKey() {
			d.fail(keyLine, path, "merge keys (<<) are not supported")
			continue
		}
		key, ok := keyText(p.Key)
		if !ok {
			d.fail(keyLine, path, "invalid key: %s", describe(p.Key))
			continue
		}
		child := joinPath(path, key)
		idx, known := fields[key]
		if !known {
			d.fail(keyLine, child, "unknown key%s", suggest(key, fields))
			continue
		}
		if d.cur.doc && child == "provisioning" {
			d.fail(keyLine, child, "set only in the local file")
			continue
		}
		if d.cur.doc && d.isLocked(child) {
			if !d.check(child, p.Value, v.Field(idx).Type(), keyLine) {
				return false
			}
			continue
		}
		d.cur.lines[child] = valueLine(p.Value, keyLine)
		if !d.decode(child, p.Value, v.Field(idx), keyLine) {
			return false
		}
	}
	return true
}

// check decodes n into a throwaway value of type t: a provisioned value for
// a key the local file keeps is still checked, so that a document is valid
// or not whatever the station it is sent to.
func (d *decoder) check(path string, n ast.Node, t reflect.Type, line int) bool {
	layer := d.cur
	d.cur = &layerState{index: layer.index, name: layer.name, doc: layer.doc, lines: map[string]int{}, replaced: map[string]bool{}}
	defer func() { d.cur = layer }()
	return d.decode(path, n, reflect.New(t).Elem(), line)
}

// valueLine is where validation errors about a value point: the value's own
// line for a scalar, the key's line for a section or a list.
func valueLine(n ast.Node, keyLine int) int {
	switch n.(type) {
	case *ast.MappingNode, *ast.MappingValueNode, *ast.SequenceNode, nil:
		return keyLine
	}
	return lineOf(n, keyLine)
}

func (d *decoder) decodeSlice(path string, n ast.Node, v reflect.Value, line int) bool {
	seq, ok := n.(*ast.SequenceNode)
	if !ok {
		d.fail(line, path, "expected a list, got %s", describe(n))
		return true
	}
	v.Set(reflect.Zero(v.Type()))
	d.cur.replaced[path] = true
	if len(seq.Values) == 0 {
		return true
	}
	out := reflect.MakeSlice(v.Type(), len(seq.Values), len(seq.Values))
	for i, item := range seq.Values {
		child := fmt.Sprintf("%s[%d]", path, i)
		elem := out.Index(i)
		if def, ok := elem.Addr().Interface().(defaulter); ok {
			def.setDefaults()
		}
		itemLine := lineOf(item, line)
		d.cur.lines[child] = itemLine
		if !d.decode(child, item, elem, itemLine) {
			return false
		}
	}
	v.Set(out)
	return true
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// yamlFields maps each yaml key of struct type t to its field index.
func yamlFields(t reflect.Type) map[string]int {
	m := make(map[string]int, t.NumField())
	for i := range t.NumField() {
		if name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ","); name != "" {
			m[name] = i
		}
	}
	return m
}

func keyText(k ast.MapKeyNode) (string, bool) {
	var n ast.Node = k
	if mk, ok := k.(*ast.MappingKeyNode); ok {
		n = mk.Value
	}
	return scalarText(n)
}

// scalarText is the text of a scalar as written, so that user: 0100 or
// code: 0123 keep their leading zeros rather than becoming numbers.
func scalarText(n ast.Node) (string, bool) {
	switch t := n.(type) {
	case *ast.StringNode:
		return t.Value, true
	case *ast.LiteralNode:
		if t.Value == nil {
			return "", true
		}
		return t.Value.Value, true
	case *ast.IntegerNode, *ast.FloatNode, *ast.BoolNode, *ast.InfinityNode, *ast.NanNode:
		if tk := n.GetToken(); tk != nil {
			return tk.Value, true
		}
	}
	return "", false
}

func integer(n ast.Node) (int64, bool) {
	in, ok := n.(*ast.IntegerNode)
	if !ok {
		return 0, false
	}
	// Bounded to 32 bits so the value fits an int on 32-bit ARM boards.
	switch i := in.Value.(type) {
	case int64:
		return i, i >= math.MinInt32 && i <= math.MaxInt32
	case uint64:
		return int64(i), i <= math.MaxInt32
	}
	return 0, false
}

func number(n ast.Node) (float64, bool) {
	switch t := n.(type) {
	case *ast.FloatNode:
		return t.Value, !math.IsInf(t.Value, 0) && !math.IsNaN(t.Value)
	case *ast.IntegerNode:
		switch i := t.Value.(type) {
		case int64:
			return float64(i), true
		case uint64:
			return float64(i), true
		}
	}
	return 0, false
}

// describe names what a node is for "expected X, got Y" messages. Scalars
// are not quoted back: the value might be a password.
func describe(n ast.Node) string {
	switch n.(type) {
	case *ast.MappingNode, *ast.MappingValueNode:
		return "a mapping"
	case *ast.SequenceNode:
		return "a list"
	case *ast.StringNode, *ast.LiteralNode:
		return "a string"
	case *ast.IntegerNode:
		return "an integer"
	case *ast.FloatNode, *ast.InfinityNode, *ast.NanNode:
		return "a number"
	case *ast.BoolNode:
		return "a boolean"
	}
	return n.Type().YAMLName()
}

// suggest proposes the closest known key for a misspelt one.
func suggest(key string, fields map[string]int) string {
	best, bestDist := "", 3
	for name := range fields {
		if dist := editDistance(key, name); dist < bestDist || (dist == bestDist && best != "" && name < best) {
			best, bestDist = name, dist
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
