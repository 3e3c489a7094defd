package main

import (
	"fmt"
	"maps"
	"slices"

	"github.com/spf13/pflag"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
)

// updateMoreOptions are the flags `service update` shares with create's
// settings beyond image, args, env, labels and network. Each parses its
// value with the parser of its create counterpart.
type updateMoreOptions struct {
	constraintAdd []string
	constraintRm  []string
	workdir       string
	user          string
	stop          stopOptions
	resources     resourceOptions
	restart       restartOptions
	mountAdd      []string
	mountRm       []string
	secretAdd     []string
	secretRm      []string
	configAdd     []string
	configRm      []string
}

// updateMoreFlags are the flag names updateMoreOptions adds.
var updateMoreFlags = slices.Concat([]string{"constraint-add", "constraint-rm", "workdir", "user"}, stopFlags, resourceFlags, restartFlags,
	[]string{"mount-add", "mount-rm", "secret-add", "secret-rm", "config-add", "config-rm"})

func (o *updateMoreOptions) addFlags(f *pflag.FlagSet) {
	f.StringArrayVar(&o.constraintAdd, "constraint-add", nil, "add a placement `constraint` (repeatable)")
	f.StringArrayVar(&o.constraintRm, "constraint-rm", nil, "remove a placement `constraint` (repeatable)")
	f.StringVarP(&o.workdir, "workdir", "w", "", "new working directory inside the container (\"\": the image's)")
	f.StringVarP(&o.user, "user", "u", "", "new user to run as (\"\": the image's)")
	o.stop.addFlags(f)
	o.resources.addFlags(f)
	o.restart.addFlags(f)
	f.StringArrayVar(&o.mountAdd, "mount-add", nil, "add a mount, as create's --mount `type=...,target=PATH`; it replaces a mount at the same target (repeatable)")
	f.StringArrayVar(&o.mountRm, "mount-rm", nil, "remove the mount at `TARGET` (repeatable)")
	f.StringArrayVar(&o.secretAdd, "secret-add", nil, "give the tasks a secret, as create's --secret `NAME` or source=NAME,...; it replaces the service's references to that secret (repeatable)")
	f.StringArrayVar(&o.secretRm, "secret-rm", nil, "take the secret `NAME` away from the tasks (repeatable)")
	f.StringArrayVar(&o.configAdd, "config-add", nil, "give the tasks a config, as create's --config `src=NAME,target=PATH`; it replaces the service's references to that config (repeatable)")
	f.StringArrayVar(&o.configRm, "config-rm", nil, "take the config `NAME` away from the tasks (repeatable)")
}

// edit checks the flags set in f and returns the change they make to a
// spec, or nil when none is set. The change fails when an --X-rm names
// something the spec does not have.
func (o *updateMoreOptions) edit(f *pflag.FlagSet) (func(*apiv1.ServiceSpec) error, error) {
	if !slices.ContainsFunc(updateMoreFlags, f.Changed) {
		return nil, nil
	}
	for _, c := range o.constraintAdd {
		if err := checkConstraint(c); err != nil {
			return nil, &usageError{msg: err.Error()}
		}
	}
	constraints := listEdit[string]{addFlag: "--constraint-add", rmFlag: "--constraint-rm", what: "constraint",
		key: func(c string) string { return c }, add: o.constraintAdd, rm: o.constraintRm}
	stop, err := o.stop.edit(f)
	if err != nil {
		return nil, err
	}
	// Checked now, before the service is read.
	if _, err := o.restart.policy(f, nil); err != nil {
		return nil, err
	}
	mounts := listEdit[*apiv1.Mount]{addFlag: "--mount-add", rmFlag: "--mount-rm", what: "mount at",
		key: (*apiv1.Mount).GetTarget, rm: o.mountRm}
	for _, v := range o.mountAdd {
		m, err := parseMount("--mount-add", v)
		if err != nil {
			return nil, &usageError{msg: err.Error()}
		}
		mounts.add = append(mounts.add, m)
	}
	secrets, err := fileRefEdit("--secret", "secret", o.secretAdd, o.secretRm)
	if err != nil {
		return nil, err
	}
	configs, err := fileRefEdit("--config", "config", o.configAdd, o.configRm)
	if err != nil {
		return nil, err
	}
	for _, err := range []error{constraints.check(), mounts.check(), secrets.check(), configs.check()} {
		if err != nil {
			return nil, err
		}
	}
	return func(s *apiv1.ServiceSpec) error {
		var err error
		if s.Constraints, err = constraints.apply(s.GetName(), s.GetConstraints()); err != nil {
			return err
		}
		if s.Mounts, err = mounts.apply(s.GetName(), s.GetMounts()); err != nil {
			return err
		}
		if s.Secrets, err = secrets.apply(s.GetName(), s.GetSecrets()); err != nil {
			return err
		}
		if s.Configs, err = configs.apply(s.GetName(), s.GetConfigs()); err != nil {
			return err
		}
		if f.Changed("workdir") {
			s.WorkingDir = o.workdir
		}
		if f.Changed("user") {
			s.User = o.user
		}
		stop(s)
		o.resources.apply(f, s)
		s.RestartPolicy, err = o.restart.policy(f, s.GetRestartPolicy())
		return err
	}, nil
}

