package integration

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/core/worker"
	"github.com/warrenorch/warren/sdk"
	"github.com/warrenorch/warren/test/ctrtest"
	"github.com/warrenorch/warren/test/testutil"
)

// showFile is a container command that prints, for each path, its mode,
// owner, the md5 of its contents and the type of the filesystem mounted
// there, then sleeps. The contents themselves never reach the logs.
func showFile(paths ...string) []string {
	var script strings.Builder
	for _, p := range paths {
		fmt.Fprintf(&script, `echo "file %[1]s $(stat -c '%%a %%u %%g' %[1]s) $(md5sum < %[1]s | cut -d' ' -f1) $(awk '$2 == "%[1]s" {print $3}' /proc/mounts)"; `, p)
	}
	script.WriteString("sleep 3600")
	return []string{"--", "sh", "-c", script.String()}
}

func md5hex(b []byte) string {
	s := md5.Sum(b)
	return hex.EncodeToString(s[:])
}

// waitLog waits until the service's logs hold want, and returns them.
func (n *node) waitLog(service, want string) string {
	n.t.Helper()
	var out string
	deadline := time.Now().Add(20 * time.Second)
	for {
		out = n.cli("service", "logs", service)
		if strings.Contains(out, want) {
			return out
		}
		if time.Now().After(deadline) {
			n.t.Fatalf("service logs of %s lack %q:\n%s\nagent output:\n%s", service, want, out, tail(n.a.Output(), 40))
		}
		time.Sleep(50 * time.Millisecond) // polling the logs with a deadline
	}
}

// grepTree fails the test when a file under dir holds needle.
func grepTree(t *testing.T, dir string, needle []byte) (files int) {
	t.Helper()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) {
				return nil
			}
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return nil // a socket, a file gone meanwhile
		}
		files++
		if bytes.Contains(b, needle) {
			t.Errorf("%s holds the secret's plaintext", p)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walk %s: %v", dir, err)
	}
	return files
}

// unmountFiles unmounts, when the test ends, the tmpfs the agent's worker
// keeps its tasks' files on (an agent leaves it for the tasks that outlive
// it).
func unmountFiles(t *testing.T, n *node) {
	info, err := n.c.ClusterInfo(context.Background(), &apiv1.ClusterInfoRequest{})
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(worker.DefaultFilesRoot, info.GetNodeId())
	t.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			t.Errorf("unmount %s: %v", dir, err)
		}
		_ = os.Remove(dir)
	})
}

