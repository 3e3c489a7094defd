package containerd

// HoldStart admits a start as StartTask does and returns the function that
// ends it: tests use it to have a start in flight at a chosen moment.
func HoldStart(r *Runtime) (end func(), err error) {
	return r.be.Load().beginStart()
}

// Closing reports whether Close has begun refusing starts.
func Closing(r *Runtime) bool {
	be := r.be.Load()
	return be != nil && be.closing.Load()
}

// WithoutLogger has r start tasks as before loggers existed: the shim
// writes a plain log file.
func WithoutLogger(r *Runtime) { r.logger = "" }
