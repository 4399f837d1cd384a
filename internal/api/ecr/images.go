package ecr

import (
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"

	"skiff.dev/skiff/internal/api/awserr"
	"skiff.dev/skiff/internal/model"
	"skiff.dev/skiff/internal/registry"
)

// imageID is ECR's ImageIdentifier.
type imageID struct {
	ImageDigest string `json:"imageDigest,omitempty"`
	ImageTag    string `json:"imageTag,omitempty"`
}

// String is the identifier as ECR's messages show it.
func (id imageID) String() string {
	q := func(s string) string {
		if s == "" {
			return "null"
		}
		return "'" + s + "'"
	}
	return fmt.Sprintf("{imageDigest:%s, imageTag:%s}", q(id.ImageDigest), q(id.ImageTag))
}

type imageFilter struct {
	TagStatus   string `json:"tagStatus"`
	ImageStatus string `json:"imageStatus"`
}

// check validates the filter's values.
func (f *imageFilter) check() error {
	if f == nil {
		return nil
	}
	switch f.TagStatus {
	case "", "TAGGED", "UNTAGGED", "ANY":
	default:
		return invalid("Invalid parameter at 'filter.tagStatus' failed to satisfy constraint: 'Member must satisfy enum value set: [TAGGED, UNTAGGED, ANY]': got %q", f.TagStatus)
	}
	switch f.ImageStatus {
	case "", "ACTIVE", "ARCHIVED", "ACTIVATING", "ANY":
	default:
		return invalid("Invalid parameter at 'filter.imageStatus' failed to satisfy constraint: 'Member must satisfy enum value set: [ACTIVE, ARCHIVED, ACTIVATING, ANY]': got %q", f.ImageStatus)
	}
	return nil
}

// match returns whether an image passes the filter.
func (f *imageFilter) match(img registry.Image) bool {
	if f == nil {
		return true
	}
	// skiff archives nothing: every image is ACTIVE.
	if f.ImageStatus == "ARCHIVED" || f.ImageStatus == "ACTIVATING" {
		return false
	}
	switch f.TagStatus {
	case "TAGGED":
		return len(img.Tags) > 0
	case "UNTAGGED":
		return len(img.Tags) == 0
	}
	return true
}

type listImagesRequest struct {
	RegistryID     string       `json:"registryId"`
	RepositoryName string       `json:"repositoryName"`
	NextToken      string       `json:"nextToken"`
	MaxResults     *int         `json:"maxResults"`
	Filter         *imageFilter `json:"filter"`
}

func (h *Handler) images(c *call, rp *model.Repository, f *imageFilter) ([]registry.Image, error) {
	if err := f.check(); err != nil {
		return nil, err
	}
	all, err := h.Registry.Images(c.ctx, rp.Key())
	if err != nil {
		return nil, err
	}
	var out []registry.Image
	for _, img := range all {
		if f.match(img) {
			out = append(out, img)
		}
	}
	return out, nil
}

func (h *Handler) listImages(c *call) (any, error) {
	var req listImagesRequest
	if err := c.decode(&req); err != nil {
		return nil, err
	}
	rp, err := h.repository(c, req.RegistryID, req.RepositoryName)
	if err != nil {
		return nil, err
	}
	max, err := maxResults(req.MaxResults)
	if err != nil {
		return nil, err
	}
	images, err := h.images(c, rp, req.Filter)
	if err != nil {
		return nil, err
	}
	// One identifier per tag (an untagged image: its digest alone), as ECR.
	var ids []imageID
	for _, img := range images {
		if len(img.Tags) == 0 {
			ids = append(ids, imageID{ImageDigest: img.Digest})
		}
		for _, t := range img.Tags {
			ids = append(ids, imageID{ImageDigest: img.Digest, ImageTag: t})
		}
	}
	page, next, err := paginate(ids, func(id imageID) string { return id.ImageDigest + "\x00" + id.ImageTag }, req.NextToken, max)
	if err != nil {
		return nil, err
	}
	if page == nil {
		page = []imageID{}
	}
	return withNext(map[string]any{"imageIds": page}, next), nil
}

type describeImagesRequest struct {
	RegistryID     string       `json:"registryId"`
	RepositoryName string       `json:"repositoryName"`
	ImageIDs       []imageID    `json:"imageIds"`
	NextToken      string       `json:"nextToken"`
	MaxResults     *int         `json:"maxResults"`
	Filter         *imageFilter `json:"filter"`
}

