package provisioning

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func bundle(station, common string) Bundle {
	b := Bundle{Station: Document{URL: "https://p/st.yaml", Body: []byte(station), ETag: `"s1"`, LastModified: "Sun, 01 Mar 2026 12:00:00 GMT", Fetched: t0}}
	if common != "" {
		b.Common = Document{URL: "https://p/common.yaml", Body: []byte(common), ETag: `"c"`, Fetched: t0}
	}
	return b
}

func equalBundle(a, b Bundle) bool {
	eq := func(x, y Document) bool {
		return x.URL == y.URL && bytes.Equal(x.Body, y.Body) && x.ETag == y.ETag && x.LastModified == y.LastModified && x.Fetched.Equal(y.Fetched)
	}
	return eq(a.Common, b.Common) && eq(a.Station, b.Station)
}

func mustOpen(t *testing.T, dir string) *Store {
	t.Helper()
	s, err := OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestStoreLifecycle(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	s := mustOpen(t, dir)
	if info, err := os.Stat(dir); err != nil || info.Mode().Perm() != 0o700 {
		t.Fatalf("state dir: %v %v", info.Mode(), err)
	}
	if _, ok, err := s.Current(); ok || err != nil {
		t.Fatalf("empty store: ok=%v err=%v", ok, err)
	}
	if err := s.Confirm(); err == nil {
		t.Fatal("Confirm with no current bundle succeeded")
	}
	a := bundle("sip: {user: a}\n", "calls: {ring_timeout: 20s}\n")
	if err := s.Save(a); err != nil {
		t.Fatal(err)
	}
	if err := s.Confirm(); err != nil {
		t.Fatal(err)
	}
	b := bundle("sip: {user: b}\n", "")
	if err := s.Save(b); err != nil {
		t.Fatal(err)
	}
	cur, ok, err := s.Current()
	if err != nil || !ok || !equalBundle(cur, b) {
		t.Fatalf("current %+v ok=%v err=%v", cur, ok, err)
	}
	good, ok, err := s.Good()
	if err != nil || !ok || !equalBundle(good, a) {
		t.Fatalf("good %+v ok=%v err=%v", good, ok, err)
	}
	prev, err := os.ReadFile(filepath.Join(dir, previousFile))
	if err != nil || !strings.Contains(string(prev), "sip: {user: a}") {
		t.Fatalf("previous.json: %s %v", prev, err)
	}
	// The file is for people too: the body is readable text.
	raw, _ := os.ReadFile(filepath.Join(dir, currentFile))
	if !strings.Contains(string(raw), `"body": "sip: {user: b}\n"`) || !strings.Contains(string(raw), `"format": 1`) {
		t.Fatalf("current.json:\n%s", raw)
	}
	rb, err := s.Rollback()
	if err != nil || !equalBundle(rb, a) {
		t.Fatalf("rollback %+v %v", rb, err)
	}
	if cur, _, _ := s.Current(); !equalBundle(cur, a) {
		t.Fatalf("current after rollback %+v", cur)
	}
	if err := s.Save(Bundle{}); err == nil {
		t.Fatal("bundle without station document saved")
	}
	assertNoTemp(t, dir)
}

func TestStoreBinaryBody(t *testing.T) {
	s := mustOpen(t, t.TempDir())
	b := bundle("\xff\xfe\x00bin", "")
	if err := s.Save(b); err != nil {
		t.Fatal(err)
	}
	if cur, _, err := s.Current(); err != nil || !equalBundle(cur, b) {
		t.Fatalf("binary body: %q %v", cur.Station.Body, err)
	}
}

func TestStoreRollbackWithoutGood(t *testing.T) {
	s := mustOpen(t, t.TempDir())
	if err := s.Save(bundle("a: 1\n", "")); err != nil {
		t.Fatal(err)
	}
	b, err := s.Rollback()
	if err != nil || !b.IsZero() {
		t.Fatalf("rollback with no good bundle: %+v %v", b, err)
	}
	if _, ok, err := s.Current(); ok || err != nil {
		t.Fatalf("current after rollback to nothing: ok=%v err=%v", ok, err)
	}
}

func TestStoreCorruptFileNamed(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir)
	if err := s.Save(bundle("a: 1\n", "")); err != nil {
		t.Fatal(err)
	}
	if err := s.Confirm(); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(filepath.Join(dir, currentFile))
	for name, data := range map[string][]byte{
		"truncated":     raw[:len(raw)/2],
		"edited body":   bytes.Replace(raw, []byte("a: 1"), []byte("a: 2"), 1),
		"other format":  bytes.Replace(raw, []byte(`"format": 1`), []byte(`"format": 2`), 1),
		"empty":         nil,
		"trailing junk": append(append([]byte{}, raw...), []byte("{}")...),
	} {
		os.WriteFile(filepath.Join(dir, currentFile), data, 0o600)
		_, ok, err := s.Current()
		if err == nil || ok || !strings.Contains(err.Error(), filepath.Join(dir, currentFile)) {
			t.Errorf("%s: ok=%v err=%v", name, ok, err)
		}
		if err := s.Confirm(); err == nil {
			t.Errorf("%s: corrupt current confirmed", name)
		}
	}
	if good, ok, err := s.Good(); err != nil || !ok || string(good.Station.Body) != "a: 1\n" {
		t.Fatalf("good spoilt: %v %v", ok, err)
	}
}

