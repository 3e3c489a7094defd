package agent

import (
	"context"
	"crypto/ecdsa"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/warrenorch/warren/config"
	"github.com/warrenorch/warren/core/api"
	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/core/pki"
)

// identity is a node's cluster credentials and what came with them.
type identity struct {
	dir   pki.Dir
	creds *pki.Creds
	// kek unseals the CA key; managers only.
	kek []byte
	// newCluster: this start created the cluster's CA, so this manager
	// bootstraps Raft and proposes the CA. Only ever on a node's first start.
	newCluster bool
	// seed are manager addresses to try first: the join block's, and the
	// ones the cluster told us about.
	seed []string
}

func (id *identity) role() pki.Role { return id.creds.Identity().Role }

// sealedCAFile keeps a new cluster's sealed CA key until Raft holds it.
const sealedCAFile = "ca-key.sealed"

// loadIdentity returns the node's credentials: those stored in the data
// dir, or new ones from joining the cluster of the join block, or a new
// cluster's CA when the agent is a manager with nothing to join.
func loadIdentity(ctx context.Context, cfg *config.Agent, nodeID string, logger hclog.Logger) (*identity, error) {
	dir := pki.Dir(filepath.Join(cfg.DataDir, "certs"))
	id := &identity{dir: dir}
	if cfg.Join != nil {
		id.seed = append(id.seed, cfg.Join.Addresses...)
	}
	id.seed = append(id.seed, loadManagers(cfg.DataDir)...)
	switch {
	case dir.Exists():
		caPEM, certPEM, keyPEM, err := dir.Load()
		if err != nil {
			return nil, fmt.Errorf("node credentials: %w", err)
		}
		creds, err := pki.NewCreds(caPEM, certPEM, keyPEM)
		if err != nil {
			return nil, fmt.Errorf("node credentials in %s: %w", dir, err)
		}
		id.creds = creds
		if kek, err := dir.LoadKEK(); err == nil {
			id.kek = kek
		} else if !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
		if _, err := os.Stat(filepath.Join(string(dir), sealedCAFile)); err == nil {
			// The first start stopped before the CA reached Raft.
			id.newCluster = true
		}
		if creds.Identity().NodeID != nodeID {
			return nil, fmt.Errorf("node credentials in %s are for node %s, this node is %s", dir, creds.Identity().NodeID, nodeID)
		}
		return id, nil
	case cfg.Join != nil:
		return id, join(ctx, cfg, nodeID, id, logger)
	case cfg.Manager != nil:
		if hasRaftState(filepath.Join(cfg.DataDir, "raft")) {
			return nil, fmt.Errorf("%s holds the Raft state of a cluster but no node credentials (%s): it was made by an older Warren, without a cluster CA, and cannot be upgraded in place; move data_dir aside to start a new cluster", cfg.DataDir, dir)
		}
		return id, newCluster(cfg, nodeID, id)
	}
	return nil, errors.New("this agent has no cluster credentials and no join { } block: add a join block with a manager address and a token (`warren cluster join-token worker` on a manager), or a manager { } block to start a new cluster")
}

// newCluster creates a new cluster's CA and this first manager's
// certificate.
func newCluster(cfg *config.Agent, nodeID string, id *identity) error {
	clusterID := api.NewID()
	now := time.Now()
	ca, err := pki.NewCA(clusterID, now)
	if err != nil {
		return err
	}
	kek, err := pki.NewKEK()
	if err != nil {
		return err
	}
	sealed, err := ca.SealKey(kek)
	if err != nil {
		return err
	}
	key, csr, err := newKeyCSR(nodeID)
	if err != nil {
		return err
	}
	certPEM, err := ca.SignCSR(csr, pki.Identity{NodeID: nodeID, Role: pki.RoleManager, ClusterID: clusterID}, cfg.Manager.NodeCertTTL, now)
	if err != nil {
		return err
	}
	keyPEM, err := pki.KeyPEM(key)
	if err != nil {
		return err
	}
	if err := id.dir.SaveKEK(kek); err != nil {
		return err
	}
	if err := writeFileAtomic(filepath.Join(string(id.dir), sealedCAFile), sealed, 0o600); err != nil {
		return fmt.Errorf("save the sealed CA key: %w", err)
	}
	if err := id.dir.Save(ca.CertPEM, certPEM, keyPEM); err != nil {
		return err
	}
	creds, err := pki.NewCreds(ca.CertPEM, certPEM, keyPEM)
	if err != nil {
		return err
	}
	id.creds, id.kek, id.newCluster = creds, kek, true
	return nil
}

