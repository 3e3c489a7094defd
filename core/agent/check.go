package agent

import (
	"errors"
	"fmt"
	"os"

	"github.com/warrenorch/warren/config"
	"github.com/warrenorch/warren/sdk"
)

// pluginUse is one plugin the configuration's roles run: the attribute
// that names it and its kind.
type pluginUse struct {
	name string
	kind sdk.Kind
	use  string // the attribute naming it, e.g. "manager.store"
}

// pluginUses lists the plugins the roles of cfg run, in start order.
func pluginUses(cfg *config.Agent) []pluginUse {
	var uses []pluginUse
	if cfg.Worker != nil {
		uses = append(uses, pluginUse{cfg.Worker.Runtime, sdk.KindRuntime, "worker.runtime"})
		if cfg.Worker.Network != "" {
			uses = append(uses, pluginUse{cfg.Worker.Network, sdk.KindNetwork, "worker.network"})
		}
	}
	if cfg.Manager != nil {
		uses = append(uses,
			pluginUse{cfg.Manager.Store, sdk.KindStore, "manager.store"},
			pluginUse{cfg.Manager.Scheduler, sdk.KindScheduler, "manager.scheduler"})
	}
	return uses
}

// CheckConfig checks what of a loaded configuration can be checked without
// starting anything: the binary of every plugin a role uses and of every
// plugin block exists and is executable, the api_socket fits in a unix
// socket's path and its api_socket_group exists, and
// no attribute asks for what this agent does not do yet. It creates no file,
// binds no port and starts no process; Run calls it before it does any of
// that, and `warren agent -check` calls it alone. The config { } bodies of
// plugin blocks are checked against each plugin's schema when the plugin
// starts.
//
// The error joins every problem found, each naming the plugin, the
// attribute or block that wants it and the path. The warnings are plugin
// blocks that no role uses: their plugins are never started.
func CheckConfig(cfg *config.Agent) (warnings []string, err error) {
	var errs []error
	used := map[string]bool{}
	for _, u := range pluginUses(cfg) {
		if used[u.name] {
			continue
		}
		used[u.name] = true
		if err := checkPluginBinary(cfg.PluginPath(u.name)); err != nil {
			errs = append(errs, fmt.Errorf("plugin %q (%s): %w", u.name, u.use, err))
		}
	}
	for _, p := range cfg.Plugins {
		if used[p.Name] {
			continue
		}
		where := fmt.Sprintf("%s:%d:%d", p.DeclRange.Filename, p.DeclRange.Start.Line, p.DeclRange.Start.Column)
		if err := checkPluginBinary(cfg.PluginPath(p.Name)); err != nil {
			errs = append(errs, fmt.Errorf("plugin %q (block at %s): %w", p.Name, where, err))
		}
		warnings = append(warnings, fmt.Sprintf("plugin %q (block at %s) is not used by any role of this agent (manager.store, manager.scheduler, worker.runtime); it is not started", p.Name, where))
	}
	if err := checkAPISocketPath(cfg.APISocket); err != nil {
		errs = append(errs, err)
	}
	if cfg.APISocketGroup != "" {
		if _, err := lookupGroup(cfg.APISocketGroup); err != nil {
			errs = append(errs, fmt.Errorf("api_socket_group %q: %w", cfg.APISocketGroup, err))
		}
	}
	return warnings, errors.Join(errs...)
}

// checkPluginBinary checks that path is a regular file someone may execute.
func checkPluginBinary(path string) error {
	info, err := os.Stat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("binary %s does not exist (set plugin_dir, or path in the plugin block)", path)
	case err != nil:
		return fmt.Errorf("binary %s: %w", path, err)
	case !info.Mode().IsRegular():
		return fmt.Errorf("binary %s is not a regular file (%s)", path, info.Mode().Type())
	case info.Mode().Perm()&0o111 == 0:
		return fmt.Errorf("binary %s is not executable (mode %s)", path, info.Mode().Perm())
	}
	return nil
}
