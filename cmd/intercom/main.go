// Command intercom is the door station firmware: it runs the station and
// offers the installer's tools around it (DESIGN §3).
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"

	"intercom/device/config"
	"intercom/provisioning"
)

// version is stamped at build time with -ldflags "-X main.version=...".
var version = "dev"

const defaultConfig = "/etc/intercom/intercom.yaml"

// Exit codes (DESIGN §3): systemd does not restart on exitUsage.
const (
	exitRuntime = 1
	exitUsage   = 2
)

// usageError marks failures of the command line or the config file.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func main() {
	err := run(os.Args[1:], os.Stdout, os.Stderr)
	if err == nil {
		return
	}
	if !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "intercom:", err)
	}
	var ue usageError
	if errors.As(err, &ue) || errors.Is(err, flag.ErrHelp) {
		os.Exit(exitUsage)
	}
	os.Exit(exitRuntime)
}

const usage = `usage:
  intercom run [-config PATH]          run the door station (default ` + defaultConfig + `)
  intercom config check PATH           validate a config file
  intercom config show [-config PATH]  print the effective config, secrets masked
  intercom version                     print version, commit, Go version, platform
  intercom doctor [-config PATH]       check config, clock, network, registrar, sound
                                       devices and GPIO lines; one line per check
  intercom gpio list [-sim]            list the board's GPIO lines
  intercom gpio watch [-sim] [-pull up|down|none] [-active low|high] PIN
                                       print debounced changes of an input
  intercom gpio pulse [-sim] [-active high|low] PIN DURATION
                                       switch an output on for DURATION (<= 1m)
  intercom audio devices               list the sound devices (PortAudio)
  intercom audio test [-config PATH] [-duration 2s]
                                       play a tone, record the microphone, report
                                       its level and the round trip
  intercom provision render TEMPLATE CSV OUTDIR
                                       write OUTDIR/<mac>.yaml for each CSV row
                                       (header: mac, extension, password[, name])
                                       from a template using {{.MAC}},
                                       {{.Extension}}, {{.Password}}, {{.Name}};
                                       {{yaml .Password}} inserts a quoted value,
                                       as in password: {{yaml .Password}}
`

func run(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return usageError{errors.New("no command given")}
	}
	switch cmd, rest := args[0], args[1:]; cmd {
	case "run":
		path, err := configFlag("run", rest, stderr)
		if err != nil {
			return err
		}
		return runStation(path, stderr)
	case "config":
		return configCmd(rest, stdout, stderr)
	case "audio":
		return audioCmd(rest, stdout, stderr)
	case "gpio":
		return gpioCmd(rest, stdout, stderr)
	case "doctor":
		return doctorCmd(rest, stdout, stderr)
	case "provision":
		return provisionCmd(rest, stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, versionString())
		return nil
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprint(stderr, usage)
		return usageError{fmt.Errorf("unknown command %q", cmd)}
	}
}

func configFlag(name string, args []string, stderr io.Writer) (string, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", defaultConfig, "config file")
	if err := fs.Parse(args); err != nil {
		return "", usageError{err}
	}
	if fs.NArg() > 0 {
		return "", usageError{fmt.Errorf("%s: unexpected argument %q", name, fs.Arg(0))}
	}
	return *path, nil
}

func configCmd(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return usageError{errors.New("config: check or show?")}
	}
	switch args[0] {
	case "check":
		if len(args) != 2 {
			return usageError{errors.New("config check: exactly one PATH expected")}
		}
		if _, err := config.Load(args[1]); err != nil {
			return usageError{err}
		}
		fmt.Fprintf(stdout, "%s: ok\n", args[1])
		return nil
	case "show":
		path, err := configFlag("config show", args[1:], stderr)
		if err != nil {
			return err
		}
		local, cfg, err := loadLocal(path)
		if err != nil {
			return usageError{err}
		}
		if cfg.Provisioning.URL != "" {
			// What the station would run: the stored provisioned
			// documents merged over the file.
			store, err := provisioning.OpenStore(provisioningDir(cfg.Provisioning))
			if err != nil {
				fmt.Fprintf(stderr, "intercom: showing %s alone: %v\n", path, err)
			} else {
				cfg = effective(store, local, cfg)
			}
		}
		out, err := config.Marshal(cfg.Masked())
		if err != nil {
			return err
		}
		_, err = stdout.Write(out)
		return err
	default:
		return usageError{fmt.Errorf("config: unknown subcommand %q", args[0])}
	}
}

func versionString() string {
	commit, date := "unknown", ""
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				commit = s.Value
			case "vcs.time":
				date = " " + s.Value
			case "vcs.modified":
				if s.Value == "true" {
					commit += "-dirty"
				}
			}
		}
	}
	return fmt.Sprintf("intercom %s (commit %s%s) %s %s/%s", version, commit, date, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
