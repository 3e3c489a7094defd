// Command store-bolt is Warren's default store plugin: the cluster state in
// one local BoltDB file. The host starts it; it is not run by hand.
package main

import (
	"github.com/warrenorch/warren/plugins/store-bolt/bolt"
	"github.com/warrenorch/warren/sdk/store"
)

func main() {
	store.Serve(bolt.New())
}
