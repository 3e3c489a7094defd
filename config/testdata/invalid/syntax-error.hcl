manager {
  store = "store-bolt"

worker {