// fileRefEdit parses the --secret-add/--secret-rm (or --config-*) values of
// flag with create's parser: a reference is known by its secret's or
// config's name.
func fileRefEdit(flag, what string, add, rm []string) (listEdit[*apiv1.FileReference], error) {
	e := listEdit[*apiv1.FileReference]{addFlag: flag + "-add", rmFlag: flag + "-rm", what: what,
		key: (*apiv1.FileReference).GetName, rm: rm}
	for _, v := range add {
		ref, err := parseFileRef(e.addFlag, v)
		if err != nil {
			return e, &usageError{msg: err.Error()}
		}
		e.add = append(e.add, ref)
	}
	return e, nil
}

// listEdit is one --X-add/--X-rm pair of `service update` on a list of the
// spec, whose items are known by a key (a mount's target, a secret's
// name, a published port's number/protocol).
type listEdit[T any] struct {
	addFlag, rmFlag string
	// what names an item in errors: `service "web" has no <what> "KEY"`.
	what string
	key  func(T) string
	add  []T
	rm   []string
}

// keys returns the keys of items.
func (e listEdit[T]) keys(items []T) []string {
	out := make([]string, len(items))
	for i, it := range items {
		out[i] = e.key(it)
	}
	return out
}

// check refuses, before anything is read, a key added twice and a key
// both added and removed.
func (e listEdit[T]) check() error {
	added := e.keys(e.add)
	for i, k := range added {
		if slices.Contains(added[:i], k) {
			return usageErrorf("invalid %s: %q is given twice", e.addFlag, k)
		}
	}
	return addRmConflict(e.addFlag, e.rmFlag, added, e.rm)
}

// apply returns items without the removed keys and with the added items
// in place of those of the same key; nil when nothing is left. A removed
// key that no item has is an error: the spec is most likely not what the
// operator thinks.
func (e listEdit[T]) apply(service string, items []T) ([]T, error) {
	if len(e.add) == 0 && len(e.rm) == 0 {
		return items, nil
	}
	if err := missingKeys(e.rmFlag, service, e.what, e.keys(items), e.rm); err != nil {
		return nil, err
	}
	added := e.keys(e.add)
	var out []T
	for _, it := range items {
		if k := e.key(it); !slices.Contains(e.rm, k) && !slices.Contains(added, k) {
			out = append(out, it)
		}
	}
	return append(out, e.add...), nil
}

// addRmConflict refuses a key both added (by addFlag) and removed (by
// rmFlag): the add alone replaces it.
func addRmConflict(addFlag, rmFlag string, added, removed []string) error {
	for _, k := range removed {
		if slices.Contains(added, k) {
			return usageErrorf("%s and %s both name %q: give only one (%s alone replaces it)", addFlag, rmFlag, k, addFlag)
		}
	}
	return nil
}

// missingKeys refuses a key removed by rmFlag that the service's list
// (have) does not hold.
func missingKeys(rmFlag, service, what string, have, removed []string) error {
	for _, k := range removed {
		if !slices.Contains(have, k) {
			return fmt.Errorf("invalid %s %q: service %q has no %s %q", rmFlag, k, service, what, k)
		}
	}
	return nil
}

// editMap deletes rm from m, then sets add; nil when nothing is left. A
// key of rm that m lacks is an error (what names a key in it).
func editMap(rmFlag, service, what string, m map[string]string, rm []string, add map[string]string) (map[string]string, error) {
	if err := missingKeys(rmFlag, service, what, slices.Collect(maps.Keys(m)), rm); err != nil {
		return nil, err
	}
	out := maps.Clone(m)
	for _, k := range rm {
		delete(out, k)
	}
	if len(add) > 0 && out == nil {
		out = map[string]string{}
	}
	maps.Copy(out, add)
	if len(out) == 0 {
		return nil, nil
	}
	return out, nil
}
