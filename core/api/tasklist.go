package api

import (
	"context"
	"maps"
	"slices"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protowire"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
)

// ListTasks lists tasks by service and node, one page at a time, each task
// in the view the request asks for (BASIC unless FULL). The gRPC server
// answers it with listTasksWire, the same response already encoded.
func (s *Server) ListTasks(_ context.Context, req *apiv1.ListTasksRequest) (*apiv1.ListTasksResponse, error) {
	page, next, err := s.listTasks(req)
	if err != nil {
		return nil, err
	}
	resp := &apiv1.ListTasksResponse{Tasks: make([]*apiv1.Task, len(page)), NextPageToken: next, NodeNames: s.nodeNames(page)}
	for i, l := range page {
		resp.Tasks[i] = l.task
	}
	return resp, nil
}

// nodeNames maps the node IDs of page's tasks to the nodes' names
// (ListTasksResponse.node_names), nil when they run on no node.
func (s *Server) nodeNames(page []*listedTask) map[string]string {
	var names map[string]string
	for _, l := range page {
		id := l.task.GetNodeId()
		if id == "" {
			continue
		}
		if _, done := names[id]; done {
			continue
		}
		if n, ok := s.opts.State.Node(id); ok {
			if names == nil {
				names = map[string]string{}
			}
			names[id] = n.GetName()
		}
	}
	return names
}

// listTasks returns the page of tasks req asks for, in its view, and the
// next page's token.
func (s *Server) listTasks(req *apiv1.ListTasksRequest) ([]*listedTask, string, error) {
	view := req.GetView()
	switch view {
	case apiv1.TaskView_TASK_VIEW_UNSPECIFIED:
		view = apiv1.TaskView_TASK_VIEW_BASIC
	case apiv1.TaskView_TASK_VIEW_BASIC, apiv1.TaskView_TASK_VIEW_FULL:
	default:
		return nil, "", invalid("list tasks: view %d is not a task view: use TASK_VIEW_BASIC or TASK_VIEW_FULL", view)
	}
	f, err := s.taskFilter(req.GetService(), req.GetNode())
	if err != nil {
		return nil, "", err
	}
	var keep func(*apiv1.Task) bool
	if !req.GetAll() {
		keep = Current
	}
	var failed error
	size := func(t *apiv1.Task) int {
		l, err := s.views.get(t, view)
		if err != nil {
			failed = err
			return 0
		}
		return len(l.wire)
	}
	maxSize := MaxPageSize
	if view == apiv1.TaskView_TASK_VIEW_BASIC {
		maxSize = MaxBasicTaskPageSize
	}
	records, next, err := taskPager.page(req, s.opts.State.Tasks(f), keep, size, maxSize)
	if err == nil {
		err = failed
	}
	if err != nil {
		return nil, "", err
	}
	page := make([]*listedTask, len(records))
	for i, t := range records {
		if page[i], err = s.views.get(t, view); err != nil {
			return nil, "", err
		}
	}
	return page, next, nil
}

// The field numbers of ListTasksResponse, for listTasksWire.
var (
	listTasksFields  = (&apiv1.ListTasksResponse{}).ProtoReflect().Descriptor().Fields()
	listTasksTasks   = listTasksFields.ByName("tasks").Number()
	listTasksNextTok = listTasksFields.ByName("next_page_token").Number()
	listTasksNames   = listTasksFields.ByName("node_names").Number()
)

// The field numbers of a map entry: key and value.
const (
	mapEntryKey   protowire.Number = 1
	mapEntryValue protowire.Number = 2
)

// listTasksWire is ListTasks' response in its wire form, made of the
// cached wire forms of its tasks: a listing encodes no task it encoded
// before.
func (s *Server) listTasksWire(req *apiv1.ListTasksRequest) (wireBytes, error) {
	page, next, err := s.listTasks(req)
	if err != nil {
		return nil, err
	}
	names := s.nodeNames(page)
	ids := slices.Sorted(maps.Keys(names)) // deterministic, as proto.Marshal's
	entry := func(id string) int {
		return protowire.SizeTag(mapEntryKey) + protowire.SizeBytes(len(id)) +
			protowire.SizeTag(mapEntryValue) + protowire.SizeBytes(len(names[id]))
	}
	n := 0
	for _, l := range page {
		n += protowire.SizeTag(listTasksTasks) + protowire.SizeBytes(len(l.wire))
	}
	if next != "" {
		n += protowire.SizeTag(listTasksNextTok) + protowire.SizeBytes(len(next))
	}
	for _, id := range ids {
		n += protowire.SizeTag(listTasksNames) + protowire.SizeBytes(entry(id))
	}
	b := make([]byte, 0, n)
	for _, l := range page {
		b = protowire.AppendTag(b, listTasksTasks, protowire.BytesType)
		b = protowire.AppendBytes(b, l.wire)
	}
	if next != "" {
		b = protowire.AppendTag(b, listTasksNextTok, protowire.BytesType)
		b = protowire.AppendString(b, next)
	}
	for _, id := range ids {
		b = protowire.AppendTag(b, listTasksNames, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(entry(id)))
		b = protowire.AppendTag(b, mapEntryKey, protowire.BytesType)
		b = protowire.AppendString(b, id)
		b = protowire.AppendTag(b, mapEntryValue, protowire.BytesType)
		b = protowire.AppendString(b, names[id])
	}
	return b, nil
}

// wireHandlers are the gRPC handlers that answer with wireBytes, in place
// of the generated ones (RegisterService).
func (s *Server) wireHandlers() map[string]grpc.MethodHandler {
	return map[string]grpc.MethodHandler{"ListTasks": s.listTasksHandler}
}

// listTasksHandler is the generated ListTasks handler, answering with
// listTasksWire.
func (s *Server) listTasksHandler(srv any, ctx context.Context, dec func(any) error, in grpc.UnaryServerInterceptor) (any, error) {
	req := new(apiv1.ListTasksRequest)
	if err := dec(req); err != nil {
		return nil, err
	}
	h := func(_ context.Context, r any) (any, error) {
		b, err := s.listTasksWire(r.(*apiv1.ListTasksRequest))
		if err != nil {
			return nil, err
		}
		return b, nil
	}
	if in == nil {
		return h(ctx, req)
	}
	return in(ctx, req, &grpc.UnaryServerInfo{Server: srv, FullMethod: apiv1.Warren_ListTasks_FullMethodName}, h)
}
