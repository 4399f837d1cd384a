package console

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	"github.com/aws/aws-sdk-go-v2/service/iam"
)

// The account's ECR repositories and IAM identities (read-only pages).

type imageView struct {
	Tags                 []string
	Digest, Size, Pushed string
}

type repoView struct {
	Name, URI, Login string
	Images           []imageView
}

// size is a byte count as the console prints it.
func size(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

func (h *Handler) ecrPage(q *request) {
	var repos []repoView
	p := ecr.NewDescribeRepositoriesPaginator(q.api.ECR, &ecr.DescribeRepositoriesInput{})
	for p.HasMorePages() {
		page, err := p.NextPage(q.ctx)
		if err != nil {
			h.fail(q, err)
			return
		}
		for _, r := range page.Repositories {
			uri := aws.ToString(r.RepositoryUri)
			host, _, _ := strings.Cut(uri, "/")
			rv := repoView{Name: aws.ToString(r.RepositoryName), URI: uri,
				Login: fmt.Sprintf("aws ecr get-login-password --region %s | docker login --username AWS --password-stdin %s", h.cfg.Region, host)}
			ip := ecr.NewDescribeImagesPaginator(q.api.ECR, &ecr.DescribeImagesInput{RepositoryName: r.RepositoryName})
			for ip.HasMorePages() {
				imgs, err := ip.NextPage(q.ctx)
				if err != nil {
					h.fail(q, err)
					return
				}
				for _, im := range imgs.ImageDetails {
					rv.Images = append(rv.Images, imageView{Tags: im.ImageTags, Digest: aws.ToString(im.ImageDigest),
						Size: size(aws.ToInt64(im.ImageSizeInBytes)), Pushed: stamp(aws.ToTime(im.ImagePushedAt))})
				}
			}
			slices.SortFunc(rv.Images, func(a, b imageView) int { return strings.Compare(b.Pushed, a.Pushed) })
			repos = append(repos, rv)
		}
	}
	slices.SortFunc(repos, func(a, b repoView) int { return strings.Compare(a.Name, b.Name) })
	h.render(q.w, http.StatusOK, "ecr", q.sess, map[string]any{"Repos": repos})
}

type keyView struct{ ID, Status, Created string }

type userView struct {
	Name, Arn, Created string
	Keys               []keyView
}

type roleView struct {
	Name, Arn, Created string
	Trusts             []string // services and principals that may assume it
}

func (h *Handler) iamPage(q *request) {
	var users []userView
	up := iam.NewListUsersPaginator(q.api.IAM, &iam.ListUsersInput{})
	for up.HasMorePages() {
		page, err := up.NextPage(q.ctx)
		if err != nil {
			h.fail(q, err)
			return
		}
		for _, u := range page.Users {
			uv := userView{Name: aws.ToString(u.UserName), Arn: aws.ToString(u.Arn), Created: stamp(aws.ToTime(u.CreateDate))}
			keys, err := q.api.IAM.ListAccessKeys(q.ctx, &iam.ListAccessKeysInput{UserName: u.UserName})
			if err != nil {
				h.fail(q, err)
				return
			}
			for _, k := range keys.AccessKeyMetadata {
				uv.Keys = append(uv.Keys, keyView{ID: aws.ToString(k.AccessKeyId), Status: string(k.Status), Created: stamp(aws.ToTime(k.CreateDate))})
			}
			users = append(users, uv)
		}
	}
	var roles []roleView
	rp := iam.NewListRolesPaginator(q.api.IAM, &iam.ListRolesInput{})
	for rp.HasMorePages() {
		page, err := rp.NextPage(q.ctx)
		if err != nil {
			h.fail(q, err)
			return
		}
		for _, r := range page.Roles {
			doc, _ := url.QueryUnescape(aws.ToString(r.AssumeRolePolicyDocument))
			roles = append(roles, roleView{Name: aws.ToString(r.RoleName), Arn: aws.ToString(r.Arn), Created: stamp(aws.ToTime(r.CreateDate)),
				Trusts: trusted(doc)})
		}
	}
	slices.SortFunc(users, func(a, b userView) int { return strings.Compare(a.Name, b.Name) })
	slices.SortFunc(roles, func(a, b roleView) int { return strings.Compare(a.Name, b.Name) })
	h.render(q.w, http.StatusOK, "iam", q.sess, map[string]any{"Users": users, "Roles": roles})
}

// trusted lists the services (and ARNs) a trust policy names, in order.
func trusted(doc string) []string {
	var out []string
	for _, f := range strings.FieldsFunc(doc, func(r rune) bool { return r == '"' || r == '[' || r == ']' || r == ',' || r == ' ' }) {
		if (strings.HasSuffix(f, ".amazonaws.com") || strings.HasPrefix(f, "arn:aws:")) && !slices.Contains(out, f) {
			out = append(out, f)
		}
	}
	return out
}
