// Package bench compares jsonscan, meshrev's JSON scanner for the admission
// hot path, with github.com/go-json-experiment/json/jsontext on the
// injector's realistic inputs. It is a test-only module of its own, so that
// jsontext stays out of meshrev's module graph; figures in BENCHMARKS.md.
package bench
