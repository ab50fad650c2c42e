package revisions

import "github.com/meshrev/meshrev/revisions/v1alpha1"

// BoundOutdated keeps the Mesh's size independent of the cluster's: from
// workloads (sorted as DataPlaneReport sorts them) it keeps, in order, each
// workload that is among the first limit workloads of one of the revisions
// its outdated pods run, so at most limit per revision. It also returns how
// many workloads each revision has outdated pods in (all of them, listed or
// not).
func BoundOutdated(workloads []v1alpha1.WorkloadStatus, limit int) ([]v1alpha1.WorkloadStatus, map[string]int32) {
	perRev := map[string]int32{}
	var listed []v1alpha1.WorkloadStatus
	for _, w := range workloads {
		keep := false
		for _, rev := range w.Revisions {
			if int(perRev[rev]) < limit {
				keep = true
			}
			perRev[rev]++
		}
		if keep {
			listed = append(listed, w)
		}
	}
	return listed, perRev
}
