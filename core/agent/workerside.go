package agent

import (
	"context"
	"fmt"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/warrenorch/warren/core/api"
	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/core/cluster"
	"github.com/warrenorch/warren/core/nodeapi"
	"github.com/warrenorch/warren/core/pki"
	"github.com/warrenorch/warren/core/tunnel"
	"github.com/warrenorch/warren/core/version"
	"github.com/warrenorch/warren/core/worker"
	"github.com/warrenorch/warren/sdk/runtime"
)

// startWorker runs the worker: it holds a dispatcher session with the
// leader, reaching it through whichever manager answers.
func (r *run) startWorker(ctx context.Context, running *sync.WaitGroup, rt runtime.Runtime, sh *shared) error {
	role := r.id.role()
	// The managers reach this node's runtime through tunnels it opens to
	// each of them (core/tunnel): it may accept no connection itself.
	tsrv := tunnel.NewServer()
	apiv1.RegisterNodeRuntimeServer(tsrv, &nodeapi.Server{
		Runtime: rt, Plugins: func() []*apiv1.PluginStatus { return pluginStatuses(r.host) },
		VolumesDir: worker.VolumesDir(r.cfg.DataDir, r.cfg.Worker.VolumesDir),
	})
	tunnels := tunnel.NewWorker(tsrv, func(addr string) (apiv1.NodeTunnelClient, error) {
		conn, err := r.peers.conn(addr)
		if err != nil {
			return nil, err
		}
		return apiv1.NewNodeTunnelClient(conn), nil
	}, r.logger.Named("tunnel"))
	running.Add(1)
	go func() {
		defer running.Done()
		logExit(r.logger, "node tunnels", tunnels.Run(ctx))
	}()
	w, err := worker.New(worker.Options{
		NodeID:     r.nodeID,
		NodeName:   r.cfg.NodeName,
		Addr:       r.cfg.Advertise,
		Labels:     r.cfg.Worker.Labels,
		DataDir:    r.cfg.DataDir,
		VolumesDir: r.cfg.Worker.VolumesDir,
		Runtime:    rt,
		// A nil interface, not a nil client, without a network plugin.
		Network:     sh.nw,
		NetworkName: r.cfg.Worker.Network,
		Dial: func(ctx context.Context) (apiv1.DispatcherClient, error) {
			conn, err := r.peers.dial(ctx)
			if err != nil {
				return nil, err
			}
			return apiv1.NewDispatcherClient(conn), nil
		},
		OnSession: func(info *apiv1.SessionInfo) {
			r.peers.update(info.GetManagers())
			tunnels.SetManagers(ctx, info.GetManagers())
			if got := info.GetRole(); got != apiv1.NodeRole_NODE_ROLE_UNSPECIFIED {
				if want := cluster.RoleOf(got); want != role {
					r.changeRole(want)
				}
			}
		},
		OnSessionEnd:    r.peers.noteError,
		Redirected:      func(err error) bool { return LeaderHint(err) != "" },
		Logger:          r.logger,
		AgentVersion:    version.Version,
		HeartbeatPeriod: r.cfg.Worker.HeartbeatInterval,
		RuntimeTimeout:  r.cfg.Worker.RuntimeTimeout,
	})
	if err != nil {
		return fmt.Errorf("worker: %w", err)
	}
	restarted := w.NetworkRestarted
	sh.onNetworkRestart.Store(&restarted)
	running.Add(1)
	go func() {
		defer running.Done()
		logExit(r.logger, "worker", w.Run(ctx))
	}()
	return nil
}

// renewLoop renews the node's certificate at two thirds of its lifetime,
// and at once when the run was started in a role the certificate does not
// have yet. A renewed certificate with another role changes the node's role.
func (r *run) renewLoop(ctx context.Context) {
	backoff := time.Second
	for {
		wait := time.Until(pki.RenewAt(r.id.creds.Leaf()))
		select {
		case <-ctx.Done():
			return
		case <-time.After(max(wait, 0)):
		}
		if err := r.renew(ctx); err != nil {
			r.logger.Warn("certificate renewal failed; retrying", "error", err, "in", backoff, "expires", r.id.creds.Leaf().NotAfter)
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, time.Minute)
			continue
		}
		backoff = time.Second
	}
}

