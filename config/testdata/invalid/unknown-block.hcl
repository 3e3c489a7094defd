managr {
}
