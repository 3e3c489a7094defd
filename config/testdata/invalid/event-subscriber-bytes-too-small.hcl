manager {
  event_subscriber_bytes = 1024
}