func TestSecretsAndConfigs(t *testing.T) {
	ctrtest.SkipWithoutContainerd(t)
	// A snapshot after every entry, so that the secret is in one.
	n := startNodeWith(t, "snapshot_threshold = 1\nsnapshot_interval = \"1s\"")
	ctx := context.Background()
	unmountFiles(t, n)
	plain := []byte("s3cr3t-" + fmt.Sprint(time.Now().UnixNano()))
	file := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(file, plain, 0o600); err != nil {
		t.Fatal(err)
	}
	n.cli("secret", "create", "db-password", file)
	conf := []byte("listen 8080;\n")
	confFile := filepath.Join(t.TempDir(), "nginx.conf")
	if err := os.WriteFile(confFile, conf, 0o600); err != nil {
		t.Fatal(err)
	}
	n.cli("config", "create", "nginx-conf", confFile)

	// The API never gives the data back.
	got, err := n.c.GetSecret(ctx, &apiv1.GetSecretRequest{NameOrId: "db-password"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got.GetSecret().GetData()) != 0 || got.GetSecret().GetSize() != uint64(len(plain)) || got.GetSecret().GetRevision() != 1 {
		t.Fatalf("GetSecret = %v: want no data, size %d, revision 1", got.GetSecret(), len(plain))
	}
	if out := n.cli("secret", "inspect", "db-password"); strings.Contains(out, string(plain)) {
		t.Fatalf("secret inspect shows the plaintext:\n%s", out)
	}

	n.cli(append([]string{"service", "create", "db", "--image", ctrtest.TestImage, quickStop, converge,
		"--secret", "source=db-password,uid=1000,gid=2000,mode=0400",
		"--config", "src=nginx-conf,target=/etc/nginx/nginx.conf"},
		showFile("/run/secrets/db-password", "/etc/nginx/nginx.conf")...)...)
	n.waitConverged("db", 1)
	logs := n.waitLog("db", "file /etc/nginx/nginx.conf")
	wantSecret := "file /run/secrets/db-password 400 1000 2000 " + md5hex(plain) + " tmpfs"
	if !strings.Contains(logs, wantSecret) {
		t.Fatalf("the container sees the secret otherwise; logs:\n%s\nwant a line with %q", logs, wantSecret)
	}
	if want := "file /etc/nginx/nginx.conf 444 0 0 " + md5hex(conf); !strings.Contains(logs, want) {
		t.Fatalf("the container sees the config otherwise; logs:\n%s\nwant a line with %q", logs, want)
	}
	tasks := n.tasks("db", false)
	if len(tasks) != 1 || tasks[0].GetSpec().GetSecrets()[0].GetRevision() != 1 {
		t.Fatalf("the task does not record secret revision 1: %v", tasks)
	}

	// Removal is refused while the service uses them, naming it.
	for _, kind := range []string{"secret", "config"} {
		name := map[string]string{"secret": "db-password", "config": "nginx-conf"}[kind]
		out, errOut, code := testutil.RunCLI(t, n.bin, n.a.Socket, kind, "rm", name)
		if code == 0 || !strings.Contains(errOut, `service db`) {
			t.Errorf("%s rm %s while used: exit %d, %s%s; want a refusal naming service db", kind, name, code, out, errOut)
		}
	}

	// update rolls the task onto the new revision.
	plain2 := []byte("n3w-" + string(plain))
	cmd := []string{"secret", "update", "db-password", "-"}
	out, errOut, code := testutil.RunCLIStdin(t, n.bin, n.a.Socket, bytes.NewReader(plain2), cmd...)
	if code != 0 {
		t.Fatalf("secret update: exit %d %s%s", code, out, errOut)
	}
	old := tasks[0].GetId()
	testutil.Eventually(t, 30*time.Second, "the task replaced with secret revision 2", func() bool {
		ts := n.tasks("db", false)
		return len(ts) == 1 && ts[0].GetId() != old && ts[0].GetState() == apiv1.TaskState_TASK_STATE_RUNNING &&
			ts[0].GetSpec().GetSecrets()[0].GetRevision() == 2
	})
	n.waitLog("db", "file /run/secrets/db-password 400 1000 2000 "+md5hex(plain2))

	// Nowhere on disk: not in the Raft log, its snapshots, the store
	// file, nor the worker's data dir (task handles, container state).
	testutil.Eventually(t, 20*time.Second, "a Raft snapshot", func() bool {
		m, _ := filepath.Glob(filepath.Join(n.a.DataDir, "*", "snapshots", "*", "state.bin"))
		return len(m) > 0
	})
	files := grepTree(t, n.a.DataDir, plain)
	grepTree(t, n.a.DataDir, plain2)
	if files < 3 {
		t.Fatalf("only %d files under the data dir: the grep looked at the wrong place", files)
	}
}

func TestSecretsBadInput(t *testing.T) {
	ctrtest.SkipWithoutContainerd(t)
	n := startNode(t)
	ctx := context.Background()
	if _, err := n.c.CreateSecret(ctx, &apiv1.CreateSecretRequest{Name: "ok", Data: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	if _, err := n.c.CreateConfig(ctx, &apiv1.CreateConfigRequest{Name: "conf", Data: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	spec := func(edit func(*apiv1.ServiceSpec)) *apiv1.ServiceSpec {
		s := &apiv1.ServiceSpec{Name: "web", Image: ctrtest.TestImage}
		edit(s)
		return s
	}
	tests := []struct {
		name string
		call func() error
		want error
		msg  string
	}{
		{"empty secret", func() error {
			_, err := n.c.CreateSecret(ctx, &apiv1.CreateSecretRequest{Name: "empty"})
			return err
		}, sdk.ErrInvalidArgument, "empty"},
		{"oversized secret", func() error {
			_, err := n.c.CreateSecret(ctx, &apiv1.CreateSecretRequest{Name: "big", Data: make([]byte, 500<<10+1)})
			return err
		}, sdk.ErrInvalidArgument, "more than the 512000"},
		{"secret name not a DNS label", func() error {
			_, err := n.c.CreateSecret(ctx, &apiv1.CreateSecretRequest{Name: "Bad_Name", Data: []byte("x")})
			return err
		}, sdk.ErrInvalidArgument, `"Bad_Name" is invalid`},
		{"config name not a DNS label", func() error {
			_, err := n.c.CreateConfig(ctx, &apiv1.CreateConfigRequest{Name: "-x", Data: []byte("x")})
			return err
		}, sdk.ErrInvalidArgument, `"-x" is invalid`},
		{"empty config", func() error {
			_, err := n.c.CreateConfig(ctx, &apiv1.CreateConfigRequest{Name: "empty"})
			return err
		}, sdk.ErrInvalidArgument, "empty"},
		{"oversized config", func() error {
			_, err := n.c.CreateConfig(ctx, &apiv1.CreateConfigRequest{Name: "big", Data: make([]byte, 500<<10+1)})
			return err
		}, sdk.ErrInvalidArgument, "more than the 512000"},
		{"oversized secret update", func() error {
			_, err := n.c.UpdateSecret(ctx, &apiv1.UpdateSecretRequest{NameOrId: "ok", Data: make([]byte, 500<<10+1)})
			return err
		}, sdk.ErrInvalidArgument, "more than the 512000"},
		{"duplicate secret", func() error {
			_, err := n.c.CreateSecret(ctx, &apiv1.CreateSecretRequest{Name: "ok", Data: []byte("y")})
			return err
		}, sdk.ErrAlreadyExists, `"ok"`},
		{"unknown secret on a service", func() error {
			_, err := n.c.CreateService(ctx, &apiv1.CreateServiceRequest{Spec: spec(func(s *apiv1.ServiceSpec) {
				s.Secrets = []*apiv1.FileReference{{Name: "nope"}}
			})})
			return err
		}, sdk.ErrNotFound, `secret "nope"`},
		{"unknown config on a service", func() error {
			_, err := n.c.CreateService(ctx, &apiv1.CreateServiceRequest{Spec: spec(func(s *apiv1.ServiceSpec) {
				s.Configs = []*apiv1.FileReference{{Name: "nope", Target: "/etc/x"}}
			})})
			return err
		}, sdk.ErrNotFound, `config "nope"`},
		{"relative target", func() error {
			_, err := n.c.CreateService(ctx, &apiv1.CreateServiceRequest{Spec: spec(func(s *apiv1.ServiceSpec) {
				s.Secrets = []*apiv1.FileReference{{Name: "ok", Target: "etc/pw"}}
			})})
			return err
		}, sdk.ErrInvalidArgument, "absolute path"},
		{"config without a target", func() error {
			_, err := n.c.CreateService(ctx, &apiv1.CreateServiceRequest{Spec: spec(func(s *apiv1.ServiceSpec) {
				s.Configs = []*apiv1.FileReference{{Name: "conf"}}
			})})
			return err
		}, sdk.ErrInvalidArgument, "needs a target"},
		{"target colliding with a mount", func() error {
			_, err := n.c.CreateService(ctx, &apiv1.CreateServiceRequest{Spec: spec(func(s *apiv1.ServiceSpec) {
				s.Mounts = []*apiv1.Mount{{Type: "tmpfs", Target: "/run/secrets"}}
				s.Secrets = []*apiv1.FileReference{{Name: "ok"}}
			})})
			return err
		}, sdk.ErrInvalidArgument, "collides"},
		{"two files at one target", func() error {
			_, err := n.c.CreateService(ctx, &apiv1.CreateServiceRequest{Spec: spec(func(s *apiv1.ServiceSpec) {
				s.Secrets = []*apiv1.FileReference{{Name: "ok", Target: "/etc/x"}}
				s.Configs = []*apiv1.FileReference{{Name: "conf", Target: "/etc/x"}}
			})})
			return err
		}, sdk.ErrInvalidArgument, "collides"},
		{"unknown secret to update", func() error {
			_, err := n.c.UpdateSecret(ctx, &apiv1.UpdateSecretRequest{NameOrId: "nope", Data: []byte("x")})
			return err
		}, sdk.ErrNotFound, `"nope"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			if !errors.Is(sdk.FromStatus(err), tt.want) || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("error %v, want %v mentioning %q", err, tt.want, tt.msg)
			}
		})
	}
	// Nothing was stored.
	ss, err := n.c.ListSecrets(ctx, &apiv1.ListSecretsRequest{})
	if err != nil || len(ss.GetSecrets()) != 1 {
		t.Fatalf("secrets after the refusals: %v, %v; want only ok", ss.GetSecrets(), err)
	}
	if ok, err := n.c.GetSecret(ctx, &apiv1.GetSecretRequest{NameOrId: "ok"}); err != nil || ok.GetSecret().GetRevision() != 1 {
		t.Fatalf("secret ok after the refused update: %v, %v; want revision 1", ok.GetSecret(), err)
	}
	cs, err := n.c.ListConfigs(ctx, &apiv1.ListConfigsRequest{})
	if err != nil || len(cs.GetConfigs()) != 1 {
		t.Fatalf("configs after the refusals: %v, %v; want only conf", cs.GetConfigs(), err)
	}
	if svcs, err := n.c.ListServices(ctx, &apiv1.ListServicesRequest{}); err != nil || len(svcs.GetServices()) != 0 {
		t.Fatalf("services after the refusals: %v, %v; want none", svcs.GetServices(), err)
	}
}
