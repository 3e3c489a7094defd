package api

import (
	"context"
	"fmt"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/core/fsm"
	"github.com/warrenorch/warren/core/fsm/fsmpb"
	"github.com/warrenorch/warren/core/pki"
	"github.com/warrenorch/warren/core/state"
	"github.com/warrenorch/warren/sdk"
)

// MaxDataBytes bounds a secret's or a config's data (as Swarm does).
const MaxDataBytes = 500 << 10

// checkData refuses empty and oversized secret or config data.
func checkData(kind fsm.FileKind, name string, data []byte) error {
	switch {
	case len(data) == 0:
		return invalid("%s %q: the data is empty", kind, name)
	case len(data) > MaxDataBytes:
		return invalid("%s %q: the data is %d bytes, more than the %d allowed", kind, name, len(data), MaxDataBytes)
	}
	return nil
}

// validateNewFile checks the name, data and labels of a new secret or
// config.
func validateNewFile(kind fsm.FileKind, name string, data []byte, labels map[string]string) error {
	if err := ValidateName(string(kind), name); err != nil {
		return err
	}
	if err := checkData(kind, name, data); err != nil {
		return err
	}
	return validateLabels(fmt.Sprintf("%s %q", kind, name), labels)
}

// lookupNamed resolves a name or ID with one of the state's lookups.
func lookupNamed[T any, K ~string](kind K, nameOrID string, lookup func(string) (T, state.Lookup)) (T, error) {
	var zero T
	if nameOrID == "" {
		return zero, invalid("a %s name or ID is required", kind)
	}
	o, res := lookup(nameOrID)
	switch res {
	case state.NotFound:
		return zero, fmt.Errorf("%s %q: %w", kind, nameOrID, sdk.ErrNotFound)
	case state.Ambiguous:
		return zero, invalid("%s ID prefix %q matches more than one %s", kind, nameOrID, kind)
	}
	return o, nil
}

// seal encrypts a secret's data under the managers' key-encryption key,
// before it is proposed: only the sealed form enters Raft and the store.
func (s *Server) seal(sec *apiv1.Secret, data []byte) error {
	if len(s.opts.KEK) == 0 {
		return fmt.Errorf("secret %q: this agent holds no key-encryption key: %w", sec.GetName(), sdk.ErrUnsupported)
	}
	sealed, err := pki.Seal(s.opts.KEK, data, fsm.SecretAAD(sec.GetId(), sec.GetRevision()))
	if err != nil {
		return fmt.Errorf("secret %q: %w", sec.GetName(), err)
	}
	sec.Data, sec.Size = sealed, uint64(len(data))
	return nil
}

// secretMeta is a secret as the API returns it: without its data.
func secretMeta(o any) *apiv1.Secret {
	sec := proto.CloneOf(o.(*apiv1.Secret))
	sec.Data = nil
	return sec
}

// CreateSecret stores a new secret, sealed.
func (s *Server) CreateSecret(ctx context.Context, req *apiv1.CreateSecretRequest) (*apiv1.SecretResponse, error) {
	if err := validateNewFile(fsm.KindSecret, req.GetName(), req.GetData(), req.GetLabels()); err != nil {
		return nil, err
	}
	now := timestamppb.Now()
	sec := &apiv1.Secret{Id: NewID(), Name: req.GetName(), Labels: req.GetLabels(), Revision: 1, CreatedAt: now, UpdatedAt: now}
	return s.putSecret(ctx, sec, req.GetData())
}

// UpdateSecret gives a secret new data as its next revision; the services
// using it roll their tasks onto it.
func (s *Server) UpdateSecret(ctx context.Context, req *apiv1.UpdateSecretRequest) (*apiv1.SecretResponse, error) {
	old, err := lookupNamed(fsm.KindSecret, req.GetNameOrId(), s.opts.State.LookupSecret)
	if err != nil {
		return nil, err
	}
	if err := checkData(fsm.KindSecret, old.GetName(), req.GetData()); err != nil {
		return nil, err
	}
	sec := proto.CloneOf(old)
	sec.Revision++
	sec.UpdatedAt = timestamppb.Now()
	return s.putSecret(ctx, sec, req.GetData())
}

// putSecret seals data into sec and commits it, answering with its
// metadata.
func (s *Server) putSecret(ctx context.Context, sec *apiv1.Secret, data []byte) (*apiv1.SecretResponse, error) {
	if err := s.seal(sec, data); err != nil {
		return nil, err
	}
	out, err := s.opts.Raft.Apply(ctx, &fsmpb.UpsertSecret{Secret: sec})
	if err != nil {
		return nil, err
	}
	return &apiv1.SecretResponse{Secret: secretMeta(out)}, nil
}

