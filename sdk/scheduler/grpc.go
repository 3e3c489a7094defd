package scheduler

import (
	"context"
	"math"

	"google.golang.org/grpc"

	"github.com/warrenorch/warren/sdk"
	schedulerv1 "github.com/warrenorch/warren/sdk/proto/scheduler/v1"
)

// Serve runs impl as a scheduler plugin process. Call it from main.
func Serve(impl Scheduler) {
	sdk.Serve(sdk.KindScheduler, impl, Register(impl))
}

// Register returns the function that registers impl's scheduler service on
// a gRPC server.
func Register(impl Scheduler) sdk.RegisterFunc {
	return func(s grpc.ServiceRegistrar) { schedulerv1.RegisterSchedulerServer(s, &server{impl: impl}) }
}

// NewClient returns a Scheduler that calls a scheduler plugin over conn.
func NewClient(conn grpc.ClientConnInterface) Scheduler {
	return &client{BaseClient: sdk.NewBaseClient(conn), rpc: schedulerv1.NewSchedulerClient(conn)}
}

type server struct {
	schedulerv1.UnimplementedSchedulerServer
	impl Scheduler
}

func (s *server) Schedule(ctx context.Context, req *schedulerv1.ScheduleRequest) (*schedulerv1.ScheduleResponse, error) {
	placements, err := s.impl.Schedule(ctx, requestFromPB(req))
	if err != nil {
		return nil, sdk.ToStatus(err)
	}
	return placementsToPB(placements), nil
}

type client struct {
	*sdk.BaseClient
	rpc schedulerv1.SchedulerClient
}

func (c *client) Schedule(ctx context.Context, req Request) ([]Placement, error) {
	resp, err := c.rpc.Schedule(ctx, requestToPB(req))
	if err != nil {
		return nil, sdk.FromStatus(err)
	}
	return placementsFromPB(resp), nil
}

func resourcesToPB(r Resources) *schedulerv1.Resources {
	return &schedulerv1.Resources{NanoCpus: r.NanoCPUs, MemoryBytes: r.MemoryBytes}
}

func resourcesFromPB(r *schedulerv1.Resources) Resources {
	return Resources{NanoCPUs: r.GetNanoCpus(), MemoryBytes: r.GetMemoryBytes()}
}

func requestToPB(req Request) *schedulerv1.ScheduleRequest {
	pb := &schedulerv1.ScheduleRequest{
		Nodes: make([]*schedulerv1.Node, 0, len(req.Nodes)),
		Tasks: make([]*schedulerv1.Task, 0, len(req.Tasks)),
	}
	for _, n := range req.Nodes {
		var perService map[string]uint32
		if len(n.ServiceTasks) > 0 {
			perService = make(map[string]uint32, len(n.ServiceTasks))
			for svc, c := range n.ServiceTasks {
				perService[svc] = saturate(c)
			}
		}
		pb.Nodes = append(pb.Nodes, &schedulerv1.Node{
			Id:           n.ID,
			Name:         n.Name,
			Labels:       n.Labels,
			Ready:        n.Ready,
			Availability: string(n.Availability),
			Total:        resourcesToPB(n.Total),
			Reserved:     resourcesToPB(n.Reserved),
			TaskCount:    saturate(n.TaskCount),
			ServiceTasks: perService,
			Os:           n.OS,
			Arch:         n.Arch,
			Attributes:   n.Attributes,
		})
	}
	for _, t := range req.Tasks {
		pt := &schedulerv1.Task{
			Id:          t.ID,
			ServiceId:   t.ServiceID,
			ServiceName: t.ServiceName,
			Slot:        t.Slot,
			Reservation: resourcesToPB(t.Reservation),
		}
		for _, c := range t.Constraints {
			pt.Constraints = append(pt.Constraints, &schedulerv1.Constraint{Key: c.Key, Op: string(c.Op), Value: c.Value})
		}
		pb.Tasks = append(pb.Tasks, pt)
	}
	return pb
}

// saturate puts a count on the wire's uint32, saturating rather than
// wrapping. A negative count is a host bug that the host's own Validate
// reports.
func saturate(n int) uint32 {
	switch {
	case n > math.MaxUint32:
		return math.MaxUint32
	case n > 0:
		return uint32(n)
	}
	return 0
}

func requestFromPB(pb *schedulerv1.ScheduleRequest) Request {
	req := Request{
		Nodes: make([]Node, 0, len(pb.GetNodes())),
		Tasks: make([]Task, 0, len(pb.GetTasks())),
	}
	for _, n := range pb.GetNodes() {
		var perService map[string]int
		if len(n.GetServiceTasks()) > 0 {
			perService = make(map[string]int, len(n.GetServiceTasks()))
			for svc, c := range n.GetServiceTasks() {
				perService[svc] = int(c)
			}
		}
		req.Nodes = append(req.Nodes, Node{
			ID:           n.GetId(),
			Name:         n.GetName(),
			Labels:       n.GetLabels(),
			Ready:        n.GetReady(),
			Availability: Availability(n.GetAvailability()),
			Total:        resourcesFromPB(n.GetTotal()),
			Reserved:     resourcesFromPB(n.GetReserved()),
			TaskCount:    int(n.GetTaskCount()),
			ServiceTasks: perService,
			OS:           n.GetOs(),
			Arch:         n.GetArch(),
			Attributes:   n.GetAttributes(),
		})
	}
	for _, t := range pb.GetTasks() {
		task := Task{
			ID:          t.GetId(),
			ServiceID:   t.GetServiceId(),
			ServiceName: t.GetServiceName(),
			Slot:        t.GetSlot(),
			Reservation: resourcesFromPB(t.GetReservation()),
		}
		for _, c := range t.GetConstraints() {
			task.Constraints = append(task.Constraints, Constraint{Key: c.GetKey(), Op: Op(c.GetOp()), Value: c.GetValue()})
		}
		req.Tasks = append(req.Tasks, task)
	}
	return req
}

func placementsToPB(ps []Placement) *schedulerv1.ScheduleResponse {
	resp := &schedulerv1.ScheduleResponse{Placements: make([]*schedulerv1.Placement, 0, len(ps))}
	for _, p := range ps {
		resp.Placements = append(resp.Placements, &schedulerv1.Placement{TaskId: p.TaskID, NodeId: p.NodeID, Reason: p.Reason})
	}
	return resp
}

func placementsFromPB(resp *schedulerv1.ScheduleResponse) []Placement {
	out := make([]Placement, 0, len(resp.GetPlacements()))
	for _, p := range resp.GetPlacements() {
		out = append(out, Placement{TaskID: p.GetTaskId(), NodeID: p.GetNodeId(), Reason: p.GetReason()})
	}
	return out
}
