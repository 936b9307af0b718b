package provisioning

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// Bundle is what one check fetched: the fleet-wide document (Common.URL is
// empty when there is none) and the station's own. A zero Bundle stands for
// "no provisioned documents": the local file alone.
type Bundle struct {
	Common, Station Document
}

// IsZero reports whether b holds no documents.
func (b Bundle) IsZero() bool { return b.Common.URL == "" && b.Station.URL == "" }

const (
	currentFile  = "current.json"
	goodFile     = "good.json"
	previousFile = "previous.json"
	tmpPrefix    = ".tmp-"
	// bundleFormat is the version of the files' layout.
	bundleFormat = 1
	// maxBundleFile bounds a read: two documents of MaxDocument, escaped.
	maxBundleFile = 16 * MaxDocument
	// staleTemp is how old a temp file must be before OpenStore removes it,
	// so that a second process (intercom config show) opening the store
	// does not delete the running station's write in progress.
	staleTemp = time.Minute
)

// Store keeps the bundle in effect (current.json), the last one that was
// known to work (good.json) and the one before the current (previous.json)
// in a state directory. Every write replaces a file atomically, so a crash
// or power cut leaves either the old or the new content (DESIGN §7).
type Store struct {
	dir string
	mu  sync.Mutex
}

// OpenStore opens the state directory dir, creating it (0700: the
// documents carry SIP passwords) and removing temp files of interrupted
// writes.
func OpenStore(dir string) (*Store, error) {
	if dir == "" {
		return nil, errors.New("provisioning: store: no directory")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("provisioning: store: %w", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("provisioning: store: %w", err)
	}
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), tmpPrefix) {
			continue
		}
		if info, err := e.Info(); err == nil && time.Since(info.ModTime()) > staleTemp {
			if err := os.Remove(filepath.Join(dir, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("provisioning: store: %w", err)
			}
		}
	}
	return &Store{dir: dir}, nil
}

// Dir returns the state directory.
func (s *Store) Dir() string { return s.dir }

// Save makes b the current bundle; the old current becomes previous.json.
func (s *Store) Save(b Bundle) error {
	data, err := encodeBundle(b)
	if err != nil {
		return fmt.Errorf("provisioning: store: save: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.keepPrevious(); err != nil {
		return err
	}
	return s.write(currentFile, data)
}

// Confirm records the current bundle as known to work.
func (s *Store) Confirm() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	data, ok, err := s.read(currentFile)
	if err != nil {
		return err
	}
	if !ok {
		return errors.New("provisioning: store: confirm: no current bundle")
	}
	if _, err := decodeBundle(data); err != nil {
		return fmt.Errorf("provisioning: store: confirm: %s: %w", filepath.Join(s.dir, currentFile), err)
	}
	return s.write(goodFile, data)
}

