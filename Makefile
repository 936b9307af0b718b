# intercom: build, test and run the door station firmware.
GO       ?= go
BIN      := bin/intercom
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X main.version=$(VERSION)
# The API is plain HTTP/1.1 on loopback; leaving out net/http's bundled
# HTTP/2 makes the binary (which is resident whole) 350 kB smaller.
TAGS     := nethttpomithttp2
DEB_PKGS := kamailio kamailio-tls-modules baresip-core sip-tester sox nginx-light dnsmasq-base systemd portaudio19-dev pulseaudio pulseaudio-utils libasound2-plugins tshark qemu-user-static
TONE     := examples/test-tone.wav

.PHONY: all build deps run test unit arm-test fuzz e2e vet bench clean

all: build

build:
	$(GO) build -buildvcs=auto -trimpath -tags '$(TAGS)' -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/intercom

# deps installs the Debian packages the tests and the demo use; as a normal
# user it only says what to install.
deps:
	@missing=""; for p in $(DEB_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -z "$$missing" ]; then echo "deps: all installed"; \
	elif [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	else echo "deps: missing:$$missing"; echo "deps: install with: sudo apt-get install$$missing"; exit 1; fi

$(TONE):
	@command -v sox >/dev/null || { echo "sox is needed for the demo tone: sudo apt-get install sox"; exit 1; }
	sox -n -r 8000 -c 1 -b 16 $@ synth 3 sine 440 gain -6

run: build $(TONE)
	./$(BIN) run -config examples/sim.yaml

STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2

vet:
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...
	CGO_ENABLED=0 $(GO) build ./...
	@test -z "$$(gofmt -l .)" || { echo "gofmt needed:"; gofmt -l .; exit 1; }

unit:
	$(GO) test -race -count=1 $$($(GO) list ./... | grep -v /e2e)

# arm-test runs the unit tests built for the boards' CPUs (Pi 3/4/5 and
# Zero 2 W in 64-bit, Pi 2/3 in 32-bit, Pi Zero W/1 on ARMv6) under
# qemu-user: it catches word-size and 64-bit atomic alignment bugs. Pure Go
# only; PortAudio under qemu-user is not tried.
ARM_TARGETS := arm64:aarch64 arm/6:arm arm/7:arm

arm-test:
	@for t in $(ARM_TARGETS); do \
		arch=$${t%%:*}; qemu=qemu-$${t##*:}-static; goarch=$${arch%%/*}; goarm=$${arch#*/}; \
		[ "$$goarm" = "$$arch" ] && goarm=; \
		command -v $$qemu >/dev/null || { echo "arm-test: $$qemu missing: sudo apt-get install qemu-user-static"; exit 1; }; \
		echo "== $$goarch $${goarm:+v$$goarm} under $$qemu"; \
		CGO_ENABLED=0 GOARCH=$$goarch GOARM=$$goarm $(GO) test -count=1 -exec $$qemu \
			$$($(GO) list ./... | grep -v /e2e) || exit 1; \
	done

# fuzz runs every fuzz target (every `func Fuzz` outside e2e) for FUZZTIME
# on top of its committed seed corpus (testdata/fuzz); two to three minutes
# for all at the default. Run longer with e.g. `make fuzz FUZZTIME=2000000x`,
# or one target: go test -run '^$$' -fuzz '^FuzzSIPRequest$$' ./sipagent
# The default is a count: in Go 1.26 a -fuzztime duration can end in a
# spurious "context deadline exceeded" failure (golang/go#75804).
FUZZTIME ?= 50000x

fuzz:
	@for f in $$(grep -rl --include='*_test.go' '^func Fuzz' . | grep -v /e2e/); do \
		pkg=./$$(dirname $${f#./}); \
		for name in $$(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' $$f); do \
			echo "== $$pkg $$name ($(FUZZTIME))"; \
			$(GO) test -run '^$$' -fuzz "^$$name$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
		done; \
	done

# e2e runs the real peers (kamailio, baresip, sipp); INTERCOM_E2E=1 makes a
# missing peer a failure instead of a skip.
e2e:
	INTERCOM_E2E=1 $(GO) test -race -count=1 -timeout 15m ./e2e/...

# In `make test` a missing peer or sound server fails the run (CI installs
# them through deps); alone, `make unit` skips those tests with a hint.
test: export INTERCOM_E2E = 1
# The second cross build reuses the first one's build cache (the link and
# the packaging still run again), which keeps CI minutes down.
test: export PACKAGE_TEST_CACHE = shared
test: deps vet unit arm-test fuzz e2e package-test

# bench runs the micro-benchmarks, then the same G.711 call (BENCH_SECONDS
# long) answered by the station and by baresip, side by side, and the
# station's software-path latency (issue 3). Budgets print PASS or OVER.
BENCH_SECONDS ?= 60

bench: build
	$(GO) test -run '^$$' -bench . -benchmem ./...
	$(GO) run ./e2e/bench -intercom $(BIN) -seconds $(BENCH_SECONDS)

# cross builds the board binaries (linux/arm64, linux/arm v7) with cgo
# PortAudio, and linux/amd64, as $(DIST)/intercom-linux-ARCH. media dlopens
# libportaudio, so a build needs only a C (cross) compiler, its libc and
# portaudio.h, which is the same on every architecture: the host's
# portaudio19-dev serves, and no multiarch libraries or foreign apt indexes
# are needed. The builds are reproducible: -trimpath, and the date that
# `intercom version` shows is the commit's (vcs.time), not the build's.
# Cross compilers are those of an amd64 Debian 12 host.
DIST       ?= bin
CROSS      := amd64 arm64 armv7
CROSS_PKGS := gcc libc6-dev gcc-aarch64-linux-gnu libc6-dev-arm64-cross \
	gcc-arm-linux-gnueabihf libc6-dev-armhf-cross portaudio19-dev
CROSS_ENV_amd64 := GOARCH=amd64 CC=x86_64-linux-gnu-gcc
CROSS_ENV_arm64 := GOARCH=arm64 CC=aarch64-linux-gnu-gcc
CROSS_ENV_armv7 := GOARCH=arm GOARM=7 CC=arm-linux-gnueabihf-gcc
DEB_ARCH_amd64  := amd64
DEB_ARCH_arm64  := arm64
DEB_ARCH_armv7  := armhf
# The package version comes from git describe (packaging/debversion), its
# timestamps from the commit: the same commit gives the same .deb bytes.
DEB_VERSION       ?= $(shell packaging/debversion 2>/dev/null || echo 0.0.0~dev)
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)

.PHONY: cross cross-deps deb deb-native package-test $(CROSS:%=cross-%) $(CROSS:%=deb-%)

# cross-deps installs the cross compilers when run as root; as a normal
# user it only says what to install.
cross-deps:
	@missing=""; for p in $(CROSS_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -z "$$missing" ]; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	else echo "cross-deps: missing:$$missing"; echo "cross-deps: install with: sudo apt-get install$$missing"; exit 1; fi

cross: $(CROSS:%=cross-%)

$(CROSS:%=cross-%): cross-%: cross-deps
	CGO_ENABLED=1 GOOS=linux $(CROSS_ENV_$*) $(GO) build -buildvcs=auto -trimpath \
		-tags '$(TAGS)' -ldflags '$(LDFLAGS)' -o $(DIST)/intercom-linux-$* ./cmd/intercom

# deb packs $(DIST)/intercom_VERSION_{amd64,arm64,armhf}.deb (packaging/).
deb: $(CROSS:%=deb-%)

$(CROSS:%=deb-%): deb-%: cross-%
	@SOURCE_DATE_EPOCH=$(SOURCE_DATE_EPOCH) packaging/build-deb \
		$(DIST)/intercom-linux-$* $(DEB_ARCH_$*) '$(DEB_VERSION)' $(DIST)

# deb-native packs $(BIN) from `make build` for this machine's architecture:
# the way to a package on ARMv6 boards (Pi Zero W, Pi 1), which build
# natively because Debian's armhf, and so the cross builds, are ARMv7.
deb-native: build
	@SOURCE_DATE_EPOCH=$(SOURCE_DATE_EPOCH) packaging/build-deb \
		$(BIN) $$(dpkg --print-architecture) '$(DEB_VERSION)' $(DIST)

# package-test (root, on a throwaway machine: it installs and purges the
# package) checks that two cross builds are identical, runs the ARM binaries
# under qemu-user, inspects the packages, and installs, upgrades, removes
# and purges the amd64 one.
package-test:
	packaging/test.sh

clean:
	rm -rf bin $(TONE)
