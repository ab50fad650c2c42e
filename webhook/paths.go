package webhook

// The paths the manager's webhook server serves the webhooks at: the one
// contract between the manager, the chart's webhook configurations and the
// local cluster's.
const (
	// PathInject serves the Injector (the revision router).
	PathInject = "/inject"
	// PathValidateMesh serves the Mesh validator.
	PathValidateMesh = "/validate-mesh"
	// PathValidateNamespace serves the namespace validator.
	PathValidateNamespace = "/validate-namespace"
	// PathValidateTemplates serves the templates ConfigMap validator.
	PathValidateTemplates = "/validate-templates"
)
