manager {
  event_subscriber_bytes = 1048576
}