// renew gets a new certificate from the cluster and puts it in use and on
// disk.
func (r *run) renew(ctx context.Context) error {
	key, csr, err := newKeyCSR(r.nodeID)
	if err != nil {
		return err
	}
	conn, err := r.peers.dial(ctx)
	if err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	resp, err := apiv1.NewNodeCAClient(conn).Renew(cctx, &apiv1.RenewRequest{Csr: csr})
	if err != nil {
		r.peers.noteError(err)
		return err
	}
	keyPEM, err := pki.KeyPEM(key)
	if err != nil {
		return err
	}
	old := r.id.role()
	if len(resp.GetKek()) > 0 {
		if err := r.id.dir.SaveKEK(resp.GetKek()); err != nil {
			return err
		}
		r.id.kek = resp.GetKek()
	}
	if err := r.id.dir.Save(r.id.creds.CAPEM(), resp.GetCertPem(), keyPEM); err != nil {
		return err
	}
	if err := r.id.creds.Set(resp.GetCertPem(), keyPEM); err != nil {
		return err
	}
	r.logger.Info("node certificate renewed", "role", r.id.role(), "expires", r.id.creds.Leaf().NotAfter)
	if now := r.id.role(); now != old {
		r.changeRole(now)
	}
	return nil
}

// workerAPI is the API a worker-only agent serves on its local socket:
// cluster info about itself, its own plugins and image import into its own
// runtime. The
// cluster's API is on the managers.
type workerAPI struct {
	apiv1.UnimplementedWarrenServer
	r       *run
	workers *localWorkers
}

func newWorkerAPI(r *run, rt runtime.Runtime) *workerAPI {
	return &workerAPI{r: r, workers: &localWorkers{nodeID: r.nodeID, nodeName: r.cfg.NodeName, rt: rt}}
}

func (w *workerAPI) grpcServer() *grpc.Server {
	srv := api.NewServer(api.Options{Workers: w.workers, NodeID: w.r.nodeID, NodeName: w.r.cfg.NodeName, Version: version.Version,
		Plugins: func() []*apiv1.PluginStatus { return pluginStatuses(w.r.host) }})
	g := grpc.NewServer(append(w.r.metrics.ServerOptions(),
		grpc.MaxRecvMsgSize(api.MaxRequestBytes),
		api.RequestCodec(),
		grpc.ChainUnaryInterceptor(cluster.LocalUnaryInterceptor, workerOnly),
		grpc.ChainStreamInterceptor(cluster.LocalStreamInterceptor, workerOnlyStream),
	)...)
	api.RegisterService(g, &apiv1.Warren_ServiceDesc, &workerWarren{workerAPI: w, images: srv})
	return g
}

// workerWarren routes the few calls a worker serves; everything else is
// refused by workerOnly before it gets here.
type workerWarren struct {
	*workerAPI
	images *api.Server
}

func (w *workerWarren) ClusterInfo(context.Context, *apiv1.ClusterInfoRequest) (*apiv1.ClusterInfoResponse, error) {
	id := w.r.id.creds.Identity()
	return &apiv1.ClusterInfoResponse{
		ClusterId: id.ClusterID, NodeId: w.r.nodeID, NodeName: w.r.cfg.NodeName,
		RaftState: "worker (not a Raft member)", Version: version.Version,
	}, nil
}

// ListImages lists this worker's own images.
func (w *workerWarren) ListImages(ctx context.Context, req *apiv1.ListImagesRequest) (*apiv1.ListImagesResponse, error) {
	return w.images.ListImages(ctx, req)
}

// ListPlugins lists this worker's own plugins.
func (w *workerWarren) ListPlugins(ctx context.Context, req *apiv1.ListPluginsRequest) (*apiv1.ListPluginsResponse, error) {
	return w.images.ListPlugins(ctx, req)
}

func (w *workerWarren) ImportImage(stream apiv1.Warren_ImportImageServer) error {
	return w.images.ImportImage(stream)
}

const workerRefusal = "this node is a worker: run the command on a manager, or point the CLI at one with --addr and an admin certificate (warren cluster admin-cert)"

func workerOnly(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	switch info.FullMethod {
	case apiv1.Warren_ClusterInfo_FullMethodName, apiv1.Warren_ListPlugins_FullMethodName, apiv1.Warren_ListImages_FullMethodName:
	default:
		return nil, status.Error(codes.FailedPrecondition, workerRefusal)
	}
	return h(ctx, req)
}

func workerOnlyStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	if info.FullMethod != apiv1.Warren_ImportImage_FullMethodName {
		return status.Error(codes.FailedPrecondition, workerRefusal)
	}
	return h(srv, ss)
}