func newKeyCSR(nodeID string) (*ecdsa.PrivateKey, []byte, error) {
	key, err := pki.NewKey()
	if err != nil {
		return nil, nil, err
	}
	csr, err := pki.NewCSR(key, nodeID)
	if err != nil {
		return nil, nil, err
	}
	return key, csr, nil
}

// join asks the managers of the join block for a certificate, trying each
// address in turn until one answers or ctx ends. A refused token ends it at
// once.
func join(ctx context.Context, cfg *config.Agent, nodeID string, id *identity, logger hclog.Logger) error {
	tok, err := pki.ParseToken(cfg.Join.Token)
	if err != nil {
		return fmt.Errorf("join.token: %w", err)
	}
	key, csr, err := newKeyCSR(nodeID)
	if err != nil {
		return err
	}
	req := &apiv1.JoinRequest{Token: cfg.Join.Token, Csr: csr, NodeId: nodeID, Name: cfg.NodeName, Addr: cfg.Advertise, Worker: cfg.Worker != nil}
	backoff := 200 * time.Millisecond
	for attempt := 1; ; attempt++ {
		for _, addr := range cfg.Join.Addresses {
			resp, err := joinOnce(ctx, addr, tok.Digest, req)
			if err == nil {
				return finishJoin(cfg, id, key, resp, logger)
			}
			switch status.Code(err) {
			case codes.PermissionDenied, codes.InvalidArgument, codes.AlreadyExists, codes.FailedPrecondition:
				return fmt.Errorf("join the cluster through %s: %s", addr, status.Convert(err).Message())
			}
			if errors.Is(err, pki.ErrCADigestMismatch) {
				return fmt.Errorf("join the cluster through %s: %w", addr, err)
			}
			logger.Warn("join attempt failed", "manager", addr, "attempt", attempt, "error", err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("join: %w", ctx.Err())
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

func joinOnce(ctx context.Context, addr, digest string, req *apiv1.JoinRequest) (*apiv1.JoinResponse, error) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(pki.JoinConfig(digest, nil, "h2"))))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	resp, err := apiv1.NewNodeCAClient(conn).Join(cctx, req)
	if err != nil && strings.Contains(err.Error(), pki.ErrCADigestMismatch.Error()) {
		// The handshake failed on the pinned digest: no retry can help.
		return nil, fmt.Errorf("manager %s presents another CA: %w", addr, pki.ErrCADigestMismatch)
	}
	return resp, err
}

func finishJoin(cfg *config.Agent, id *identity, key *ecdsa.PrivateKey, resp *apiv1.JoinResponse, logger hclog.Logger) error {
	keyPEM, err := pki.KeyPEM(key)
	if err != nil {
		return err
	}
	creds, err := pki.NewCreds(resp.GetCaPem(), resp.GetCertPem(), keyPEM)
	if err != nil {
		return fmt.Errorf("join: the cluster's answer: %w", err)
	}
	if creds.Identity().Role == pki.RoleManager {
		if len(resp.GetKek()) == 0 {
			return errors.New("join: the cluster admitted this node as a manager but sent no key-encryption key")
		}
		if err := id.dir.SaveKEK(resp.GetKek()); err != nil {
			return err
		}
		id.kek = resp.GetKek()
	} else if cfg.Worker == nil {
		return errors.New("join: the token is a worker token but this agent has no worker { } block")
	}
	if err := id.dir.Save(resp.GetCaPem(), resp.GetCertPem(), keyPEM); err != nil {
		return err
	}
	saveManagers(cfg.DataDir, resp.GetManagers(), logger)
	id.seed = append(resp.GetManagers(), id.seed...)
	id.creds = creds
	logger.Info("joined the cluster", "cluster", resp.GetClusterId(), "role", creds.Identity().Role)
	return nil
}
