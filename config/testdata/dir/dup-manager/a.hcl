manager {
  store = "store-bolt"
}
