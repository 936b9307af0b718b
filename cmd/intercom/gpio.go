package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	pgpio "periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpioreg"
	"periph.io/x/conn/v3/pin"
	"periph.io/x/host/v3"

	"intercom/gpio"
	"intercom/gpio/sim"
	"intercom/internal/clock"
)

// maxBringUpPulse bounds `gpio pulse`: long enough to hear a lock, short
// enough not to cook a coil or leave a door open by a typo.
const maxBringUpPulse = time.Minute

// gpioBoard is where the gpio commands find pins.
type gpioBoard interface {
	// list describes every pin, or returns an empty list.
	list() ([]pinInfo, error)
	// pin returns the pin called name.
	pin(name string) (pgpio.PinIO, error)
}

// pinInfo is one row of `gpio list`.
type pinInfo struct {
	name, function, level string
	aliases               []string
}

// gpioEnv is what the gpio commands take from the process, so tests can
// hand in a fake board, a sim bank and a fake clock.
type gpioEnv struct {
	host  gpioBoard // the real board; used without -sim
	bank  *sim.Bank // the virtual pins of -sim
	clock clock.Clock
	stdin io.Reader // drives the watched pin with -sim
}

// gpioCmd is `intercom gpio list|watch PIN|pulse PIN DURATION`: the
// installer's bring-up tools at a real board, or on virtual pins with -sim.
func gpioCmd(args []string, stdout, stderr io.Writer) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	env := gpioEnv{host: hostBoard{}, bank: sim.NewBank(), clock: clock.Real{}, stdin: os.Stdin}
	return gpioRun(ctx, env, args, stdout, stderr)
}

func gpioRun(ctx context.Context, env gpioEnv, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return usageError{errors.New("gpio: list, watch or pulse?")}
	}
	fs := flag.NewFlagSet("gpio "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	simulate := fs.Bool("sim", false, "use virtual pins (gpio/sim) instead of the board's")
	board := func() gpioBoard {
		if *simulate {
			return simBoard{env.bank}
		}
		return env.host
	}
	switch args[0] {
	case "list":
		if _, err := parseInterspersed(fs, args[1:], 0); err != nil {
			return err
		}
		return gpioList(board(), *simulate, stdout)
	case "watch":
		pull := fs.String("pull", "up", "pull resistor: up, down or none")
		active := fs.String("active", "low", "level that means active: low or high")
		debounce := fs.Duration("debounce", gpio.DefaultDebounce, "how long the line must be quiet")
		long := fs.Duration("long", 0, "report a long press after this long (0: off)")
		pos, err := parseInterspersed(fs, args[1:], 1)
		if err != nil {
			return err
		}
		cfg, err := watchConfig(pos[0], *pull, *active, *debounce, *long)
		if err != nil {
			return err
		}
		var drive io.Reader
		if *simulate {
			drive = env.stdin
		}
		return gpioWatch(ctx, board(), cfg, env.clock, drive, stdout, stderr)
	case "pulse":
		active := fs.String("active", "high", "level that energises the relay: high or low")
		pos, err := parseInterspersed(fs, args[1:], 2)
		if err != nil {
			return err
		}
		d, err := time.ParseDuration(pos[1])
		if err != nil {
			return usageError{fmt.Errorf("gpio pulse: DURATION: %w", err)}
		}
		if d <= 0 || d > maxBringUpPulse {
			return usageError{fmt.Errorf("gpio pulse: DURATION %s out of range (0, %s]", d, maxBringUpPulse)}
		}
		activeLow, err := activeLevel("gpio pulse", *active)
		if err != nil {
			return err
		}
		return gpioPulse(ctx, board(), pos[0], activeLow, d, env.clock, stdout)
	default:
		return usageError{fmt.Errorf("gpio: unknown subcommand %q", args[0])}
	}
}

