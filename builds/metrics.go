package builds

// BuildCount is how many builds of one platform are in one status.
type BuildCount struct {
	Status   Status
	Platform string
	Count    int
}

// Histogram is a cumulative histogram read from the database: Buckets[i]
// counts the observations at most the i-th upper bound the caller asked for.
type Histogram struct {
	Count   uint64
	Sum     float64
	Buckets []uint64
}

// Durations name what a duration histogram measures.
const (
	DurationBuild     = "build"      // started → finished, per platform of the build
	DurationStep      = "step"       // a step's start → finish, per step platform
	DurationQueueWait = "queue_wait" // created → started, per platform of the build
)
