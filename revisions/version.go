package revisions

import (
	"fmt"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// Version is a control-plane version MAJOR.MINOR.PATCH.
type Version struct {
	Major, Minor, Patch int
}

// ParseVersion parses "1.23.6". A leading "v" is accepted.
func ParseVersion(s string) (Version, error) {
	parts := strings.Split(strings.TrimPrefix(s, "v"), ".")
	if len(parts) != 3 {
		return Version{}, fmt.Errorf("version %q must be MAJOR.MINOR.PATCH, for example 1.23.6", s)
	}
	var n [3]int
	for i, p := range parts {
		v, err := strconv.Atoi(p)
		if err != nil || v < 0 || p == "" || (len(p) > 1 && p[0] == '0') {
			return Version{}, fmt.Errorf("version %q must be MAJOR.MINOR.PATCH of plain numbers, for example 1.23.6", s)
		}
		n[i] = v
	}
	return Version{Major: n[0], Minor: n[1], Patch: n[2]}, nil
}

// String returns "1.23.6".
func (v Version) String() string { return fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Patch) }

// RevisionName returns the conventional revision name of the version: 1-23-6.
func (v Version) RevisionName() string { return fmt.Sprintf("%d-%d-%d", v.Major, v.Minor, v.Patch) }

// Compare returns -1, 0 or 1 as v is older than, equal to or newer than o.
func (v Version) Compare(o Version) int {
	for _, d := range [3]int{v.Major - o.Major, v.Minor - o.Minor, v.Patch - o.Patch} {
		if d < 0 {
			return -1
		}
		if d > 0 {
			return 1
		}
	}
	return 0
}

// RevisionName returns the conventional revision name of a version string
// (1.23.6 → 1-23-6).
func RevisionName(version string) (string, error) {
	v, err := ParseVersion(version)
	if err != nil {
		return "", err
	}
	return v.RevisionName(), nil
}

// VersionFromRevisionName reads a conventional revision name back
// (1-23-6 → 1.23.6).
func VersionFromRevisionName(name string) (Version, error) {
	v, err := ParseVersion(strings.ReplaceAll(name, "-", "."))
	if err != nil {
		return Version{}, fmt.Errorf("revision name %q is not of the form MAJOR-MINOR-PATCH, for example 1-23-6", name)
	}
	return v, nil
}

// ValidateRevisionName says what is wrong with a revision name, or nothing.
func ValidateRevisionName(name string) []string {
	switch name {
	case TagStable, TagCanary, TagDefault:
		return []string{fmt.Sprintf("%q is a tag, not a revision name; name revisions after their version, for example 1-23-6", name)}
	}
	return validation.IsDNS1123Label(name)
}

// CheckSkip applies the version skip policy to an upgrade from stable to
// candidate: the candidate must be newer, of the same major version, and at
// most one minor version above. It returns nil when the upgrade is allowed.
func CheckSkip(stable, candidate Version) error {
	switch {
	case candidate.Compare(stable) <= 0:
		return fmt.Errorf("version %s is not newer than stable %s: a canary must upgrade; to go back, revoke the canary or keep the stable revision", candidate, stable)
	case candidate.Major != stable.Major:
		return fmt.Errorf("version %s changes the major version of stable %s: canary upgrades stay within one major version", candidate, stable)
	case candidate.Minor > stable.Minor+1:
		return fmt.Errorf("version %s is %d minor versions above stable %s: the skip policy allows at most one minor version per upgrade, so upgrade to %d.%d.x first",
			candidate, candidate.Minor-stable.Minor, stable, stable.Major, stable.Minor+1)
	}
	return nil
}
