package fsm

import (
	"fmt"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/core/fsm/fsmpb"
	"github.com/warrenorch/warren/core/state"
	"github.com/warrenorch/warren/sdk"
)

// Secrets and configs are file objects: named data with a revision that
// services reference (apiv1.FileReference). An upsert either creates one at
// revision 1 or moves it to the next revision, and then moves every service
// that references it onto that revision in the same entry, so their tasks
// roll under each service's update policy. A removal is refused while a
// service references the object.

// FileKind is "secret" or "config", the event kind of a file object.
type FileKind string

// The file kinds.
const (
	KindSecret FileKind = "secret"
	KindConfig FileKind = "config"
)

// Refs returns the references of this kind in spec.
func (k FileKind) Refs(spec *apiv1.ServiceSpec) []*apiv1.FileReference {
	if k == KindSecret {
		return spec.GetSecrets()
	}
	return spec.GetConfigs()
}

// fileObject is what secrets and configs share.
type fileObject interface {
	named
	GetData() []byte
	GetRevision() uint64
}

// checkFileUpsert checks an upsert of o against the stored old (nil for a
// new object).
func checkFileUpsert[T fileObject](kind FileKind, o T, byName func(string) (T, bool), byID func(string) (T, bool)) error {
	if o.GetId() == "" || o.GetName() == "" {
		return invalid("upsert %s: id and name are required", kind)
	}
	if len(o.GetData()) == 0 {
		return invalid("%s %q: data is empty", kind, o.GetName())
	}
	old, ok := byID(o.GetId())
	if !ok {
		if _, taken := byName(o.GetName()); taken {
			return fmt.Errorf("%s %q: %w", kind, o.GetName(), sdk.ErrAlreadyExists)
		}
		if o.GetRevision() != 1 {
			return invalid("%s %q: a new %s starts at revision 1, not %d", kind, o.GetName(), kind, o.GetRevision())
		}
		return nil
	}
	if old.GetName() != o.GetName() {
		return invalid("%s %q: renaming (to %q) is not supported", kind, old.GetName(), o.GetName())
	}
	if o.GetRevision() != old.GetRevision()+1 {
		return fmt.Errorf("%s %q is at revision %d, the update makes %d: %w", kind, o.GetName(), old.GetRevision(), o.GetRevision(), sdk.ErrConflict)
	}
	return nil
}

// servicesUsing returns the services that reference the file object name
// of kind, by name.
func (f *FSM) servicesUsing(kind FileKind, name string) []*apiv1.Service {
	var out []*apiv1.Service
	for _, svc := range f.state.Services() {
		if slices.ContainsFunc(kind.Refs(svc.GetSpec()), func(r *apiv1.FileReference) bool { return r.GetName() == name }) {
			out = append(out, svc)
		}
	}
	return out
}

// rollServices moves every service referencing name onto revision.
func (f *FSM) rollServices(tx *txn, kind FileKind, name string, revision uint64) {
	for _, svc := range f.servicesUsing(kind, name) {
		svc = proto.CloneOf(svc)
		for _, r := range kind.Refs(svc.GetSpec()) {
			if r.GetName() == name {
				r.Revision = revision
			}
		}
		svc.Version = tx.index
		svc.UpdatedAt = timestamppb.Now()
		f.state.PutService(svc)
		tx.put(state.BucketServices, svc.GetId(), svc)
		tx.event("service", apiv1.EventAction_EVENT_ACTION_UPDATED, svc.GetId(), svc.GetSpec().GetName(), func(e *apiv1.Event) { e.Object = &apiv1.Event_Service{Service: svc} })
	}
}

// refuseIfUsed returns ErrConflict naming the services that use name.
func (f *FSM) refuseIfUsed(kind FileKind, name string) error {
	users := f.servicesUsing(kind, name)
	if len(users) == 0 {
		return nil
	}
	names := make([]string, len(users))
	for i, s := range users {
		names[i] = s.GetSpec().GetName()
	}
	return fmt.Errorf("%s %q is used by service %s: %w", kind, name, strings.Join(names, ", "), sdk.ErrConflict)
}

