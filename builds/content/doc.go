// Package content is Manifold's blob store and what is made from it: the
// content-addressed store BuildKit exports into, reachability walks, OCI and
// docker archives assembled on the fly, the downloads' checksums, disk use,
// retention and garbage collection.
//
// It imports the lifecycle package builds for its types; builds never
// imports it.
package content
