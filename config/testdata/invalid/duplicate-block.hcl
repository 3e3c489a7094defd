manager {}

worker {}

manager {
  store = "store-bolt"
}
