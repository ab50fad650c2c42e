#!/usr/bin/env bash
# Prints the release version of the checkout: the tag vX.Y.Z[-pre] on HEAD
# without its v, else 0.0.0-dev-<commit>; "-dirty" is appended when tracked
# files differ from HEAD. SemVer, so it is at once the image tag, the
# chart's version and appVersion, and (with a v) the krew version.
set -euo pipefail
if tag=$(git describe --tags --exact-match --match 'v[0-9]*' 2>/dev/null); then
	v=${tag#v}
else
	v=0.0.0-dev-$(git rev-parse --short=12 HEAD)
fi
git diff --quiet HEAD -- 2>/dev/null || v+=-dirty
echo "$v"
