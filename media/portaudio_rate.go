package media

import (
	"fmt"
	"math"

	"intercom/media/resample"
)

// A sound card that refuses the call's rate is opened at its own rate and
// converted in software. These parts of the portaudio backend need no cgo,
// so they are tested without a sound card.

// chooseRate returns the rate to open a device at for a stream of want Hz:
// want itself if the device takes it, or else the device's default rate if
// the device takes that and a resampler can convert from it. supports asks
// the device.
func chooseRate(want int, devDefault float64, supports func(rate int) bool) (int, error) {
	if supports(want) {
		return want, nil
	}
	rate := int(math.Round(devDefault))
	switch {
	case rate < want:
		// Capture would have to be upsampled, which gives no exact frames;
		// no sound card is slower than a call.
		return 0, fmt.Errorf("does not support %d Hz (its default rate is %g Hz)", want, devDefault)
	case !supports(rate):
		return 0, fmt.Errorf("supports neither %d Hz nor its default rate %g Hz", want, devDefault)
	}
	if _, err := resample.New(rate, want); err != nil {
		return 0, fmt.Errorf("does not support %d Hz (its default rate is %g Hz): %w", want, devDefault, err)
	}
	return rate, nil
}

// deviceFrames is how many samples at the device's rate one frame of
// samples at rate lasts, rounded up: the device's buffer size.
func deviceFrames(samples, rate, devRate int) int {
	return (samples*devRate + rate - 1) / rate
}

// rateConv converts the frames of one stream between the call's rate and
// the device's. It reuses one buffer, so a stream of same-sized frames
// allocates nothing after the first.
type rateConv struct {
	r   *resample.Resampler
	buf []int16
}

func newRateConv(from, to, frameSamples int) (*rateConv, error) {
	r, err := resample.New(from, to)
	if err != nil {
		return nil, err
	}
	return &rateConv{r: r, buf: make([]int16, deviceFrames(frameSamples, min(from, to), max(from, to))+1)}, nil
}

func (c *rateConv) grow(n int) []int16 {
	if cap(c.buf) < n {
		c.buf = make([]int16, n)
	}
	return c.buf[:n]
}

// read fills frame, at the call's rate, from exactly as many device
// samples as it takes: dev reads them from the card, which thereby still
// paces the caller.
func (c *rateConv) read(frame []int16, dev func([]int16) error) error {
	b := c.grow(c.r.InLen(len(frame)))
	if err := dev(b); err != nil {
		return err
	}
	_, err := c.r.Process(frame, b)
	return err
}

// write converts frame to the device's rate and hands it to dev.
func (c *rateConv) write(frame []int16, dev func([]int16) error) error {
	b := c.grow(c.r.OutLen(len(frame)))
	if _, err := c.r.Process(b, frame); err != nil {
		return err
	}
	return dev(b)
}
