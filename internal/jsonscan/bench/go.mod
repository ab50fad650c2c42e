module github.com/meshrev/meshrev/internal/jsonscan/bench

go 1.26.0

require (
	github.com/go-json-experiment/json v1.27.2
	github.com/meshrev/meshrev v0.0.0
	github.com/stretchr/testify v1.12.1
	sigs.k8s.io/yaml v1.6.0
)

require (
	go.yaml.in/yaml/v2 v2.4.4 // indirect
	go.yaml.in/yaml/v3 v3.0.5 // indirect
)

replace github.com/meshrev/meshrev => ../../..
