package device

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"intercom/device/config"
	"intercom/media/tone"
	"intercom/sipagent"
)

// newPromptHarness is newHarness with recorded prompts wired in.
func newPromptHarness(t *testing.T, prompts Prompts) *harness {
	t.Helper()
	return newHarnessWith(t, testYAML, func(_ *harness, c *Config) { c.Prompts = prompts })
}

// Recordings of different lengths, so that their Strings tell them apart.
var (
	openedPrompt   = tone.Spec{Samples: make([]int16, 800)}
	rejectedPrompt = tone.Spec{Samples: make([]int16, 1600)}
	busyPrompt     = tone.Spec{Samples: make([]int16, 2400)}
)

func TestDoorOpenedPromptReplacesTone(t *testing.T) {
	h := newPromptHarness(t, Prompts{DoorOpened: openedPrompt, Rejected: rejectedPrompt})
	_, onDigit := h.answerBell()
	h.keys(onDigit, "9999")
	h.expectEvent("code_rejected")
	h.keys(onDigit, "1234")
	h.expectEvent("door_opened")
	want := []string{rejectedPrompt.String(), openedPrompt.String()}
	if got := h.stream.played(); !slices.Equal(got, want) {
		t.Fatalf("tones %q, want the configured prompts %q", got, want)
	}
}

func TestBusyPromptReplacesToneUnreachableKeepsIt(t *testing.T) {
	for _, c := range []struct {
		err  error
		want string
	}{
		{&sipagent.StatusError{Code: 486, Reason: "Busy Here"}, busyPrompt.String()},
		{sipagent.ErrNoAnswer, tone.Unreachable().String()},
	} {
		h := newPromptHarness(t, Prompts{Busy: busyPrompt})
		if err := h.st.PressButton(context.Background(), "bell"); err != nil {
			t.Fatal(err)
		}
		<-h.phone.reqs
		h.phone.results <- dialResult{err: c.err}
		h.expectEvent("hangup")
		h.sync() // the announcement follows the hangup event in the loop
		if got := h.media.announcements(); !slices.Equal(got, []string{c.want}) {
			t.Errorf("%v: announced %q, want %q", c.err, got, c.want)
		}
	}
}

func TestInvalidPromptIsRefused(t *testing.T) {
	cfg, err := config.Parse("test.yaml", []byte(testYAML))
	if err != nil {
		t.Fatal(err)
	}
	bad := tone.DoorOpened()
	bad.Samples = []int16{1}
	_, err = New(Config{
		Config: cfg, Phone: &fakePhone{}, Media: &fakeMedia{},
		Relays: map[string]Relay{"door": &fakeRelay{}}, Buttons: map[string]Input{"bell": fakeInput{}},
		Prompts: Prompts{Unreachable: bad},
	})
	if err == nil || !strings.Contains(err.Error(), "device: prompt unreachable: tone: both steps and samples") {
		t.Fatalf("New = %v, want the bad prompt named", err)
	}
}

func TestAnnounceForLetsARecordingEnd(t *testing.T) {
	for _, c := range []struct {
		spec tone.Spec
		want time.Duration
	}{
		{tone.Busy(), failureToneFor},
		{busyPrompt, failureToneFor},
		{tone.Spec{Samples: make([]int16, 8*tone.SampleRate)}, 9 * time.Second},
	} {
		if got := announceFor(c.spec); got != c.want {
			t.Errorf("announceFor(%v) = %v, want %v", c.spec, got, c.want)
		}
	}
}
