package main

import (
	"context"
	"fmt"
	"maps"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
)

// maxPages bounds how many pages one listing fetches: far more than any
// cluster holds (the agent serves up to 1,000 objects a page), it only stops
// an agent that keeps answering with a next page.
const maxPages = 100000

// allPages fetches a list page by page, from the first page to the one
// with no next_page_token, and returns everything listed. list fetches the
// page of a page_token ("" for the first); what names the objects in errors.
//
// An agent without paging answers the whole list with no token, which ends
// the loop after one call.
func allPages[T any](ctx context.Context, what string, list func(ctx context.Context, token string) (page []T, next string, err error)) ([]T, error) {
	var all []T
	token := ""
	for n := 1; ; n++ {
		page, next, err := list(ctx, token)
		if err != nil {
			if n > 1 {
				return nil, fmt.Errorf("list %s, page %d: %w", what, n, err)
			}
			return nil, err
		}
		all = append(all, page...)
		switch {
		case next == "":
			return all, nil
		case next == token || n >= maxPages:
			return nil, fmt.Errorf("list %s: the agent keeps answering with another page after %d pages (page token %.20q): stopped", what, n, next)
		}
		token = next
	}
}

// listServices returns every service that req selects, all pages of it.
func (c *agentClient) listServices(ctx context.Context, req *apiv1.ListServicesRequest) ([]*apiv1.Service, error) {
	return allPages(ctx, "services", func(ctx context.Context, token string) ([]*apiv1.Service, string, error) {
		req.PageToken = token
		resp, err := c.ListServices(ctx, req)
		return resp.GetServices(), resp.GetNextPageToken(), err
	})
}

// listView is the view of a task list: BASIC for a table (the image and
// spec digest it carries are all a table shows of the spec), FULL for JSON,
// which prints the API's tasks whole.
func listView(json bool) apiv1.TaskView {
	if json {
		return apiv1.TaskView_TASK_VIEW_FULL
	}
	return apiv1.TaskView_TASK_VIEW_BASIC
}

// listTasks returns every task that req selects, all pages of it.
func (c *agentClient) listTasks(ctx context.Context, req *apiv1.ListTasksRequest) ([]*apiv1.Task, error) {
	tasks, _, err := c.listTasksNamed(ctx, req)
	return tasks, err
}

// listTasksNamed is listTasks with the names of the tasks' nodes, as the
// pages give them (ListTasksResponse.node_names): the tables that show
// where tasks run need no listing of the nodes.
func (c *agentClient) listTasksNamed(ctx context.Context, req *apiv1.ListTasksRequest) ([]*apiv1.Task, map[string]string, error) {
	names := map[string]string{}
	tasks, err := allPages(ctx, "tasks", func(ctx context.Context, token string) ([]*apiv1.Task, string, error) {
		req.PageToken = token
		resp, err := c.ListTasks(ctx, req)
		maps.Copy(names, resp.GetNodeNames())
		return resp.GetTasks(), resp.GetNextPageToken(), err
	})
	return tasks, names, err
}

// listNodes returns every node of the cluster, all pages of it.
func (c *agentClient) listNodes(ctx context.Context) ([]*apiv1.Node, error) {
	req := &apiv1.ListNodesRequest{}
	return allPages(ctx, "nodes", func(ctx context.Context, token string) ([]*apiv1.Node, string, error) {
		req.PageToken = token
		resp, err := c.ListNodes(ctx, req)
		return resp.GetNodes(), resp.GetNextPageToken(), err
	})
}
