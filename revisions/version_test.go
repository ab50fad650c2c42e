package revisions

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseVersion(t *testing.T) {
	cases := map[string]struct {
		in      string
		want    Version
		revName string
		wantErr string
	}{
		"a plain version parses":           {in: "1.23.6", want: Version{1, 23, 6}, revName: "1-23-6"},
		"a leading v is accepted":          {in: "v1.22.0", want: Version{1, 22, 0}, revName: "1-22-0"},
		"two parts are refused":            {in: "1.23", wantErr: `version "1.23" must be MAJOR.MINOR.PATCH, for example 1.23.6`},
		"four parts are refused":           {in: "1.22.6.114", wantErr: "must be MAJOR.MINOR.PATCH"},
		"letters are refused":              {in: "1.x.6", wantErr: "plain numbers"},
		"leading zeros are refused":        {in: "1.023.6", wantErr: "plain numbers"},
		"an empty part is refused":         {in: "1..6", wantErr: "plain numbers"},
		"a negative number is refused":     {in: "1.-2.6", wantErr: "plain numbers"},
		"a revision name is not a version": {in: "1-23-6", wantErr: "must be MAJOR.MINOR.PATCH"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			v, err := ParseVersion(c.in)
			if c.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), c.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, c.want, v)
			assert.Equal(t, c.revName, v.RevisionName())
			back, err := VersionFromRevisionName(c.revName)
			require.NoError(t, err)
			assert.Equal(t, c.want, back, "the revision name reads back")
		})
	}
}

func TestVersionFromRevisionNameRefusesOthers(t *testing.T) {
	_, err := VersionFromRevisionName("canary")
	require.Error(t, err)
	assert.Contains(t, err.Error(), `revision name "canary" is not of the form MAJOR-MINOR-PATCH`)
}

func TestCheckSkip(t *testing.T) {
	cases := map[string]struct {
		stable, candidate string
		wantErr           string
	}{
		"the next minor is allowed":              {stable: "1.22.6", candidate: "1.23.0"},
		"a patch upgrade is allowed":             {stable: "1.22.6", candidate: "1.22.9"},
		"the next minor at any patch is allowed": {stable: "1.22.6", candidate: "1.23.6"},
		"skipping a minor is refused":            {stable: "1.22.6", candidate: "1.24.0", wantErr: "version 1.24.0 is 2 minor versions above stable 1.22.6: the skip policy allows at most one minor version per upgrade, so upgrade to 1.23.x first"},
		"a downgrade is refused":                 {stable: "1.22.6", candidate: "1.21.9", wantErr: "version 1.21.9 is not newer than stable 1.22.6"},
		"a patch downgrade is refused":           {stable: "1.22.6", candidate: "1.22.5", wantErr: "is not newer than stable"},
		"the same version is refused":            {stable: "1.22.6", candidate: "1.22.6", wantErr: "is not newer than stable"},
		"a major upgrade is refused":             {stable: "1.22.6", candidate: "2.0.0", wantErr: "version 2.0.0 changes the major version of stable 1.22.6"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			s, err := ParseVersion(c.stable)
			require.NoError(t, err)
			v, err := ParseVersion(c.candidate)
			require.NoError(t, err)
			err = CheckSkip(s, v)
			if c.wantErr == "" {
				assert.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), c.wantErr)
		})
	}
}

func TestValidateRevisionName(t *testing.T) {
	cases := map[string]struct {
		name    string
		wantErr string
	}{
		"a conventional name is valid":    {name: "1-23-6"},
		"a tag is not a revision name":    {name: "canary", wantErr: `"canary" is a tag`},
		"default is a tag too":            {name: "default", wantErr: "is a tag"},
		"dots are not allowed in a label": {name: "1.23.6", wantErr: "must not contain dots"},
		"upper case is not allowed":       {name: "Rev1", wantErr: "RFC 1123"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			msgs := ValidateRevisionName(c.name)
			if c.wantErr == "" {
				assert.Empty(t, msgs)
				return
			}
			require.NotEmpty(t, msgs)
			assert.Contains(t, msgs[0], c.wantErr)
		})
	}
}
