package manager

import (
	"fmt"
	"runtime/debug"
	"strconv"
)

// Environment variables of SetMemoryLimitFromEnv. The chart sets
// MemoryLimitEnv from the container's memory limit (downward API).
const (
	// MemoryLimitEnv is the container's memory limit in bytes.
	MemoryLimitEnv = "MESHREV_MEMORY_LIMIT"
	// MemoryLimitPercentEnv is the share of MemoryLimitEnv given to the Go
	// runtime as its soft limit (default DefaultMemoryLimitPercent).
	MemoryLimitPercentEnv = "MESHREV_MEMORY_LIMIT_PERCENT"
	// DefaultMemoryLimitPercent leaves room for memory the Go runtime does
	// not account (thread stacks, cgo) below the container's limit.
	DefaultMemoryLimitPercent = 90
)

// SetMemoryLimitFromEnv sets the Go runtime's soft memory limit (what
// GOMEMLIMIT sets) to a share of the container's memory limit, so that the
// garbage collector works harder before the kernel OOM-kills the process. An
// explicit GOMEMLIMIT wins. It returns the limit set, 0 when none.
func SetMemoryLimitFromEnv(getenv func(string) string) (int64, error) {
	if getenv("GOMEMLIMIT") != "" {
		return 0, nil
	}
	v := getenv(MemoryLimitEnv)
	if v == "" {
		return 0, nil
	}
	limit, err := strconv.ParseInt(v, 10, 64)
	if err != nil || limit <= 0 {
		return 0, fmt.Errorf("%s=%q: want the memory limit in bytes", MemoryLimitEnv, v)
	}
	percent := int64(DefaultMemoryLimitPercent)
	if p := getenv(MemoryLimitPercentEnv); p != "" {
		percent, err = strconv.ParseInt(p, 10, 64)
		if err != nil || percent < 10 || percent > 100 {
			return 0, fmt.Errorf("%s=%q: want a percentage from 10 to 100", MemoryLimitPercentEnv, p)
		}
	}
	soft := limit / 100 * percent
	debug.SetMemoryLimit(soft)
	return soft, nil
}