// parseInterspersed parses flags before, between and after exactly n
// positional arguments, so `gpio watch GPIO17 -pull down` works as typed.
func parseInterspersed(fs *flag.FlagSet, args []string, n int) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, usageError{err}
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(pos) != n {
		names := map[int]string{0: "no arguments", 1: "one PIN", 2: "PIN and DURATION"}[n]
		return nil, usageError{fmt.Errorf("%s: want %s, got %d argument(s)", fs.Name(), names, len(pos))}
	}
	return pos, nil
}

func activeLevel(cmd, s string) (activeLow bool, err error) {
	switch s {
	case "low":
		return true, nil
	case "high":
		return false, nil
	}
	return false, usageError{fmt.Errorf("%s: -active %q: want low or high", cmd, s)}
}

func watchConfig(name, pull, active string, debounce, long time.Duration) (gpio.InputConfig, error) {
	cfg := gpio.InputConfig{Name: name, Debounce: debounce, LongPress: long}
	switch pull {
	case "up":
		cfg.Pull = pgpio.PullUp
	case "down":
		cfg.Pull = pgpio.PullDown
	case "none":
		cfg.Pull = pgpio.Float
	default:
		return cfg, usageError{fmt.Errorf("gpio watch: -pull %q: want up, down or none", pull)}
	}
	var err error
	if cfg.ActiveLow, err = activeLevel("gpio watch", active); err != nil {
		return cfg, err
	}
	if debounce <= 0 || long < 0 {
		return cfg, usageError{errors.New("gpio watch: -debounce must be positive and -long not negative")}
	}
	return cfg, nil
}

func gpioList(b gpioBoard, simulated bool, stdout io.Writer) error {
	pins, err := b.list()
	if err != nil {
		return err
	}
	if len(pins) == 0 {
		if simulated {
			fmt.Fprintln(stdout, "sim: virtual pins are made by name on first use; any name works, e.g. GPIO17")
			return nil
		}
		return errors.New("gpio list: this machine exposes no GPIO lines " +
			"(no /dev/gpiochip* that can be opened; on a Raspberry Pi, is this user in group gpio?)")
	}
	tw := tabwriter.NewWriter(stdout, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tFUNCTION\tLEVEL\tALIASES")
	for _, p := range pins {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", p.name, p.function, p.level, strings.Join(p.aliases, ", "))
	}
	return tw.Flush()
}

// gpioWatch prints the debounced changes of one input until ctx is done.
// With drive set (-sim), lines read from it ("low", "high") drive the pin.
func gpioWatch(ctx context.Context, b gpioBoard, cfg gpio.InputConfig, clk clock.Clock, drive io.Reader, stdout, stderr io.Writer) error {
	p, err := b.pin(cfg.Name)
	if err != nil {
		return err
	}
	cfg.Pin, cfg.Clock = p, clk
	cfg.Logger = slog.New(slog.NewTextHandler(stderr, nil))
	in, err := gpio.NewInput(cfg)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: %s; Ctrl-C stops\n", cfg.Name, state(in.Active(), false))
	if sp, ok := p.(*sim.Pin); ok && drive != nil {
		fmt.Fprintf(stdout, "sim: type low or high to drive %s\n", cfg.Name)
		// Reading stdin cannot be interrupted; the goroutine ends at EOF, or
		// with the process right after watch returns.
		go driveSim(drive, sp, stderr)
	}

	out := make(chan gpio.Change, 16)
	done := make(chan error, 1)
	go func() { done <- in.Run(ctx, out) }()
	for {
		select {
		case c := <-out:
			fmt.Fprintf(stdout, "%s %s: %s\n", c.At.Format("15:04:05.000"), c.Name, state(c.Active, c.Long))
		case err := <-done:
			return err
		}
	}
}

func state(active, long bool) string {
	switch {
	case long:
		return "long press"
	case active:
		return "active"
	default:
		return "inactive"
	}
}

func driveSim(r io.Reader, p *sim.Pin, stderr io.Writer) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		switch strings.ToLower(strings.TrimSpace(sc.Text())) {
		case "low", "0":
			p.Drive(pgpio.Low)
		case "high", "1":
			p.Drive(pgpio.High)
		case "":
		default:
			fmt.Fprintf(stderr, "sim: %q: type low or high\n", sc.Text())
		}
	}
}