// Rollback makes the good bundle current again and returns it. With no
// good bundle it removes the current one and returns a zero Bundle: the
// local file alone is then in effect.
func (s *Store) Rollback() (Bundle, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	data, ok, err := s.read(goodFile)
	if err != nil {
		return Bundle{}, err
	}
	if err := s.keepPrevious(); err != nil {
		return Bundle{}, err
	}
	if !ok {
		if err := os.Remove(filepath.Join(s.dir, currentFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return Bundle{}, fmt.Errorf("provisioning: store: rollback: %w", err)
		}
		return Bundle{}, syncDir(s.dir)
	}
	b, err := decodeBundle(data)
	if err != nil {
		return Bundle{}, fmt.Errorf("provisioning: store: %s: %w", filepath.Join(s.dir, goodFile), err)
	}
	return b, s.write(currentFile, data)
}

// Current returns the bundle in effect; ok is false when there is none. A
// corrupt file is an error that names it.
func (s *Store) Current() (Bundle, bool, error) { return s.load(currentFile) }

// Good returns the last bundle known to work; ok is false when there is none.
func (s *Store) Good() (Bundle, bool, error) { return s.load(goodFile) }

func (s *Store) load(name string) (Bundle, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	data, ok, err := s.read(name)
	if err != nil || !ok {
		return Bundle{}, false, err
	}
	b, err := decodeBundle(data)
	if err != nil {
		return Bundle{}, false, fmt.Errorf("provisioning: store: %s: %w", filepath.Join(s.dir, name), err)
	}
	return b, true, nil
}

// keepPrevious copies current.json, if any, to previous.json.
func (s *Store) keepPrevious() error {
	data, ok, err := s.read(currentFile)
	if err != nil || !ok {
		return err
	}
	return s.write(previousFile, data)
}

func (s *Store) read(name string) ([]byte, bool, error) {
	path := filepath.Join(s.dir, name)
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("provisioning: store: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxBundleFile+1))
	if err != nil {
		return nil, false, fmt.Errorf("provisioning: store: %s: %w", path, err)
	}
	if len(data) > maxBundleFile {
		return nil, false, fmt.Errorf("provisioning: store: %s: larger than %d bytes", path, maxBundleFile)
	}
	return data, true, nil
}

// write replaces name atomically: temp file in the same directory, write,
// fsync, close, rename, fsync the directory so the rename itself is durable.
func (s *Store) write(name string, data []byte) error {
	f, err := os.CreateTemp(s.dir, tmpPrefix+name+"-*")
	if err != nil {
		return fmt.Errorf("provisioning: store: %w", err)
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(s.dir, name))
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("provisioning: store: write %s: %w", name, err)
	}
	return syncDir(s.dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("provisioning: store: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("provisioning: store: sync %s: %w", dir, err)
	}
	return nil
}

// fileBundle is the layout of the files. Bodies are kept as text so that a
// person can read them; one that is not UTF-8 goes in body_base64 instead,
// as JSON strings cannot carry arbitrary bytes.
type fileBundle struct {
	Format  int      `json:"format"`
	Common  *fileDoc `json:"common,omitempty"`
	Station *fileDoc `json:"station"`
}

type fileDoc struct {
	URL          string    `json:"url"`
	ETag         string    `json:"etag,omitempty"`
	LastModified string    `json:"last_modified,omitempty"`
	Fetched      time.Time `json:"fetched"`
	SHA256       string    `json:"sha256"`
	Body         *string   `json:"body,omitempty"`
	BodyBase64   []byte    `json:"body_base64,omitempty"`
}

func encodeBundle(b Bundle) ([]byte, error) {
	if b.Station.URL == "" {
		return nil, errors.New("bundle has no station document")
	}
	fb := fileBundle{Format: bundleFormat}
	var err error
	if fb.Station, err = encodeDoc(b.Station); err != nil {
		return nil, err
	}
	if b.Common.URL != "" {
		if fb.Common, err = encodeDoc(b.Common); err != nil {
			return nil, err
		}
	}
	data, err := json.MarshalIndent(fb, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(data, '\n'), nil
}

func encodeDoc(d Document) (*fileDoc, error) {
	// JSON strings cannot carry other bytes; header values are ASCII anyway.
	for _, v := range []string{d.URL, d.ETag, d.LastModified} {
		if !utf8.ValidString(v) {
			return nil, fmt.Errorf("%q is not UTF-8", v)
		}
	}
	sum := sha256.Sum256(d.Body)
	fd := &fileDoc{URL: d.URL, ETag: d.ETag, LastModified: d.LastModified, Fetched: d.Fetched, SHA256: hex.EncodeToString(sum[:])}
	if utf8.Valid(d.Body) {
		body := string(d.Body)
		fd.Body = &body
	} else {
		fd.BodyBase64 = d.Body
	}
	return fd, nil
}

// decodeBundle parses and checks a bundle file; anything but a complete,
// intact file of the known format is an error.
func decodeBundle(data []byte) (Bundle, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var fb fileBundle
	if err := dec.Decode(&fb); err != nil {
		return Bundle{}, fmt.Errorf("decode: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return Bundle{}, errors.New("decode: data after the bundle")
	}
	if fb.Format != bundleFormat {
		return Bundle{}, fmt.Errorf("format %d, want %d", fb.Format, bundleFormat)
	}
	if fb.Station == nil {
		return Bundle{}, errors.New("no station document")
	}
	var b Bundle
	var err error
	if b.Station, err = decodeDoc("station", fb.Station); err != nil {
		return Bundle{}, err
	}
	if fb.Common != nil {
		if b.Common, err = decodeDoc("common", fb.Common); err != nil {
			return Bundle{}, err
		}
	}
	return b, nil
}

func decodeDoc(which string, fd *fileDoc) (Document, error) {
	if fd.URL == "" {
		return Document{}, fmt.Errorf("%s: no url", which)
	}
	var body []byte
	switch {
	case fd.Body != nil && fd.BodyBase64 != nil:
		return Document{}, fmt.Errorf("%s: both body and body_base64", which)
	case fd.Body != nil:
		body = []byte(*fd.Body)
	case fd.BodyBase64 != nil:
		body = fd.BodyBase64
	default:
		return Document{}, fmt.Errorf("%s: no body", which)
	}
	sum := sha256.Sum256(body)
	if fd.SHA256 != hex.EncodeToString(sum[:]) {
		return Document{}, fmt.Errorf("%s: body does not match its sha256", which)
	}
	return Document{URL: fd.URL, Body: body, ETag: fd.ETag, LastModified: fd.LastModified, Fetched: fd.Fetched}, nil
}
