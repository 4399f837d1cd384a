package authz

import (
	"encoding/json"
	"net/http"
	"sort"
	"strings"

	"skiff.dev/skiff/internal/kms"
)

// KMSTargetPrefix is the X-Amz-Target prefix of KMS' operations.
const KMSTargetPrefix = "TrentService."

// describeKMS names the checks of a KMS request: kms:OP on the key's ARN
// (found through the resolver when the request names it by alias; from
// the ciphertext blob for a Decrypt without KeyId), on "*" for CreateKey,
// ListKeys and ListAliases, and on the alias and its key for CreateAlias
// and DeleteAlias, as KMS authorizes them. Condition keys: the resource's
// tags, the tags a request sets, kms:EncryptionContext:KEY and
// kms:EncryptionContextKeys, kms:RequestAlias.
func (a *Authorizer) describeKMS(r *http.Request, body []byte, account, region string) Operation {
	op, ok := strings.CutPrefix(r.Header.Get("X-Amz-Target"), KMSTargetPrefix)
	if !ok || op == "" {
		return Operation{Service: "kms"}
	}
	var b struct {
		KeyID             string            `json:"KeyId"`
		AliasName         string            `json:"AliasName"`
		TargetKeyID       string            `json:"TargetKeyId"`
		CiphertextBlob    []byte            `json:"CiphertextBlob"`
		EncryptionContext map[string]string `json:"EncryptionContext"`
		Tags              []struct {
			TagKey, TagValue string
		} `json:"Tags"`
		TagKeys []string `json:"TagKeys"`
	}
	json.Unmarshal(body, &b)
	action := "kms:" + op
	base := "arn:aws:kms:" + region + ":" + account + ":"
	// key is the check on the key ref names.
	key := func(ref string) Check {
		c := Check{Action: action, Resource: "*"}
		if arn, tags, ok := a.resolve(account, "key", ref); ok {
			c.Resource, c.Context = arn, resourceTags(tags)
			return c
		}
		switch {
		case strings.HasPrefix(ref, "arn:"):
			c.Resource = ref
		case strings.HasPrefix(ref, "alias/"):
			c.Resource = base + ref
		case ref != "":
			c.Resource = base + "key/" + ref
		}
		return c
	}
	var checks []Check
	switch op {
	case "CreateKey", "ListKeys", "ListAliases":
		checks = []Check{{Action: action, Resource: "*"}}
	case "CreateAlias":
		checks = []Check{{Action: action, Resource: base + b.AliasName}, key(b.TargetKeyID)}
	case "DeleteAlias":
		checks = []Check{{Action: action, Resource: base + b.AliasName}}
		if _, _, ok := a.resolve(account, "key", b.AliasName); ok {
			checks = append(checks, key(b.AliasName))
		}
	case "Decrypt":
		ref := b.KeyID
		if id, ok := kms.CiphertextKeyID(b.CiphertextBlob); ok && ref == "" {
			ref = id
		}
		checks = []Check{key(ref)}
	default:
		checks = []Check{key(b.KeyID)}
	}
	extra := map[string][]string{}
	if strings.HasPrefix(b.KeyID, "alias/") {
		extra["kms:RequestAlias"] = []string{b.KeyID}
	}
	if len(b.EncryptionContext) > 0 {
		var keys []string
		for k, v := range b.EncryptionContext {
			extra["kms:EncryptionContext:"+k] = []string{v}
			keys = append(keys, k)
		}
		sort.Strings(keys)
		extra["kms:EncryptionContextKeys"] = keys
	}
	if len(b.Tags) > 0 {
		tags := map[string]string{}
		for _, t := range b.Tags {
			tags[t.TagKey] = t.TagValue
		}
		extra = merge(extra, tagContext(tags))
	}
	if len(b.TagKeys) > 0 {
		extra["aws:TagKeys"] = b.TagKeys
	}
	for i := range checks {
		checks[i].Context = merge(checks[i].Context, extra)
	}
	return Operation{Service: "kms", Name: op, Checks: checks}
}
