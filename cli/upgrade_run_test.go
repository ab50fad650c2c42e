package cli

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestUpgradeProgressShowsThroughputAndTimeLeft(t *testing.T) {
	start := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	tests := map[string]struct {
		done, total int
		elapsed     time.Duration
		want        string
	}{
		"nothing done yet: no rate to estimate from": {done: 0, total: 1200, elapsed: 30 * time.Second, want: "[0/1200]"},
		"a quarter done in a minute: three minutes left": {done: 300, total: 1200, elapsed: time.Minute,
			want: "[300/1200] 1m0s elapsed, 5.00 workloads/s, about 3m0s left"},
		"the last one done: nothing left": {done: 12, total: 12, elapsed: 8 * time.Second,
			want: "[12/12] 8s elapsed, 1.50 workloads/s, about 0s left"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			p := progress{start: start, done: tc.done, total: tc.total}
			assert.Equal(t, tc.want, p.line(start.Add(tc.elapsed)))
		})
	}
}
