package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"slices"
	"sort"
	"time"

	"github.com/distribution/distribution/v3"
	"github.com/distribution/distribution/v3/registry/storage"
	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// ErrImageNotFound is returned for a digest or tag a repository does not have.
var ErrImageNotFound = errors.New("image not found")

// Image is one manifest of a repository, as ECR describes images.
type Image struct {
	Digest    string
	Tags      []string // sorted
	MediaType string   // the manifest's
	// ArtifactMediaType is the config's media type (images) or the
	// manifest's artifactType.
	ArtifactMediaType string
	// Size is the sum of the layers' (compressed) sizes; for an index, the
	// largest of its manifests' sizes (as ECR reports it).
	Size     int64
	PushedAt time.Time
	// Manifests are the digests an index refers to.
	Manifests []string
}

// storageRoot is distribution's fixed storage layout (registry/storage/paths.go).
const storageRoot = "/docker/registry/v2/repositories"

func (r *Registry) repository(ctx context.Context, repo string) (distribution.Repository, error) {
	named, err := reference.WithName(repo)
	if err != nil {
		return nil, fmt.Errorf("repository name %q: %w", repo, err)
	}
	return r.ns.Repository(ctx, named)
}

// Images returns every manifest of repo (tagged or not), ordered by
// digest; none if the repository has no content.
func (r *Registry) Images(ctx context.Context, repo string) ([]Image, error) {
	rep, err := r.repository(ctx, repo)
	if err != nil {
		return nil, err
	}
	tags, err := r.tagsByDigest(ctx, rep)
	if err != nil {
		return nil, err
	}
	ms, err := rep.Manifests(ctx)
	if err != nil {
		return nil, fmt.Errorf("manifests of %s: %w", repo, err)
	}
	var digests []digest.Digest
	err = ms.(distribution.ManifestEnumerator).Enumerate(ctx, func(d digest.Digest) error {
		digests = append(digests, d)
		return nil
	})
	if err != nil && !isPathNotFound(err) {
		return nil, fmt.Errorf("list the manifests of %s: %w", repo, err)
	}
	out := make([]Image, 0, len(digests))
	byDigest := map[string]int{}
	for _, d := range digests {
		img, err := r.image(ctx, repo, ms, d)
		if err != nil {
			if isPathNotFound(err) || errors.As(err, new(distribution.ErrManifestUnknownRevision)) {
				continue // deleted meanwhile
			}
			return nil, err
		}
		img.Tags = tags[d.String()]
		byDigest[img.Digest] = len(out)
		out = append(out, img)
	}
	for i, img := range out {
		for _, m := range img.Manifests {
			if j, ok := byDigest[m]; ok && out[j].Size > out[i].Size {
				out[i].Size = out[j].Size
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Digest < out[j].Digest })
	return out, nil
}

// manifestJSON is the part of an image manifest or index Images reads.
type manifestJSON struct {
	MediaType    string          `json:"mediaType"`
	ArtifactType string          `json:"artifactType"`
	Config       v1.Descriptor   `json:"config"`
	Layers       []v1.Descriptor `json:"layers"`
	Manifests    []v1.Descriptor `json:"manifests"`
}

func (r *Registry) image(ctx context.Context, repo string, ms distribution.ManifestService, d digest.Digest) (Image, error) {
	m, err := ms.Get(ctx, d)
	if err != nil {
		return Image{}, fmt.Errorf("manifest %s@%s: %w", repo, d, err)
	}
	mediaType, payload, err := m.Payload()
	if err != nil {
		return Image{}, fmt.Errorf("manifest %s@%s: %w", repo, d, err)
	}
	var mj manifestJSON
	if err := json.Unmarshal(payload, &mj); err != nil {
		return Image{}, fmt.Errorf("manifest %s@%s: %w", repo, d, err)
	}
	img := Image{Digest: d.String(), MediaType: mediaType, ArtifactMediaType: mj.ArtifactType}
	if img.ArtifactMediaType == "" {
		img.ArtifactMediaType = mj.Config.MediaType
	}
	for _, l := range mj.Layers {
		img.Size += l.Size
	}
	for _, c := range mj.Manifests {
		img.Manifests = append(img.Manifests, c.Digest.String())
	}
	// The revision link is written at every push of the manifest.
	fi, err := r.driver.Stat(ctx, path.Join(storageRoot, repo, "_manifests/revisions", d.Algorithm().String(), d.Encoded(), "link"))
	if err != nil {
		return Image{}, fmt.Errorf("manifest %s@%s: %w", repo, d, err)
	}
	img.PushedAt = fi.ModTime()
	return img, nil
}

// tagsByDigest maps each manifest digest of rep to its tags (sorted).
func (r *Registry) tagsByDigest(ctx context.Context, rep distribution.Repository) (map[string][]string, error) {
	ts := rep.Tags(ctx)
	all, err := ts.All(ctx)
	if err != nil {
		if errors.As(err, new(distribution.ErrRepositoryUnknown)) || isPathNotFound(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("tags of %s: %w", rep.Named().Name(), err)
	}
	out := map[string][]string{}
	for _, t := range all {
		desc, err := ts.Get(ctx, t)
		if err != nil {
			if errors.As(err, new(distribution.ErrTagUnknown)) || isPathNotFound(err) {
				continue // untagged meanwhile
			}
			return nil, fmt.Errorf("tag %s:%s: %w", rep.Named().Name(), t, err)
		}
		out[desc.Digest.String()] = append(out[desc.Digest.String()], t)
	}
	for _, tags := range out {
		slices.Sort(tags)
	}
	return out, nil
}

// TagDigest returns the digest repo's tag points to; ErrImageNotFound if
// the tag does not exist.
func (r *Registry) TagDigest(ctx context.Context, repo, tag string) (string, error) {
	rep, err := r.repository(ctx, repo)
	if err != nil {
		return "", err
	}
	desc, err := rep.Tags(ctx).Get(ctx, tag)
	if err != nil {
		if errors.As(err, new(distribution.ErrTagUnknown)) || errors.As(err, new(distribution.ErrRepositoryUnknown)) || isPathNotFound(err) {
			return "", fmt.Errorf("%s:%s: %w", repo, tag, ErrImageNotFound)
		}
		return "", fmt.Errorf("tag %s:%s: %w", repo, tag, err)
	}
	return desc.Digest.String(), nil
}

// Untag removes a tag (the manifest stays); ErrImageNotFound if absent.
func (r *Registry) Untag(ctx context.Context, repo, tag string) error {
	rep, err := r.repository(ctx, repo)
	if err != nil {
		return err
	}
	if err := rep.Tags(ctx).Untag(ctx, tag); err != nil {
		if errors.As(err, new(distribution.ErrTagUnknown)) || isPathNotFound(err) {
			return fmt.Errorf("%s:%s: %w", repo, tag, ErrImageNotFound)
		}
		return fmt.Errorf("untag %s:%s: %w", repo, tag, err)
	}
	return nil
}

// DeleteImage deletes a manifest and every tag pointing to it, as the
// registry API's manifest DELETE does; ErrImageNotFound if absent. Its
// blobs are freed by the garbage collection at the next start.
func (r *Registry) DeleteImage(ctx context.Context, repo, dgst string) error {
	d, err := digest.Parse(dgst)
	if err != nil {
		return fmt.Errorf("digest %q: %w", dgst, err)
	}
	rep, err := r.repository(ctx, repo)
	if err != nil {
		return err
	}
	ms, err := rep.Manifests(ctx)
	if err != nil {
		return fmt.Errorf("manifests of %s: %w", repo, err)
	}
	if err := ms.Delete(ctx, d); err != nil {
		if errors.Is(err, distribution.ErrBlobUnknown) || isPathNotFound(err) {
			return fmt.Errorf("%s@%s: %w", repo, dgst, ErrImageNotFound)
		}
		return fmt.Errorf("delete %s@%s: %w", repo, dgst, err)
	}
	ts := rep.Tags(ctx)
	tags, err := ts.Lookup(ctx, v1.Descriptor{Digest: d})
	if err != nil && !isPathNotFound(err) {
		return fmt.Errorf("tags of %s@%s: %w", repo, dgst, err)
	}
	for _, t := range tags {
		if err := ts.Untag(ctx, t); err != nil && !isPathNotFound(err) {
			return fmt.Errorf("untag %s:%s: %w", repo, t, err)
		}
	}
	return nil
}

// RemoveRepository removes repo's manifests, tags, layer links and
// uploads (not its nested repositories: repo/x stays); its blobs are freed
// at the next start.
func (r *Registry) RemoveRepository(ctx context.Context, repo string) error {
	if _, err := reference.WithName(repo); err != nil {
		return fmt.Errorf("repository name %q: %w", repo, err)
	}
	if err := storage.NewVacuum(ctx, r.driver).RemoveRepository(repo); err != nil {
		return fmt.Errorf("remove repository %s from the registry: %w", repo, err)
	}
	return nil
}

// Repositories returns the names of every repository with content, in
// the registry's order.
func (r *Registry) Repositories(ctx context.Context) ([]string, error) {
	var out []string
	err := r.ns.(distribution.RepositoryEnumerator).Enumerate(ctx, func(name string) error {
		out = append(out, name)
		return nil
	})
	if err != nil && !isPathNotFound(err) {
		return nil, fmt.Errorf("list the registry's repositories: %w", err)
	}
	return out, nil
}

func isPathNotFound(err error) bool {
	var pnf storagedriver.PathNotFoundError
	return errors.As(err, &pnf)
}