func TestOpenStoreRemovesStaleTemp(t *testing.T) {
	dir := t.TempDir()
	stale := writeFile(t, dir, tmpPrefix+"current.json-1", "{")
	fresh := writeFile(t, dir, tmpPrefix+"current.json-2", "{")
	old := time.Now().Add(-time.Hour)
	os.Chtimes(stale, old, old)
	mustOpen(t, dir)
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Fatalf("stale temp file kept: %v", err)
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Fatalf("a write in progress was removed: %v", err)
	}
	if _, err := OpenStore(""); err == nil {
		t.Fatal("empty dir accepted")
	}
}

func assertNoTemp(t *testing.T, dir string) {
	t.Helper()
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), tmpPrefix) {
			t.Errorf("temp file %s left behind", e.Name())
		}
	}
}

const crashChildEnv = "PROVISIONING_CRASH_CHILD_DIR"

// crashBody is the station document of save number n: it grows with n and
// is determined by n, so a reader can tell a complete one from a torn one.
func crashBody(n int) []byte {
	return []byte(strings.Repeat(fmt.Sprintf("# line of save %d\n", n), 1+n%300))
}

// TestSaveSurvivesSIGKILL kills processes at random points while they save
// bundles; the store must always open to a complete bundle, old or new.
func TestSaveSurvivesSIGKILL(t *testing.T) {
	if dir := os.Getenv(crashChildEnv); dir != "" {
		crashChild(dir)
		return
	}
	if testing.Short() {
		t.Skip("re-executes the test binary 200 times")
	}
	// Under `go test -exec qemu-...-static` (make arm-test) the binary is
	// foreign to the kernel unless binfmt_misc knows qemu; the native run
	// of make unit covers the store.
	if err := exec.Command(os.Args[0], "-test.run=^$").Run(); errors.Is(err, syscall.ENOEXEC) {
		t.Skipf("cannot re-execute the test binary here (%v): run natively", err)
	}
	// Four state directories in parallel keep 200 process starts (slow
	// under -race) within the time budget.
	const workers, perWorker = 4, 50
	deadline := time.Now().Add(8 * time.Second)
	var wg sync.WaitGroup
	kills := make([]int, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			kills[w] = crashWorker(t, t.TempDir(), rand.New(rand.NewPCG(1, uint64(w))), perWorker, deadline)
		}()
	}
	wg.Wait()
	total := 0
	for _, k := range kills {
		total += k
	}
	t.Logf("%d kills", total)
	// A loaded machine gets fewer rounds done; a handful still shows a torn
	// write sooner or later, and the limit keeps the test from passing idle.
	if total < 10 {
		t.Fatalf("only %d kills in time", total)
	}
}

// crashWorker runs up to n kill-and-check rounds on dir and returns how
// many it ran.
func crashWorker(t *testing.T, dir string, rng *rand.Rand, n int, deadline time.Time) int {
	last := -1
	i := 0
	for ; i < n && time.Now().Before(deadline); i++ {
		cmd := exec.Command(os.Args[0], "-test.run=^TestSaveSurvivesSIGKILL$")
		cmd.Env = append(os.Environ(), crashChildEnv+"="+dir)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Error(err)
			return i
		}
		if err := cmd.Start(); err != nil {
			t.Error(err)
			return i
		}
		// Wait for the child to reach its save loop, then kill it within
		// about one Save and Confirm.
		bufio.NewReader(out).ReadString('\n')
		time.Sleep(time.Duration(rng.IntN(10_000)) * time.Microsecond)
		cmd.Process.Kill()
		cmd.Wait()

		s, err := OpenStore(dir)
		if err != nil {
			t.Error(err)
			return i
		}
		cur, ok, err := s.Current()
		if err != nil || (!ok && last >= 0) {
			t.Errorf("round %d: current: ok=%v err=%v", i, ok, err)
			return i
		}
		if !ok {
			continue // killed before the first save completed
		}
		n, err := strconv.Atoi(cur.Station.ETag)
		if err != nil || !bytes.Equal(cur.Station.Body, crashBody(n)) {
			t.Errorf("round %d: torn bundle: etag %q, %d bytes", i, cur.Station.ETag, len(cur.Station.Body))
			return i
		}
		if n < last {
			t.Errorf("round %d: save %d went back to %d", i, last, n)
			return i
		}
		last = n
		good, ok, err := s.Good()
		if err != nil || (ok && !bytes.Equal(good.Station.Body, crashBody(atoi(good.Station.ETag)))) {
			t.Errorf("round %d: good: ok=%v err=%v", i, ok, err)
			return i
		}
	}
	return i
}

func atoi(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		return -1
	}
	return n
}

// crashChild saves bundles numbered on from the current one until killed.
func crashChild(dir string) {
	s, err := OpenStore(dir)
	if err != nil {
		panic(err)
	}
	n := 0
	if cur, ok, err := s.Current(); err == nil && ok {
		n, _ = strconv.Atoi(cur.Station.ETag)
	}
	fmt.Println("saving")
	for i := 0; ; i++ {
		n++
		b := Bundle{Station: Document{URL: "https://p/st.yaml", Body: crashBody(n), ETag: strconv.Itoa(n), Fetched: t0}}
		if err := s.Save(b); err != nil {
			panic(err)
		}
		if i%3 == 2 {
			if err := s.Confirm(); err != nil {
				panic(err)
			}
		}
	}
}
