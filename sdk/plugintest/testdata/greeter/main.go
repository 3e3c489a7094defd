// Command greeter is a scheduler plugin that exists only to test
// sdk/plugintest: it places nothing, and its Schedule error repeats what it
// was configured with and the environment it was given.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/warrenorch/warren/sdk"
	"github.com/warrenorch/warren/sdk/scheduler"
)

type greeter struct {
	log      sdk.Logger
	greeting string
}

func (g *greeter) Info(context.Context) (sdk.Info, error) {
	return sdk.Info{Kind: sdk.KindScheduler, Name: "greeter", Version: "0.0.0", APIVersions: []uint32{sdk.APIVersion}}, nil
}

func (g *greeter) ConfigSchema(context.Context) (sdk.Schema, error) {
	return sdk.Schema{Attributes: []sdk.Attribute{{Name: "greeting", Type: sdk.TypeString}}}, nil
}

func (g *greeter) Configure(_ context.Context, js []byte) error {
	var c struct {
		Greeting string `json:"greeting"`
	}
	if err := sdk.DecodeConfig(js, &c); err != nil {
		return err
	}
	g.greeting = c.Greeting
	g.log.Info("greeter configured", "greeting", c.Greeting)
	g.log.Debug("greeter debug line")
	return nil
}

func (g *greeter) Schedule(context.Context, scheduler.Request) ([]scheduler.Placement, error) {
	return nil, fmt.Errorf("greeting %q, data dir %q, GREETER_ENV %q: %w",
		g.greeting, os.Getenv(sdk.EnvDataDir), os.Getenv("GREETER_ENV"), sdk.ErrUnsupported)
}

func main() {
	scheduler.Serve(&greeter{log: sdk.NewLogger("greeter")})
}