// imageDetail is ECR's ImageDetail shape.
func imageDetail(rp *model.Repository, img registry.Image) map[string]any {
	d := map[string]any{
		"registryId":             rp.Account,
		"repositoryName":         rp.Name,
		"imageDigest":            img.Digest,
		"imageSizeInBytes":       img.Size,
		"imagePushedAt":          epoch(img.PushedAt),
		"imageManifestMediaType": img.MediaType,
		"imageStatus":            "ACTIVE",
	}
	if len(img.Tags) > 0 {
		d["imageTags"] = img.Tags
	}
	if img.ArtifactMediaType != "" {
		d["artifactMediaType"] = img.ArtifactMediaType
	}
	return d
}

func (h *Handler) describeImages(c *call) (any, error) {
	var req describeImagesRequest
	if err := c.decode(&req); err != nil {
		return nil, err
	}
	rp, err := h.repository(c, req.RegistryID, req.RepositoryName)
	if err != nil {
		return nil, err
	}
	if len(req.ImageIDs) > 0 && (req.MaxResults != nil || req.NextToken != "") {
		return nil, invalid("maxResults and nextToken cannot be used with imageIds")
	}
	if len(req.ImageIDs) > 100 {
		return nil, invalid("imageIds: at most 100 identifiers, got %d", len(req.ImageIDs))
	}
	max, err := maxResults(req.MaxResults)
	if err != nil {
		return nil, err
	}
	images, err := h.images(c, rp, req.Filter)
	if err != nil {
		return nil, err
	}
	out := []map[string]any{}
	if len(req.ImageIDs) > 0 {
		ix := index(images)
		seen := map[string]bool{}
		for _, id := range req.ImageIDs {
			if f := id.check(); f != nil {
				return nil, invalid("imageId %s: %s", id, f.FailureReason)
			}
			img, ok := ix.find(id)
			if !ok {
				return nil, awserr.New(http.StatusBadRequest, "ImageNotFoundException", fmt.Sprintf(
					"The image with imageId %s does not exist within the repository with name '%s' in the registry with id '%s'", id, rp.Name, rp.Account))
			}
			if !seen[img.Digest] {
				seen[img.Digest] = true
				out = append(out, imageDetail(rp, img))
			}
		}
		return map[string]any{"imageDetails": out}, nil
	}
	page, next, err := paginate(images, func(img registry.Image) string { return img.Digest }, req.NextToken, max)
	if err != nil {
		return nil, err
	}
	for _, img := range page {
		out = append(out, imageDetail(rp, img))
	}
	return withNext(map[string]any{"imageDetails": out}, next), nil
}

// imageIndex finds a repository's images by digest and tag.
type imageIndex struct {
	byDigest map[string]registry.Image
	byTag    map[string]string   // tag → digest
	parents  map[string][]string // digest → indexes referring to it
}

func index(images []registry.Image) *imageIndex {
	ix := &imageIndex{byDigest: map[string]registry.Image{}, byTag: map[string]string{}, parents: map[string][]string{}}
	for _, img := range images {
		ix.byDigest[img.Digest] = img
		for _, t := range img.Tags {
			ix.byTag[t] = img.Digest
		}
		for _, m := range img.Manifests {
			ix.parents[m] = append(ix.parents[m], img.Digest)
		}
	}
	return ix
}

// find resolves an identifier: by digest, by tag, or both (matching).
func (ix *imageIndex) find(id imageID) (registry.Image, bool) {
	d := id.ImageDigest
	if id.ImageTag != "" {
		td, ok := ix.byTag[id.ImageTag]
		if !ok || d != "" && d != td {
			return registry.Image{}, false
		}
		d = td
	}
	img, ok := ix.byDigest[d]
	return img, ok
}

// failure is ECR's ImageFailure.
type failure struct {
	ImageID       imageID `json:"imageId"`
	FailureCode   string  `json:"failureCode"`
	FailureReason string  `json:"failureReason"`
}

var digestRE = regexp.MustCompile(`^[a-zA-Z0-9-_+.]+:[a-fA-F0-9]+$`)

// check validates an identifier as BatchDeleteImage does.
func (id imageID) check() *failure {
	f := func(code, reason string) *failure {
		return &failure{ImageID: id, FailureCode: code, FailureReason: reason}
	}
	switch {
	case id.ImageDigest == "" && id.ImageTag == "":
		return f("MissingDigestAndTag", "Invalid request parameters: both tag and digest cannot be null")
	case id.ImageDigest != "" && !digestRE.MatchString(id.ImageDigest):
		return f("InvalidImageDigest", "Invalid request parameters: image digest should satisfy the regex '[a-zA-Z0-9-_+.]+:[a-fA-F0-9]+'")
	case len(id.ImageTag) > 300 || strings.ContainsAny(id.ImageTag, " \t\n/:@"):
		return f("InvalidImageTag", "Invalid request parameters: image tag is not a valid tag")
	}
	return nil
}

type batchDeleteImageRequest struct {
	RegistryID     string    `json:"registryId"`
	RepositoryName string    `json:"repositoryName"`
	ImageIDs       []imageID `json:"imageIds"`
}

