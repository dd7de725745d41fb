// Package registry is Manifold's side of container registries: the stored
// credentials (sealed under a key file), the client that pushes from the
// blob store and resolves remote references through the outbound policy,
// promoting a built image, and the pull API's name resolution — which
// digests a repository name serves, its tags, catalog and referrers.
package registry