// gpioPulse drives one output active for d through a gpio.Relay, which
// enforces d as its max_on, and leaves it inactive.
func gpioPulse(ctx context.Context, b gpioBoard, name string, activeLow bool, d time.Duration, clk clock.Clock, stdout io.Writer) error {
	p, err := b.pin(name)
	if err != nil {
		return err
	}
	changes := make(chan bool, 4) // at most on, then off
	r, err := gpio.NewRelay(gpio.RelayConfig{Name: name, Pin: p, ActiveLow: activeLow, MaxOn: d, Clock: clk,
		OnChange: func(active bool) { changes <- active }})
	if err != nil {
		return err
	}
	if err := r.Pulse(d); err != nil {
		return errors.Join(err, r.Close())
	}
	start := clk.Now()
	fmt.Fprintf(stdout, "%s %s: on for %s\n", start.Format("15:04:05.000"), name, d)
	for {
		select {
		case active := <-changes:
			if active {
				continue
			}
			now := clk.Now()
			fmt.Fprintf(stdout, "%s %s: off after %s\n", now.Format("15:04:05.000"), name, now.Sub(start).Round(time.Millisecond))
			return r.Close()
		case <-ctx.Done():
			err := r.Close()
			fmt.Fprintf(stdout, "%s %s: off, interrupted\n", clk.Now().Format("15:04:05.000"), name)
			return err
		}
	}
}

// hostBoard is the real board through periph's drivers.
type hostBoard struct{}

func (hostBoard) init() error {
	if _, err := host.Init(); err != nil {
		return fmt.Errorf("gpio: init host drivers: %w", err)
	}
	return nil
}

func (h hostBoard) list() ([]pinInfo, error) {
	if err := h.init(); err != nil {
		return nil, err
	}
	return pinInfos(gpioreg.All(), gpioreg.Aliases()), nil
}

func (h hostBoard) pin(name string) (pgpio.PinIO, error) {
	if err := h.init(); err != nil {
		return nil, err
	}
	p := gpioreg.ByName(name)
	if p == nil {
		return nil, usageError{fmt.Errorf("gpio: no pin named %q on this board (intercom gpio list shows them)", name)}
	}
	return p, nil
}

// pinInfos describes pins without touching them: the gpio character device
// driver would claim and reconfigure a line just to read it, so the level
// is shown only where the function already tells it.
func pinInfos(pins, aliases []pgpio.PinIO) []pinInfo {
	byReal := map[string][]string{}
	for _, a := range aliases {
		if r, ok := a.(pgpio.RealPin); ok {
			byReal[r.Real().Name()] = append(byReal[r.Real().Name()], a.Name())
		}
	}
	infos := make([]pinInfo, 0, len(pins))
	for _, p := range pins {
		info := pinInfo{name: p.Name(), function: "-", level: "-", aliases: byReal[p.Name()]}
		if pf, ok := p.(pin.PinFunc); ok && pf.Func() != pin.FuncNone {
			f := pf.Func()
			info.function = string(f)
			switch f {
			case pgpio.IN_HIGH, pgpio.OUT_HIGH:
				info.level = "high"
			case pgpio.IN_LOW, pgpio.OUT_LOW:
				info.level = "low"
			}
		}
		infos = append(infos, info)
	}
	return infos
}

// simBoard is the virtual pins of gpio/sim.
type simBoard struct{ bank *sim.Bank }

// list is empty: virtual pins exist once used.
func (simBoard) list() ([]pinInfo, error) { return nil, nil }

func (s simBoard) pin(name string) (pgpio.PinIO, error) { return s.bank.Pin(name), nil }
