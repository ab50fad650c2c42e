package webhook

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/meshrev/meshrev/revisions"
	"github.com/meshrev/meshrev/revisions/v1alpha1"
)

func TestCheckTemplate(t *testing.T) {
	defaults := DefaultTemplates()
	tests := map[string]struct {
		key, text string
		wantErr   string
	}{
		"the default sidecar template renders":   {key: revisions.TemplateSidecar, text: defaults.Sidecar},
		"the default gateway template renders":   {key: revisions.TemplateGateway, text: defaults.Gateway},
		"a template that does not parse":         {key: revisions.TemplateSidecar, text: "{{ .Revision.Name", wantErr: "parse sidecar template"},
		"a field templates do not see":           {key: revisions.TemplateSidecar, text: "containers: [{name: x, image: {{ .Pod.Name }}}]", wantErr: "render sidecar template"},
		"a gateway template without a container": {key: revisions.TemplateGateway, text: "volumes: [{name: v, emptyDir: {}}]", wantErr: "the gateway template adds no container"},
		"a template meshrev does not have":       {key: "waypoint", text: defaults.Sidecar, wantErr: `no template "waypoint"`},
	}
	inj := newTestInjector(t, &fixedState{})
	rev := &v1alpha1.Revision{Name: "1-23-6", Version: "1.23.6"}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			err := inj.CheckTemplate(rev, tc.key, tc.text)
			if tc.wantErr == "" {
				assert.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tc.wantErr)
		})
	}
}
