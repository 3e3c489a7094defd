worker {}

plugin {
  path = "/opt/warren/plugins/store-bolt"
}
