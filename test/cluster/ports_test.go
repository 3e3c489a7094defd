package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/core/dispatcher"
	"github.com/warrenorch/warren/plugins/network-wireguard/wireguard"
	"github.com/warrenorch/warren/test/clustertest"
	"github.com/warrenorch/warren/test/ctrtest"
	"github.com/warrenorch/warren/test/netns"
	"github.com/warrenorch/warren/test/testutil"
)

// httpGet sends GET / to addr from inside host's namespace and returns
// the reply.
func httpGet(host *netns.Host, addr string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	c, err := clustertest.Dialer(host)(ctx, addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := io.WriteString(c, "GET / HTTP/1.0\r\n\r\n"); err != nil {
		return "", err
	}
	b, err := io.ReadAll(c)
	return string(b), err
}

// portRules returns the UserData of every rule in the "ports" chain of the
// network plugin's ports table in host ("tcp/18080->8080 (service web,
// ingress)"); no table is none.
func portRules(t *testing.T, host *netns.Host) []string {
	t.Helper()
	var out []string
	err := host.Do(func() error {
		c, err := nftables.New()
		if err != nil {
			return err
		}
		table, err := c.ListTableOfFamily(wireguard.PortsTable, nftables.TableFamilyIPv4)
		if err != nil || table == nil {
			return nil
		}
		rules, err := c.GetRules(table, &nftables.Chain{Name: wireguard.PortsChain, Table: table})
		for _, r := range rules {
			out = append(out, string(r.UserData))
		}
		return err
	})
	if err != nil {
		t.Fatalf("nftables in %s: %v", host.Name, err)
	}
	return out
}

// TestClusterPublishedPorts: a manager and two workers on the overlay. An
// ingress port answers on both workers (the one without a task too), from
// another host and from the node itself; a host-mode port only on the
// task's node; conflicting, out-of-range and busy ports are refused with
// nothing stored; a port a worker's host holds gives that node a "ports"
// condition; removing the services removes every rule.
func TestClusterPublishedPorts(t *testing.T) {
	c, m1 := overlayCluster(t, "10.251.0.0/16")
	ctx := context.Background()
	client := c.Net.AddHost(t, "client")
	w1, w2 := c.Node("w1"), c.Node("w2")
	httpd := []string{"--image", ctrtest.TestImage, "--constraint", "node.name==w2", "--",
		"sh", "-c", "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 8080 -h /www"}

	m1.CLI(0, append([]string{"service", "create", "web", "--publish", "18080:8080"}, httpd...)...)
	m1.CLI(0, append([]string{"service", "create", "hweb", "--publish", "published=18081,target=8080,mode=host"}, httpd...)...)
	if out := m1.CLI(0, "service", "ls"); !strings.Contains(out, "18080->8080/tcp") || !strings.Contains(out, "18081->8080/tcp (host)") {
		t.Errorf("service ls does not show the published ports:\n%s", out)
	}

	t.Run("an ingress port answers on every worker, from another host and from the node itself", func(t *testing.T) {
		for _, from := range []struct {
			host *netns.Host
			addr string
		}{
			{client, w1.Host.Addr(18080)}, // w1 runs no task of web
			{client, w2.Host.Addr(18080)},
			{w1.Host, "127.0.0.1:18080"},
			{w1.Host, w1.Host.Addr(18080)},
			{w2.Host, "127.0.0.1:18080"},
		} {
			var out string
			var err error
			testutil.Eventually(t, 60*time.Second, fmt.Sprintf("web answers %s from %s", from.addr, from.host.Name), func() bool {
				out, err = httpGet(from.host, from.addr)
				return err == nil && strings.Contains(out, "web.")
			})
		}
	})

	t.Run("a host-mode port answers only on the task's node", func(t *testing.T) {
		testutil.Eventually(t, 30*time.Second, "hweb answers on w2", func() bool {
			out, err := httpGet(client, w2.Host.Addr(18081))
			return err == nil && strings.Contains(out, "hweb.")
		})
		// w1 publishes web's ingress port, and not hweb's.
		testutil.Eventually(t, 10*time.Second, "w1 publishes only web's port", func() bool {
			r := portRules(t, w1.Host)
			return len(r) == 1 && strings.Contains(r[0], "service web,")
		})
		if out, err := httpGet(client, w1.Host.Addr(18081)); err == nil {
			t.Errorf("hweb's host-mode port answers on w1, which runs none of its tasks: %q", out)
		}
	})

	t.Run("bad ports are refused and nothing is stored", func(t *testing.T) {
		m1.Host.Listen(t, 18090) // a process of the manager's host holds 18090
		for _, tc := range []struct {
			name string
			port *apiv1.PortConfig
			want codes.Code
			msg  string
		}{
			{"a port another service publishes", &apiv1.PortConfig{Published: 18080, Target: 80}, codes.AlreadyExists, `already published by service "web"`},
			{"out of range", &apiv1.PortConfig{Published: 70000, Target: 80}, codes.InvalidArgument, "out of range 1-65535"},
			{"port 0", &apiv1.PortConfig{Published: 0, Target: 80}, codes.InvalidArgument, "out of range 1-65535"},
			{"in use on the manager's host", &apiv1.PortConfig{Published: 18090, Target: 80}, codes.FailedPrecondition, "18090/tcp is in use"},
		} {
			_, err := m1.Client().CreateService(ctx, &apiv1.CreateServiceRequest{Spec: &apiv1.ServiceSpec{Name: "bad", Image: ctrtest.TestImage, Replicas: 1, Ports: []*apiv1.PortConfig{tc.port}}})
			if status.Code(err) != tc.want || !strings.Contains(fmt.Sprint(err), tc.msg) {
				t.Errorf("%s: CreateService: %v, want %s naming %q", tc.name, err, tc.want, tc.msg)
			}
		}
		out := m1.CLI(1, "service", "update", "hweb", "--publish-add", "18080:8080")
		if !strings.Contains(out, `already published by service "web"`) {
			t.Errorf("update taking web's port: %s", out)
		}
		if out := m1.CLI(1, "service", "create", "bad", "--image", ctrtest.TestImage, "--publish", "70000:80"); !strings.Contains(out, "1 to 65535") {
			t.Errorf("CLI with port 70000: %s", out)
		}
		if _, err := m1.Client().GetService(ctx, &apiv1.GetServiceRequest{NameOrId: "bad"}); status.Code(err) != codes.NotFound {
			t.Errorf("after the refusals, service bad: %v, want NotFound", err)
		}
		got, err := m1.Client().GetService(ctx, &apiv1.GetServiceRequest{NameOrId: "hweb"})
		if err != nil || len(got.GetService().GetSpec().GetPorts()) != 1 {
			t.Errorf("after the refused update, hweb: %v, %v", got, err)
		}
	})

	t.Run("a port a worker's host holds gives the node a ports condition", func(t *testing.T) {
		w1.Host.Listen(t, 18095)
		m1.CLI(0, append([]string{"service", "create", "held", "--detach", "--publish", "18095:8080"}, httpd...)...)
		testutil.Eventually(t, 30*time.Second, "w1 reports a ports condition naming 18095", func() bool {
			n, err := m1.Client().GetNode(ctx, &apiv1.GetNodeRequest{NameOrId: "w1"})
			if err != nil {
				return false
			}
			for _, cond := range n.GetNode().GetConditions() {
				if cond.GetType() == dispatcher.ConditionPorts && strings.Contains(cond.GetMessage(), "18095/tcp") {
					return true
				}
			}
			return false
		})
		m1.CLI(0, "service", "rm", "held")
	})

	t.Run("a port added by update answers, and web's task stays", func(t *testing.T) {
		before := overlayTasks(t, m1, "web")
		m1.CLI(0, "service", "update", "web", "--publish-add", "18082:8080", "--publish-rm", "18080")
		testutil.Eventually(t, 30*time.Second, "web answers on w1's port 18082", func() bool {
			out, err := httpGet(client, w1.Host.Addr(18082))
			return err == nil && strings.Contains(out, "web.")
		})
		testutil.Eventually(t, 10*time.Second, "port 18080 no longer published on w1", func() bool {
			r := portRules(t, w1.Host)
			return len(r) == 1 && strings.Contains(r[0], "tcp/18082->8080")
		})
		after := overlayTasks(t, m1, "web")
		if len(before) != 1 || len(after) != 1 || before[0].GetId() != after[0].GetId() {
			t.Errorf("web's tasks before the port change %v, after %v: want the same one", before, after)
		}
		m1.CLI(0, "service", "update", "web", "--publish-add", "18080:8080", "--publish-rm", "18082")
		testutil.Eventually(t, 10*time.Second, "port 18080 published on w1 again", func() bool {
			r := portRules(t, w1.Host)
			return len(r) == 1 && strings.Contains(r[0], "tcp/18080->8080")
		})
	})

	t.Run("the rules outlive the agent, and its restart puts lost ones back", func(t *testing.T) {
		w1.Stop()
		if out, err := httpGet(client, w1.Host.Addr(18080)); err != nil || !strings.Contains(out, "web.") {
			t.Errorf("with w1's agent stopped, its published port: %q, %v", out, err)
		}
		// Lose the rules while the agent is away (an operator's `nft flush
		// ruleset`, say): the restarted worker applies its set again.
		if err := w1.Host.Do(func() error {
			c, err := nftables.New()
			if err != nil {
				return err
			}
			c.DelTable(&nftables.Table{Name: wireguard.PortsTable, Family: nftables.TableFamilyIPv4})
			return c.Flush()
		}); err != nil {
			t.Fatalf("delete w1's ports table: %v", err)
		}
		w1.Start(ctx)
		testutil.Eventually(t, 30*time.Second, "web answers on w1 again after its agent's restart", func() bool {
			out, err := httpGet(client, w1.Host.Addr(18080))
			return err == nil && strings.Contains(out, "web.")
		})
	})

	t.Run("service rm removes every rule", func(t *testing.T) {
		m1.CLI(0, "service", "rm", "web")
		m1.CLI(0, "service", "rm", "hweb")
		for _, w := range []*clustertest.Node{w1, w2} {
			testutil.Eventually(t, 30*time.Second, "no published port rules on "+w.Name, func() bool { return len(portRules(t, w.Host)) == 0 })
			if err := w.Host.Do(func() error {
				c, err := nftables.New()
				if err != nil {
					return err
				}
				if tb, _ := c.ListTableOfFamily(wireguard.PortsTable, nftables.TableFamilyIPv4); tb != nil {
					return errors.New("table " + wireguard.PortsTable + " is still there")
				}
				return nil
			}); err != nil {
				t.Errorf("%s: %v", w.Name, err)
			}
		}
		if out, err := httpGet(client, w1.Host.Addr(18080)); err == nil {
			t.Errorf("port 18080 still answers on w1 after service rm: %q", out)
		}
	})
}
