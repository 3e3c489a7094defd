# Warren build. `make build` puts the agent/CLI and every plugin in bin/.
GO        ?= $(shell command -v go 2>/dev/null || echo /usr/local/go/bin/go)
BIN       ?= bin
PLUGINS   := $(notdir $(wildcard plugins/*))
PROTOS    := $(shell find sdk core -name '*.proto' -not -path '*/testdata/*')
PROTOC_GEN_GO_VERSION      := v1.36.11
PROTOC_GEN_GO_GRPC_VERSION := v1.6.2

.PHONY: all build warren plugins install proto proto-tools test test-short bench vet fmt clean

# Where `make install` puts things; DESTDIR is prepended to every path (for
# packaging), the paths written into the unit and the sample config are
# without it.
PREFIX     ?= /usr/local
BINDIR     ?= $(PREFIX)/bin
PLUGINDIR  ?= $(PREFIX)/lib/warren/plugins
SYSCONFDIR ?= /etc
UNITDIR    ?= /etc/systemd/system
DESTDIR    ?=
DIST_SUBST := sed -e 's|@BINDIR@|$(BINDIR)|g' -e 's|@PLUGINDIR@|$(PLUGINDIR)|g' -e 's|@SYSCONFDIR@|$(SYSCONFDIR)|g'

all: build

build: warren plugins

warren:
	$(GO) build -o $(BIN)/warren ./cmd/warren

# Plugins live next to the warren binary in bin/plugins, the default plugin_dir.
plugins:
	@mkdir -p $(BIN)/plugins
	@for p in $(PLUGINS); do \
		echo "$(GO) build -o $(BIN)/plugins/$$p ./plugins/$$p"; \
		$(GO) build -o $(BIN)/plugins/$$p ./plugins/$$p || exit 1; \
	done

# Installs warren, its plugins, the systemd unit and, only if there is none,
# a sample $(SYSCONFDIR)/warren/agent.hcl (docs/operations.md).
install: build
	install -D -m 0755 $(BIN)/warren $(DESTDIR)$(BINDIR)/warren
	@for p in $(PLUGINS); do \
		echo "install -D -m 0755 $(BIN)/plugins/$$p $(DESTDIR)$(PLUGINDIR)/$$p"; \
		install -D -m 0755 $(BIN)/plugins/$$p $(DESTDIR)$(PLUGINDIR)/$$p || exit 1; \
	done
	@mkdir -p $(BIN)/dist
	$(DIST_SUBST) dist/warren.service > $(BIN)/dist/warren.service
	install -D -m 0644 $(BIN)/dist/warren.service $(DESTDIR)$(UNITDIR)/warren.service
	@if [ -e $(DESTDIR)$(SYSCONFDIR)/warren/agent.hcl ]; then \
		echo "keeping the existing $(DESTDIR)$(SYSCONFDIR)/warren/agent.hcl"; \
	else \
		$(DIST_SUBST) dist/agent.hcl > $(BIN)/dist/agent.hcl && \
		echo "install -D -m 0600 $(BIN)/dist/agent.hcl $(DESTDIR)$(SYSCONFDIR)/warren/agent.hcl" && \
		install -D -m 0600 $(BIN)/dist/agent.hcl $(DESTDIR)$(SYSCONFDIR)/warren/agent.hcl; \
	fi

proto-tools:
	$(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
	$(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)

# Regenerates the committed protobuf code. Needs protoc (Debian: protobuf-compiler).
proto: proto-tools
	PATH="$$($(GO) env GOPATH)/bin:$$PATH" protoc -I . \
		--go_out=. --go_opt=paths=source_relative \
		--go-grpc_out=. --go-grpc_opt=paths=source_relative \
		$(PROTOS)

vet:
	$(GO) vet ./...

fmt:
	gofmt -l -w $$(find . -name '*.go' -not -path './.git/*')

# The whole suite (see README): needs root, containerd and runc for the later issues.
test: build
	$(GO) test -race -count=1 -timeout 40m ./...

test-short:
	$(GO) test -short -count=1 ./...

bench: build
	$(GO) test -run '^$$' -bench . -benchtime 3s ./test/bench/...

clean:
	rm -rf $(BIN)
