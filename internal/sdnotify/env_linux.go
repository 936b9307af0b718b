package sdnotify

import "os"

// FromEnv returns the Notifier systemd set this process up for; a
// disabled one when NOTIFY_SOCKET is unset. Malformed variables are an
// error and give no Notifier.
func FromEnv() (*Notifier, error) {
	return parseEnv(os.Getenv, os.Getpid())
}
