package storetest_test

import (
	"testing"

	"github.com/warrenorch/warren/sdk/store"
	"github.com/warrenorch/warren/sdk/storetest"
)

func TestFakeStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return storetest.NewFakeStore() })
}

func TestFakeStoreClient(t *testing.T) {
	storetest.RunClient(t, func(t *testing.T) store.Store { return storetest.NewFakeStore() })
}