// batchDeleteImage deletes by digest (the image and all its tags) or by
// tag (the tag; the image too if it was its last tag), as ECR.
func (h *Handler) batchDeleteImage(c *call) (any, error) {
	var req batchDeleteImageRequest
	if err := c.decode(&req); err != nil {
		return nil, err
	}
	rp, err := h.repository(c, req.RegistryID, req.RepositoryName)
	if err != nil {
		return nil, err
	}
	if len(req.ImageIDs) < 1 || len(req.ImageIDs) > 100 {
		return nil, invalid("imageIds: pass 1 to 100 identifiers (imageDigest=… or imageTag=…), got %d", len(req.ImageIDs))
	}
	images, err := h.Registry.Images(c.ctx, rp.Key())
	if err != nil {
		return nil, err
	}
	ix := index(images)
	deleted, failures := []imageID{}, []failure{}
	for _, id := range req.ImageIDs {
		if f := id.check(); f != nil {
			failures = append(failures, *f)
			continue
		}
		ids, f, err := h.deleteOne(c, rp, ix, id)
		if err != nil {
			return nil, err
		}
		if f != nil {
			failures = append(failures, *f)
			continue
		}
		deleted = append(deleted, ids...)
	}
	if len(deleted) > 0 {
		h.log().Info("ecr: images deleted", "account", rp.Account, "repository", rp.Name, "imageIds", deleted)
	}
	return map[string]any{"imageIds": deleted, "failures": failures}, nil
}

// deleteOne deletes one identifier's image or tag and updates ix.
func (h *Handler) deleteOne(c *call, rp *model.Repository, ix *imageIndex, id imageID) ([]imageID, *failure, error) {
	fail := func(code, reason string) ([]imageID, *failure, error) {
		return nil, &failure{ImageID: id, FailureCode: code, FailureReason: reason}, nil
	}
	if id.ImageTag != "" {
		d, ok := ix.byTag[id.ImageTag]
		switch {
		case !ok:
			return fail("ImageNotFound", "Requested image not found")
		case id.ImageDigest != "" && id.ImageDigest != d:
			return fail("ImageTagDoesNotMatchDigest", "Invalid request parameters: given tag does not map to the given digest")
		}
		img := ix.byDigest[d]
		if len(img.Tags) > 1 || len(ix.parents[d]) > 0 {
			if err := h.Registry.Untag(c.ctx, rp.Key(), id.ImageTag); err != nil && !errors.Is(err, registry.ErrImageNotFound) {
				return nil, nil, err
			}
		} else if err := h.Registry.DeleteImage(c.ctx, rp.Key(), d); err != nil && !errors.Is(err, registry.ErrImageNotFound) {
			return nil, nil, err // the last tag: the image goes too
		}
		ix.untag(d, id.ImageTag)
		return []imageID{{ImageDigest: d, ImageTag: id.ImageTag}}, nil, nil
	}
	img, ok := ix.byDigest[id.ImageDigest]
	if !ok {
		return fail("ImageNotFound", "Requested image not found")
	}
	if parents := ix.parents[img.Digest]; len(parents) > 0 {
		return fail("ImageReferencedByManifestList", fmt.Sprintf("Requested image referenced by manifest list: %v", parents))
	}
	if err := h.Registry.DeleteImage(c.ctx, rp.Key(), img.Digest); err != nil && !errors.Is(err, registry.ErrImageNotFound) {
		return nil, nil, err
	}
	ix.remove(img.Digest)
	if len(img.Tags) == 0 {
		return []imageID{{ImageDigest: img.Digest}}, nil, nil
	}
	var out []imageID
	for _, t := range img.Tags {
		out = append(out, imageID{ImageDigest: img.Digest, ImageTag: t})
	}
	return out, nil, nil
}

// untag records that tag left digest (and the image, if it was its last
// tag and no index refers to it).
func (ix *imageIndex) untag(digest, tag string) {
	delete(ix.byTag, tag)
	img := ix.byDigest[digest]
	var tags []string
	for _, t := range img.Tags {
		if t != tag {
			tags = append(tags, t)
		}
	}
	img.Tags = tags
	ix.byDigest[digest] = img
	if len(tags) == 0 && len(ix.parents[digest]) == 0 {
		ix.remove(digest)
	}
}

// remove records that an image is gone with its tags.
func (ix *imageIndex) remove(digest string) {
	img := ix.byDigest[digest]
	for _, t := range img.Tags {
		delete(ix.byTag, t)
	}
	delete(ix.byDigest, digest)
	for _, m := range img.Manifests {
		ps := ix.parents[m][:0]
		for _, p := range ix.parents[m] {
			if p != digest {
				ps = append(ps, p)
			}
		}
		ix.parents[m] = ps
	}
}