// GetSecret returns a secret's metadata; the data never leaves the cluster
// through the API.
func (s *Server) GetSecret(_ context.Context, req *apiv1.GetSecretRequest) (*apiv1.SecretResponse, error) {
	sec, err := lookupNamed(fsm.KindSecret, req.GetNameOrId(), s.opts.State.LookupSecret)
	if err != nil {
		return nil, err
	}
	return &apiv1.SecretResponse{Secret: secretMeta(sec)}, nil
}

// ListSecrets returns every secret's metadata, by name.
func (s *Server) ListSecrets(context.Context, *apiv1.ListSecretsRequest) (*apiv1.ListSecretsResponse, error) {
	resp := &apiv1.ListSecretsResponse{}
	for _, sec := range s.opts.State.Secrets() {
		resp.Secrets = append(resp.Secrets, secretMeta(sec))
	}
	return resp, nil
}

// RemoveSecret removes a secret no service uses.
func (s *Server) RemoveSecret(ctx context.Context, req *apiv1.RemoveSecretRequest) (*apiv1.RemoveSecretResponse, error) {
	sec, err := lookupNamed(fsm.KindSecret, req.GetNameOrId(), s.opts.State.LookupSecret)
	if err != nil {
		return nil, err
	}
	if _, err := s.opts.Raft.Apply(ctx, &fsmpb.RemoveSecret{Id: sec.GetId()}); err != nil {
		return nil, err
	}
	return &apiv1.RemoveSecretResponse{}, nil
}

// CreateConfig stores a new config.
func (s *Server) CreateConfig(ctx context.Context, req *apiv1.CreateConfigRequest) (*apiv1.ConfigResponse, error) {
	if err := validateNewFile(fsm.KindConfig, req.GetName(), req.GetData(), req.GetLabels()); err != nil {
		return nil, err
	}
	now := timestamppb.Now()
	c := &apiv1.Config{Id: NewID(), Name: req.GetName(), Data: req.GetData(), Labels: req.GetLabels(), Revision: 1, CreatedAt: now, UpdatedAt: now}
	out, err := s.opts.Raft.Apply(ctx, &fsmpb.UpsertConfig{Config: c})
	if err != nil {
		return nil, err
	}
	return &apiv1.ConfigResponse{Config: out.(*apiv1.Config)}, nil
}

// UpdateConfig gives a config new data as its next revision; the services
// using it roll their tasks onto it.
func (s *Server) UpdateConfig(ctx context.Context, req *apiv1.UpdateConfigRequest) (*apiv1.ConfigResponse, error) {
	old, err := lookupNamed(fsm.KindConfig, req.GetNameOrId(), s.opts.State.LookupConfig)
	if err != nil {
		return nil, err
	}
	if err := checkData(fsm.KindConfig, old.GetName(), req.GetData()); err != nil {
		return nil, err
	}
	c := proto.CloneOf(old)
	c.Revision++
	c.Data = req.GetData()
	c.UpdatedAt = timestamppb.Now()
	out, err := s.opts.Raft.Apply(ctx, &fsmpb.UpsertConfig{Config: c})
	if err != nil {
		return nil, err
	}
	return &apiv1.ConfigResponse{Config: out.(*apiv1.Config)}, nil
}

// GetConfig returns a config with its data.
func (s *Server) GetConfig(_ context.Context, req *apiv1.GetConfigRequest) (*apiv1.ConfigResponse, error) {
	c, err := lookupNamed(fsm.KindConfig, req.GetNameOrId(), s.opts.State.LookupConfig)
	if err != nil {
		return nil, err
	}
	return &apiv1.ConfigResponse{Config: c}, nil
}

// ListConfigs returns every config without its data, by name.
func (s *Server) ListConfigs(context.Context, *apiv1.ListConfigsRequest) (*apiv1.ListConfigsResponse, error) {
	resp := &apiv1.ListConfigsResponse{}
	for _, c := range s.opts.State.Configs() {
		c = proto.CloneOf(c)
		c.Data = nil
		resp.Configs = append(resp.Configs, c)
	}
	return resp, nil
}

// RemoveConfig removes a config no service uses.
func (s *Server) RemoveConfig(ctx context.Context, req *apiv1.RemoveConfigRequest) (*apiv1.RemoveConfigResponse, error) {
	c, err := lookupNamed(fsm.KindConfig, req.GetNameOrId(), s.opts.State.LookupConfig)
	if err != nil {
		return nil, err
	}
	if _, err := s.opts.Raft.Apply(ctx, &fsmpb.RemoveConfig{Id: c.GetId()}); err != nil {
		return nil, err
	}
	return &apiv1.RemoveConfigResponse{}, nil
}