func (f *FSM) applyUpsertSecret(tx *txn, c *fsmpb.UpsertSecret) any {
	o := c.GetSecret()
	if err := checkFileUpsert(KindSecret, o, f.state.SecretByName, f.state.Secret); err != nil {
		return err
	}
	out := upsertNamed(tx, string(KindSecret), state.BucketSecrets, o, f.state.SecretByName, f.state.Secret, f.state.PutSecret,
		func(o *apiv1.Secret, v uint64) { o.Version = v },
		func(e *apiv1.Event, o *apiv1.Secret) { e.Object = &apiv1.Event_Secret{Secret: redact(o)} })
	if o.GetRevision() > 1 {
		f.rollServices(tx, KindSecret, o.GetName(), o.GetRevision())
	}
	return out
}

func (f *FSM) applyRemoveSecret(tx *txn, c *fsmpb.RemoveSecret) any {
	if old, ok := f.state.Secret(c.GetId()); ok {
		if err := f.refuseIfUsed(KindSecret, old.GetName()); err != nil {
			return err
		}
	}
	return removeNamed(tx, string(KindSecret), state.BucketSecrets, c.GetId(), f.state.Secret, f.state.DeleteSecret,
		func(e *apiv1.Event, o *apiv1.Secret) { e.Object = &apiv1.Event_Secret{Secret: redact(o)} })
}

// redact drops a secret's data before it leaves the FSM in an event.
func redact(s *apiv1.Secret) *apiv1.Secret {
	s = proto.CloneOf(s)
	s.Data = nil
	return s
}

func (f *FSM) applyUpsertConfig(tx *txn, c *fsmpb.UpsertConfig) any {
	o := c.GetConfig()
	if err := checkFileUpsert(KindConfig, o, f.state.ConfigByName, f.state.Config); err != nil {
		return err
	}
	out := upsertNamed(tx, string(KindConfig), state.BucketConfigs, o, f.state.ConfigByName, f.state.Config, f.state.PutConfig,
		func(o *apiv1.Config, v uint64) { o.Version = v },
		func(e *apiv1.Event, o *apiv1.Config) { e.Object = &apiv1.Event_Config{Config: o} })
	if o.GetRevision() > 1 {
		f.rollServices(tx, KindConfig, o.GetName(), o.GetRevision())
	}
	return out
}

func (f *FSM) applyRemoveConfig(tx *txn, c *fsmpb.RemoveConfig) any {
	if old, ok := f.state.Config(c.GetId()); ok {
		if err := f.refuseIfUsed(KindConfig, old.GetName()); err != nil {
			return err
		}
	}
	return removeNamed(tx, string(KindConfig), state.BucketConfigs, c.GetId(), f.state.Config, f.state.DeleteConfig,
		func(e *apiv1.Event, o *apiv1.Config) { e.Object = &apiv1.Event_Config{Config: o} })
}

// resolveRefs sets every secret and config reference of spec to the
// current revision of what it names, or refuses a name (of a secret, a
// config or a volume) that does not exist. Services being created or
// updated get it, so a reference never lags behind an update committed in
// between.
func (f *FSM) resolveRefs(svc string, spec *apiv1.ServiceSpec) error {
	for _, m := range spec.GetMounts() {
		if m.GetType() != "volume" {
			continue
		}
		if _, ok := f.state.VolumeByName(m.GetSource()); !ok {
			return fmt.Errorf("service %q: volume %q: %w", svc, m.GetSource(), sdk.ErrNotFound)
		}
	}
	for _, r := range spec.GetSecrets() {
		o, ok := f.state.SecretByName(r.GetName())
		if !ok {
			return fmt.Errorf("service %q: secret %q: %w", svc, r.GetName(), sdk.ErrNotFound)
		}
		r.Revision = o.GetRevision()
	}
	for _, r := range spec.GetConfigs() {
		o, ok := f.state.ConfigByName(r.GetName())
		if !ok {
			return fmt.Errorf("service %q: config %q: %w", svc, r.GetName(), sdk.ErrNotFound)
		}
		r.Revision = o.GetRevision()
	}
	return nil
}

// SecretAAD is the additional data a secret's data is sealed with: its ID
// and revision, so a sealed blob cannot be passed off as another secret's
// or another revision's.
func SecretAAD(id string, revision uint64) []byte {
	return fmt.Appendf(nil, "warren secret %s revision %d", id, revision)
}
